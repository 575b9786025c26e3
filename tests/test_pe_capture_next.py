"""``ProcessingElement(capture_next=True)`` (the engine's ShadowArray PE, issue 9: no bubble between tiles)
against the contract's ``accumulate`` (docs/arithmetic.md, "Products and accumulators"), driven as the
ConvUnit drives it: tiles back to back, ``clear`` in the cycle of a tile's last term's stage 2, the sum read
from ``acc_next`` in that cycle, and cycles with ``valid = 0`` carrying junk operands (they must add 0)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootshift.hw.params import ArrayParams
from rootshift.hw.pe import ProcessingElement
from rootshift.hw.testbench import simulate
from rootshift.sw import contract as C

SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
MODES = [("dual", 4, 4), ("dual", 8, 8), ("lut", 4, 8), ("lut", 3, 2), ("shift", 4, 4), ("mult", 4, 8), ("mult", 8, 8),
         ("shift2", 4, 4), ("shift2", 3, 3)]


def signed(v, bits):
    v = int(v) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


def params(mode, wbits, abits):
    base = "2" if mode in ("shift", "shift2") else "sqrt2"
    return ArrayParams(wbits=wbits, abits=abits, base=base, pe=mode, rows=1, cols=2, max_k=64)


def oracle(p, a, w):
    """``(even, odd)``: dual's two sums, or ``(acc, 0)``."""
    if p.pe == "mult":
        return int(C.accumulate(a[None, :], {"acc": w[None, :]}, "mult", p.abits)["acc"][0, 0]), 0
    terms = C.weight_terms(w[None, :], p.format, p.pe)
    extra = {"act_max_exponent": p.act_exponent} if p.pe == "shift2" else {}
    acc = C.accumulate(a[None, :], terms, p.pe, p.abits, **extra)
    return (int(acc["even"][0, 0]), int(acc["odd"][0, 0])) if p.pe == "dual" else (int(acc["acc"][0, 0]), 0)


def weight_codes(p):
    if p.pe == "mult":
        return list(range(-(2 ** (p.wbits - 1)), 2 ** (p.wbits - 1)))
    return p.format.all_codes().tolist()


def worst(p, k):
    """max_k terms of the largest magnitude, each sign (and dual's odd codes), then zero operands."""
    amax = 1 if p.pe == "shift2" else 2**p.abits - 1      # shift2: code 1 is the largest factor
    if p.pe == "mult":
        ws = [-(2 ** (p.wbits - 1)), 2 ** (p.wbits - 1) - 1]
    else:
        codes = p.format.all_codes()
        sign, zero, kk, odd = p.format.decode(codes)
        ws = [int(c) for c, z, e in zip(codes, zero, kk) if not z and e == 0]
        ws += [int(c) for c, z, o in zip(codes, zero, odd) if o and not z][:2]
    out = [(np.full(k, amax), np.full(k, w)) for w in ws]
    return out + [(np.zeros(k, np.int64), np.full(k, ws[0]))]


def run_back_to_back(p, tiles, junk):
    """``tiles``: ``(a, w)`` arrays; ``junk[i]``: invalid cycles (random operands) before term i of the
    flattened stream. Returns the ``(acc_next, acc_odd_next)`` read in each tile's clear cycle."""
    dut = ProcessingElement(p, capture_next=True)
    rng = np.random.default_rng(len(tiles))
    wmask = (1 << p.wbits) - 1
    stream = [(int(a), int(w), i == len(ta) - 1) for ta, tw in tiles for i, (a, w) in enumerate(zip(ta, tw))]

    async def bench(ctx):
        got, last_prev = [], False

        async def cycle(a, w, valid, last):
            nonlocal last_prev
            ctx.set(dut.a, a)
            ctx.set(dut.w, w & wmask)
            ctx.set(dut.valid, valid)
            ctx.set(dut.clear, int(last_prev))     # the previous cycle's term was a tile's last: its stage 2
            if last_prev:
                got.append((signed(ctx.get(dut.acc_next), p.acc_bits), signed(ctx.get(dut.acc_odd_next), p.acc_bits)))
            await ctx.tick()
            last_prev = last

        for n, (a, w, last) in enumerate(stream):
            for _ in range(junk[n]):
                await cycle(int(rng.integers(0, 2**p.abits)), int(rng.integers(0, 2**p.wbits)), 0, False)
            await cycle(a, w, 1, last)
        await cycle(0, 0, 0, False)
        await cycle(0, 0, 0, False)
        assert signed(ctx.get(dut.acc), p.acc_bits) == 0, "cleared after the last tile"
        return got

    return simulate(dut, bench)


@pytest.mark.parametrize("mode, wbits, abits", MODES)
@SETTINGS
@given(data=st.data())
def test_capture_next_pe_matches_contract_back_to_back(mode, wbits, abits, data):
    p = params(mode, wbits, abits)
    tiles = worst(p, 64)
    for _ in range(8):
        k = data.draw(st.integers(1, 24))
        a = data.draw(st.lists(st.integers(0, 2**abits - 1), min_size=k, max_size=k))
        w = data.draw(st.lists(st.sampled_from(weight_codes(p)), min_size=k, max_size=k))
        tiles.append((np.array(a), np.array(w)))
    n = sum(len(a) for a, _ in tiles)
    junk = data.draw(st.lists(st.sampled_from([0, 0, 0, 1, 2]), min_size=n, max_size=n))
    got = run_back_to_back(p, tiles, junk)
    assert got == [oracle(p, a, w) for a, w in tiles]


def test_capture_next_one_term_tiles_and_no_junk():
    """Tiles of one term each, every cycle a clear (the shortest tiles the PE allows): each sum is its term."""
    p = params("dual", 4, 4)
    codes = p.format.all_codes()
    tiles = [(np.array([a]), np.array([int(c)])) for a in (15, 0, 7) for c in codes]
    got = run_back_to_back(p, tiles, [0] * len(tiles))
    assert got == [oracle(p, a, w) for a, w in tiles]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_capture_next_is_validated_and_off_by_default():
    p = params("dual", 4, 4)
    with pytest.raises(TypeError, match="capture_next must be True or False, not 1"):
        ProcessingElement(p, capture_next=1)
    assert "acc_next" not in ProcessingElement(p).signature.members
    assert "acc_odd_next" in ProcessingElement(p, capture_next=True).signature.members
