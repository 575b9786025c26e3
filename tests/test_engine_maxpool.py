"""MaxPoolUnit (hw/engine/max_pool.py) against the contract's max pool (sw.contract.im2col with the
padding at FINE_MIN, as the golden model and the reference executor compute it): every output word
written exactly once and nothing else, and the cycle count, over random shapes, strides, paddings and
lane counts (hypothesis), with one-cycle and registered (ECP5) reads."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootshift.hw.engine.bram_outreg import RegisteredMemory
from rootshift.hw.engine.desc import PoolDesc, check_pool, pool_fields
from rootshift.hw.engine.max_pool import MaxPoolUnit
from rootshift.sw import contract as C

SENTINEL = 0x7A5A5A5A        # fills every word around the input: a read outside the window would win


class PoolTop(wiring.Component):
    """The unit reading one fine memory (a ``RegisteredMemory`` for ``registered_reads``)."""

    def __init__(self, unit, words):
        self.unit, self.words = unit, words
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        u = self.unit
        m.submodules.unit = u
        if u.registered_reads:
            m.submodules.mem = mem = RegisteredMemory(32 * u.lanes, len(self.words), init=self.words)
        else:
            m.submodules.mem = mem = Memory(shape=32 * u.lanes, depth=len(self.words), init=self.words)
        rd = mem.read_port()
        m.d.comb += rd.addr.eq(u.rd_addr)
        for c in range(u.lanes):
            m.d.comb += u.rd_data[c].eq(rd.data[32 * c:32 * (c + 1)].as_signed())
        return m


def layout(x, lanes):
    """(C, H, W) -> (H*W*G, lanes) words, as the engine stores a fine tensor (padded lanes 0)."""
    c, h, w = x.shape
    g = -(-c // lanes)
    full = np.zeros((h, w, g * lanes), np.int64)
    full[:, :, :c] = x.transpose(1, 2, 0)
    return full.reshape(-1, lanes), g


def run_pool(x, k, stride, pad, lanes, registered):
    """Simulate the unit on ``x`` (placed after a few sentinel words); returns ({addr: lanes} written,
    the output tensor's placement, cycles from ``start`` to ``done`` inclusive)."""
    c, h, w = x.shape
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    src, g = layout(x, lanes)
    words = np.full((3 + len(src) + 3 + ho * wo * g + 3, lanes), SENTINEL, np.int64)
    words[3:3 + len(src)] = src
    tensors = {"x": {"shape": [c, h, w], "groups": g, "addr": 3},
               "y": {"shape": [c, ho, wo], "groups": g, "addr": 3 + len(src) + 3}}
    step = {"kind": "maxpool", "in": "x", "out": "y", "k": k, "stride": stride, "pad": pad}
    check_pool(step)
    unit = MaxPoolUnit(lanes, registered_reads=registered)
    top = PoolTop(unit, [sum((int(v) & 0xFFFFFFFF) << (32 * i) for i, v in enumerate(r)) for r in words])
    written, cycles = {}, [0]

    async def bench(ctx):
        ctx.set(unit.desc, PoolDesc.const(pool_fields(step, tensors)))
        ctx.set(unit.start, 1)
        for _ in range(200_000):
            cycles[0] += 1
            if ctx.get(unit.out_en):
                v, a = ctx.get(unit.out_data), ctx.get(unit.out_addr)
                assert a not in written, f"word {a} written twice"
                written[a] = [((v >> (32 * i)) & 0xFFFFFFFF) - ((v >> (32 * i + 31)) & 1) * (1 << 32)
                              for i in range(lanes)]
            if ctx.get(unit.done):
                return
            await ctx.tick()
            ctx.set(unit.start, 0)
        raise AssertionError("the unit never finished")

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return written, tensors["y"], cycles[0]


def check(x, k, stride, pad, lanes, registered):
    written, out, cycles = run_pool(x, k, stride, pad, lanes, registered)
    cols, ho, wo = C.im2col(x[:, None], k, k, stride, pad, C.FINE_MIN)
    want, g = layout(cols.max(-1).reshape(x.shape[0], ho, wo), lanes)
    assert sorted(written) == list(range(out["addr"], out["addr"] + len(want)))
    for n, row in enumerate(want):
        assert written[out["addr"] + n] == list(row), n
    assert cycles == MaxPoolUnit.cycles(ho * wo * g, k, registered)


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("case", [
    (3, 8, 8, 3, 2, 1, 4),       # the ImageNet ResNet stem's pool (k 3, stride 2, pad 1), channels the lanes do not divide
    (5, 5, 7, 2, 1, 1, 2),       # k 2 stride 1 pad 1 (the fuzz models' pool), two groups of two lanes
    (1, 4, 4, 2, 2, 0, 1),       # one lane, no padding
    (2, 1, 1, 1, 1, 0, 2),       # a 1x1 image, k 1: a copy
    (4, 3, 9, 3, 3, 2, 4),       # pad = k - 1: corner windows hold one input
])
def test_max_pool_matches_the_contract(case, registered):
    c, h, w, k, s, p, lanes = case
    rng = np.random.default_rng(sum(case))
    x = rng.integers(C.FINE_MIN, C.FINE_MAX + 1, (c, h, w), dtype=np.int64)
    check(x, k, s, p, lanes, registered)


def test_negative_values_are_not_lost_to_padding():
    """Every input at FINE_MIN or just above: a padded position read as 0 would win; it must not."""
    x = np.full((2, 3, 3), C.FINE_MIN, np.int64)
    x[1] += 1
    check(x, 3, 1, 2, 2, False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.integers(1, 6), h=st.integers(1, 7), w=st.integers(1, 7), k=st.integers(1, 4), s=st.integers(1, 3),
       lanes=st.integers(1, 4), registered=st.booleans(), data=st.data())
def test_max_pool_random(c, h, w, k, s, lanes, registered, data):
    p = data.draw(st.integers(0, k - 1))
    if (h + 2 * p - k) < 0 or (w + 2 * p - k) < 0:
        return
    x = np.asarray(data.draw(st.lists(st.sampled_from([C.FINE_MIN, -1, 0, 1, C.FINE_MAX]) | st.integers(-9, 9),
                                      min_size=c * h * w, max_size=c * h * w)), np.int64).reshape(c, h, w)
    check(x, k, s, p, lanes, registered)


def test_limits_are_named():
    for step, msg in (({"k": 16, "stride": 1, "pad": 0}, "max pool window must be 1..15, not 16"),
                      ({"k": 3, "stride": 0, "pad": 0}, "max pool stride must be 1..15, not 0"),
                      ({"k": 3, "stride": 2, "pad": 3}, r"max pool padding must be 0..2 \(every window holds an input\), not 3")):
        with pytest.raises(ValueError, match=msg):
            check_pool(step)
    with pytest.raises(TypeError, match="Lane count must be a positive integer, not 0"):
        MaxPoolUnit(0)
    with pytest.raises(TypeError, match="registered_reads must be True or False, not 1"):
        MaxPoolUnit(2, registered_reads=1)


@pytest.mark.parametrize("seed,rows,cols,drain,fetch", [(0, 2, 2, "parallel", "parallel"),
                                                        (5, 3, 2, "serial", "serial")])
def test_whole_networks_with_a_max_pool_on_the_rtl_engine(seed, rows, cols, drain, fetch):
    """Random networks whose stem feeds a max pool (k 2, stride 1, padding 0 or 1) on the RTL engine, in
    the ECP5 (``registered_reads``: parallel drain, block RAM weights) and iCE40 (serial drain and fetch)
    configurations: the logits against the golden model, every tensor through the debug read against
    the reference executor, and the image's cycles against the cycle model."""
    from rootshift.hw.engine.compiler import compile_model
    from rootshift.hw.engine.engine import Engine
    from rootshift.hw.engine.params import EngineParams
    from rootshift.hw.testbench import engine_image
    from rootshift.sim.engine_fuzz import fuzz_params_for, random_model, rtl_image_failures

    for s in range(seed, seed + 100):
        rng = np.random.default_rng(s)
        im = random_model(rng, "dual", in_shape=[int(rng.integers(1, 4)), 5, 6], max_channels=6)
        if any(op["op"] == "maxpool" for op in im.ops):
            break
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), drain=drain, desc_fetch=fetch,
                                          weights_kib=64, fine_kib=64, codes_kib=64, consts_kib=64), debug=True)
    px = rng.integers(0, 256, im.meta["input_shape"])
    dut = Engine(prog)
    res = engine_image(prog, px, dut=dut)
    assert "pool" in dut.units and "mp.y" in prog.tensors
    assert rtl_image_failures(im, prog, px, res) == []


def test_an_engine_without_a_max_pool_step_has_no_max_pool_unit():
    """The unit and its multiplexers took about 1,350 LUTs of the ULX3S-85F build (21,938 with it, 20,589
    before it): only a program with a max pool step pays for them."""
    from amaranth.hdl import Fragment

    from rootshift.hw.engine.compiler import compile_model
    from rootshift.hw.engine.engine import Engine
    from rootshift.hw.engine.params import EngineParams
    from rootshift.sim.engine_fuzz import fuzz_params_for, random_model

    im = random_model(np.random.default_rng(0), "dual", in_shape=[1, 4, 4], max_channels=4, maxpool=False)
    dut = Engine(compile_model(im, EngineParams(fuzz_params_for(im, 2, 2))))
    Fragment.get(dut, None)
    assert "pool" not in dut.units and "vec" in dut.units
