"""AddressGenerator (hw/engine/address_gen.py) against the reference executor's im2col addresses
(hw/engine/reference.py::conv_addresses, itself checked against the golden model in test_compiler)."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootshift.hw.engine.address_gen import AddressGenerator
from rootshift.hw.engine.desc import ConvDesc, conv_fields, tile_gap
from rootshift.hw.engine.reference import conv_addresses


def make_step(cin, h, w, kh, kw, stride, pad, cout, rows, cols):
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    groups = -(-cin // cols)
    return {"cin": cin, "h": h, "w": w, "kh": kh, "kw": kw, "stride": stride, "pad": pad, "ho": ho, "wo": wo,
            "groups": groups, "k_eff": kh * kw * cin, "tiles_c": -(-cout // cols),
            "tiles_p": -(-ho * wo // rows), "cout": cout}


def run_generator(step, rows, lanes):
    dut = AddressGenerator(rows, lanes)
    seen, cycles = [], [0]

    async def bench(ctx):
        ctx.set(dut.desc, ConvDesc.const(conv_fields(step, rows)))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(200_000):
            cycles[0] += 1
            if ctx.get(dut.valid):
                seen.append((ctx.get(dut.tile_p), ctx.get(dut.tile_c), ctx.get(dut.waddr), ctx.get(dut.lane),
                             [ctx.get(dut.addr[r]) for r in range(rows)], ctx.get(dut.ok), ctx.get(dut.live),
                             ctx.get(dut.first), ctx.get(dut.last), ctx.get(dut.pos0)))
            if ctx.get(dut.done):
                return
            await ctx.tick()
        raise AssertionError("the generator never finished")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen, cycles[0]


def check(step, rows, lanes):
    seen, cycles = run_generator(step, rows, lanes)
    word, lane, valid = conv_addresses(step, None, lanes)
    n_pos, k_eff = word.shape
    assert k_eff == step["kh"] * step["kw"] * step["cin"]      # no padded lane is visited
    expect = [(tp, tc, k) for tp in range(step["tiles_p"]) for tc in range(step["tiles_c"]) for k in range(k_eff)]
    assert len(seen) == len(expect)
    for (tp, tc, k), (gtp, gtc, waddr, glane, addrs, ok, live, first, last, pos0) in zip(expect, seen):
        assert (gtp, gtc, waddr, glane, first, last, pos0) == (tp, tc, tc * k_eff + k, lane[k], k == 0, k == k_eff - 1,
                                                               tp * rows)
        for r in range(rows):
            p = tp * rows + r
            assert (live >> r) & 1 == (p < n_pos)
            assert (ok >> r) & 1 == (p < n_pos and valid[p, k]), (tp, tc, k, r)
            if p < n_pos and valid[p, k]:
                assert addrs[r] == word[p, k], (tp, tc, k, r)
    # the cycle count the model uses: setup, then k_eff + gap per tile
    tiles = step["tiles_p"] * step["tiles_c"]
    assert cycles == (rows - 1) + tiles * (k_eff + tile_gap(k_eff, rows)) + 1


@pytest.mark.parametrize("case", [
    (3, 5, 5, 3, 3, 1, 1, 5, 2, 2),    # channels the lanes do not divide, padding
    (2, 7, 6, 3, 3, 2, 1, 3, 3, 2),    # stride 2, rows > wo's remainder
    (5, 4, 4, 1, 1, 2, 0, 4, 4, 3),    # 1x1 shortcut, stride 2
    (4, 2, 2, 2, 2, 1, 0, 3, 8, 2),    # a linear layer as a conv covering the input; rows > positions
    (1, 6, 5, 3, 3, 1, 0, 2, 1, 2),    # one row: no setup
    (1, 8, 8, 3, 3, 1, 1, 16, 4, 4),   # the digits stem: cin 1 of 4 lanes, 9 k-slices per tile, not 36
    (3, 5, 6, 3, 3, 2, 1, 4, 4, 4),    # RGB: 3 of 4 lanes
    (6, 4, 5, 3, 3, 1, 1, 5, 2, 4),    # the tap's second word holds 2 real lanes of 4
    (1, 3, 3, 1, 1, 1, 0, 3, 2, 2),    # k_eff = 1: a tile's first k-slice is its last
])
def test_address_generator_matches_im2col(case):
    cin, h, w, kh, kw, s, pad, cout, rows, lanes = case
    check(make_step(cin, h, w, kh, kw, s, pad, cout, rows, lanes), rows, lanes)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 7), st.sampled_from([1, 2, 3]), st.integers(1, 2),
       st.integers(0, 2), st.integers(1, 5), st.integers(1, 4), st.integers(2, 3))
def test_address_generator_random_layers(cin, h, w, k, s, pad, cout, rows, lanes):
    pad = min(pad, k - 1)
    if h + 2 * pad < k or w + 2 * pad < k:
        return
    check(make_step(cin, h, w, k, k, s, pad, cout, rows, lanes), rows, lanes)


def test_address_generator_validates():
    with pytest.raises(TypeError, match="rows must be a positive integer, not 0"):
        AddressGenerator(0, 4)


@pytest.mark.parametrize("case, gap", [
    ((1, 8, 8, 3, 3, 1, 1, 16, 4, 4), 0),     # the digits stem: k_eff 9 on 4 rows
    ((2, 5, 5, 1, 1, 1, 0, 5, 2, 2), 0),      # k_eff 2 on 2 rows: the shortest tile without a bubble (MIN_TILE)
    ((1, 5, 5, 1, 1, 1, 0, 5, 2, 2), 1),      # k_eff 1: one bubble
    ((2, 5, 5, 1, 1, 1, 0, 5, 3, 2), 1),      # k_eff 2 on 3 rows: the drain's bubble
])
def test_tiles_follow_without_a_bubble(case, gap):
    """Issue 9: with ``gap = 0`` the next tile's first k-slice follows the last one at once (the tile
    advances in its last RUN cycle): one k-slice every cycle from the first to the last."""
    cin, h, w, kh, kw, s, pad, cout, rows, lanes = case
    step = make_step(cin, h, w, kh, kw, s, pad, cout, rows, lanes)
    assert tile_gap(step["k_eff"], rows) == gap
    check(step, rows, lanes)
    seen, cycles = run_generator(step, rows, lanes)
    tiles = step["tiles_p"] * step["tiles_c"]
    assert tiles > 2 and cycles == (rows - 1) + tiles * (step["k_eff"] + gap) + 1
