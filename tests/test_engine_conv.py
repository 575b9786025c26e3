"""ConvUnit (hw/engine/conv_unit.py): whole conv/linear layers from on-chip memories, in amaranth.sim,
against the reference executor's memory after the same step (itself bit-exact with the golden model:
tests/test_compiler.py). Every output word is compared, and the cycle count with the cycle model."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from rootshift.hw.engine.bram_outreg import RegisteredMemory
from rootshift.hw.engine.compiler import compile_model
from rootshift.hw.engine.conv_unit import ConvUnit, const_word_bits, hw_bias
from rootshift.hw.engine.cycles import conv_unit_cycles
from rootshift.hw.engine.desc import MIN_TILE, ConvDesc
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.engine.reference import ReferenceEngine
from rootshift.hw.params import BIAS_BITS, M_BITS, ArrayParams
from rootshift.sim.engine_fuzz import fuzz_params_for, random_model
from rootshift.sw.errors import ConfigError

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def pack(values, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(values))


class ConvTop(wiring.Component):
    """Test harness: the unit with its code banks, weight memory and constant memory (``RegisteredMemory``
    s, as the engine's ECP5 configuration builds them, for a unit with ``registered_reads``)."""

    def __init__(self, unit, code_words, wgt_words, const_words):
        self.unit, self.init = unit, (code_words, wgt_words, const_words)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        u, p = self.unit, self.unit.p
        m.submodules.unit = u
        codes, wgts, consts = self.init
        if u.registered_reads:
            for r in range(p.rows):
                m.submodules[f"bank{r}"] = bank = RegisteredMemory(p.cols * p.abits, max(2, len(codes)), init=codes)
                m.d.comb += [bank.raddr.eq(u.code_addr[r]), u.code_data[r].eq(bank.rdata)]
            for name, words, width, addr, dat in (("wgt", wgts, p.cols * p.wbits, u.wgt_addr, u.wgt_data),
                                                  ("const", consts, const_word_bits(p), u.const_addr, u.const_data)):
                m.submodules[name] = mem = RegisteredMemory(width, max(2, len(words)), init=words)
                m.d.comb += [mem.raddr.eq(addr), dat.eq(mem.rdata)]
            return m
        for r in range(p.rows):
            m.submodules[f"bank{r}"] = bank = Memory(shape=p.cols * p.abits, depth=max(2, len(codes)), init=codes)
            rd = bank.read_port()
            m.d.comb += [rd.addr.eq(u.code_addr[r]), u.code_data[r].eq(rd.data)]
        for name, words, width, addr, dat in (("wgt", wgts, p.cols * p.wbits, u.wgt_addr, u.wgt_data),
                                              ("const", consts, const_word_bits(p), u.const_addr, u.const_data)):
            m.submodules[name] = mem = Memory(shape=width, depth=max(2, len(words)), init=words)
            rd = mem.read_port()
            m.d.comb += [rd.addr.eq(addr), dat.eq(rd.data)]
        return m


class ProbedConvUnit(ConvUnit):
    """The unit with a handle on its ShadowArray (``self.array``), to watch the terms go in."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        self.array = m.submodules.array
        return m


def run_unit(prog, eng, step, registered=False, trace=None):
    """Simulate the unit on ``step`` with the reference engine's memories; returns ({addr: lanes}, cycles).
    ``trace``: a list that gets the cycles in which a k-slice enters the array."""
    p = prog.params.array
    codes = [pack(row, p.abits) for row in eng.codes]
    wl = prog.weight_lanes({"wgt_addr": 0, "wgt_words": len(prog.weights) // prog.wgt_word_bytes})
    wgts = [pack(row, p.wbits) for row in wl]
    mults = eng.multipliers(step)
    consts = [0] * step["desc"]["c_addr"]
    for tc in range(step["tiles_c"]):
        word = []
        for c in range(p.cols):
            ch = tc * p.cols + c
            vals = [int(m[ch]) if ch < step["cout"] else 0 for m in mults]
            b = hw_bias(int(step["bias"][ch]), step["shift"]) if ch < step["cout"] else 0
            word.append(pack(vals, M_BITS) | (b & ((1 << BIAS_BITS) - 1)) << (len(mults) * M_BITS))
        consts.append(pack(word, p.n_acc * M_BITS + BIAS_BITS))
    unit = ProbedConvUnit(p, prog.params.drain, registered_reads=registered)
    top = ConvTop(unit, codes, wgts, consts)
    written, cycles = {}, [0]

    async def bench(ctx):
        ctx.set(unit.desc, ConvDesc.const(step["desc"]))
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        for _ in range(500_000):
            cycles[0] += 1
            if trace is not None and ctx.get(unit.array.valid):
                trace.append(cycles[0])
            if ctx.get(unit.out_en):
                v = ctx.get(unit.out_data)
                lanes = [(v >> (32 * c)) & 0xFFFFFFFF for c in range(p.cols)]
                written[ctx.get(unit.out_addr)] = [x - (1 << 32) if x >> 31 else x for x in lanes]
            if ctx.get(unit.done):
                return
            await ctx.tick()
        raise AssertionError("the unit never finished")

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return written, cycles[0]


def check_program(prog, pixels, layers=None, registered=False, traces=None):
    """Every (or each named) conv/linear step through the unit; ``traces``: a dict that gets each step's
    k-slice cycles (``run_unit``'s ``trace``)."""
    eng = ReferenceEngine(prog)
    checked = 0
    for step in prog.steps:
        if step["kind"] in ("conv", "linear") and (layers is None or step["name"] in layers):
            trace = traces.setdefault(step["name"], []) if traces is not None else None
            written, cycles = run_unit(prog, eng, step, registered, trace)
            eng.step(step, pixels)
            t = prog.tensors[step["out"]]
            assert sorted(written) == list(range(t["addr"], t["addr"] + t["words"])), step["name"]
            for addr, lanes in written.items():
                assert lanes == list(eng.fine[addr]), (step["name"], addr)
            # the cycle model is exact for the unit (docs/engine.md, "Cycle model")
            assert cycles == conv_unit_cycles(step, prog.params.array.rows, prog.params.drain_cycles, registered), \
                step["name"]
            checked += 1
        else:
            eng.step(step, pixels)
    return checked


@pytest.mark.parametrize("seed,rows,cols", [(0, 3, 2), (1, 2, 3), (2, 4, 2), (3, 2, 2), (4, 3, 3)])
def test_conv_unit_runs_random_layers_exactly(seed, rows, cols):
    """Every product mode; shift2 includes the stem on the pixels' bit planes (K x 8)."""
    rng = np.random.default_rng(seed)
    mode = ["dual", "lut", "shift", "mult", "shift2"][seed % 5]
    im = random_model(rng, mode, max_channels=5)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), **BIG))
    px = rng.integers(0, 256, im.meta["input_shape"])
    assert check_program(prog, px) == 5


@pytest.mark.parametrize("seed,rows,cols", [(0, 3, 2), (2, 4, 2), (4, 3, 3)])
def test_conv_unit_behind_registered_memories(seed, rows, cols):
    """``registered_reads`` (the ECP5 configuration): codes, weights and requantization words from
    ``RegisteredMemory`` s, one more cycle at the end (``DSP_OPERAND_REG``), every output word the same."""
    rng = np.random.default_rng(seed)
    mode = ["dual", "lut", "shift", "mult", "shift2"][seed % 5]
    im = random_model(rng, mode, max_channels=5)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), **BIG))
    px = rng.integers(0, 256, im.meta["input_shape"])
    assert check_program(prog, px, registered=True) == 5
    with pytest.raises(TypeError, match="registered_reads needs drain 'parallel'"):
        ConvUnit(prog.params.array, "serial", registered_reads=True)


@pytest.mark.parametrize("seed,rows,cols", [(5, 2, 3), (6, 3, 2), (7, 4, 4)])
def test_serial_drain_runs_random_layers_exactly(seed, rows, cols):
    """One requantizer shared by the columns (``drain="serial"``, the iCE40 build): every output word and
    the cycle count; the random layers have ``k_eff`` below and above ``rows * cols`` (the bubble covers
    the drain where the MACs do not)."""
    rng = np.random.default_rng(seed)
    mode = ["dual", "lut", "mult"][seed % 3]
    im = random_model(rng, mode, max_channels=5)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), drain="serial", **BIG))
    steps = [s for s in prog.steps if s["kind"] in ("conv", "linear")]
    assert any(s["k_eff"] < rows * cols for s in steps) or rows * cols <= 4
    assert all(s["desc"]["gap"] == max(0, rows * cols - s["k_eff"], MIN_TILE - s["k_eff"]) for s in steps)
    px = rng.integers(0, 256, im.meta["input_shape"])
    assert check_program(prog, px) == 5


@pytest.mark.parametrize("drain,registered,rows", [("parallel", False, 2), ("parallel", False, 3),
                                                  ("parallel", True, 2), ("serial", False, 3)])
@pytest.mark.parametrize("kind", ["1x1", "3x3"])
def test_a_stem_with_fewer_channels_than_lanes_skips_the_padded_lanes(kind, drain, registered, rows):
    """A 1-channel stem on 4 lanes issues ``kh * kw`` k-slices per tile, not ``kh * kw * lanes``; the
    1x1 case has ``k_eff = 1``, so a tile's first k-slice is also its last (clear and capture of the same
    term), and the drain (2 or 3 rows, or ``rows * cols`` serial) keeps a bubble after it
    (``test_shortest_tiles`` has the one-row arrays, where ``desc.MIN_TILE`` decides it)."""
    for seed in range(100):   # the first model whose stem has the kernel wanted
        rng = np.random.default_rng(seed)
        im = random_model(rng, "dual", in_shape=[1, 5, 6], max_channels=5, maxpool=False)
        if next(o for o in im.ops if o.get("name") == "conv1")["kernel"][0] == int(kind[0]):
            break
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, 4), drain=drain, **BIG))
    stem = next(s for s in prog.steps if s["name"] == "conv1")
    assert (stem["cin"], stem["k_eff"]) == (1, int(kind[0]) ** 2)
    px = rng.integers(0, 256, im.meta["input_shape"])
    assert check_program(prog, px, layers=["conv1", "b.conv1"], registered=registered) == 2


def test_drain_is_checked():
    with pytest.raises(ConfigError, match="drain must be one of parallel, serial, not 'wide'"):
        EngineParams(drain="wide")
    with pytest.raises(ConfigError, match="desc_fetch must be one of parallel, serial, not 1"):
        EngineParams(desc_fetch=1)
    with pytest.raises(TypeError, match="drain must be one of"):
        ConvUnit(ArrayParams(), drain="wide")


@pytest.mark.parametrize("seed,rows,cols,registered", [(0, 3, 2, False), (2, 4, 2, True), (4, 3, 3, False)])
def test_tiles_follow_with_no_bubble(seed, rows, cols, registered):
    """Issue 9: a layer whose tiles are at least as long as their drain (``k_eff >= rows``) has no bubble:
    its k-slices enter the array in one unbroken run of ``tiles * k_eff`` cycles (the shadow registers take
    the adders' outputs at the last term's edge, and ``clear`` acts there), every word exact, and the
    cycle count the model's, now ``rows - 1 + tiles * k_eff + tail``."""
    rng = np.random.default_rng(seed)
    mode = ["dual", "lut", "shift", "mult", "shift2"][seed % 5]
    im = random_model(rng, mode, max_channels=5)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), **BIG))
    traces = {}
    assert check_program(prog, rng.integers(0, 256, im.meta["input_shape"]), registered=registered, traces=traces) == 5
    long = [s for s in prog.steps if s["kind"] in ("conv", "linear") and s["k_eff"] >= max(rows, MIN_TILE)]
    assert len(long) >= 2, "the 3x3 convs"
    for s in long:
        trace, tiles = traces[s["name"]], s["tiles_p"] * s["tiles_c"]
        assert s["desc"]["gap"] == 0
        assert len(trace) == tiles * s["k_eff"] and trace[-1] - trace[0] == len(trace) - 1, s["name"]


@pytest.mark.parametrize("cin,rows,registered", [(1, 1, False), (1, 1, True), (2, 1, False),
                                                 (1, 2, False), (2, 2, False), (2, 2, True), (3, 2, False),
                                                 (1, 3, False), (2, 3, False), (3, 3, True)])
def test_shortest_tiles(cin, rows, registered):
    """Tiles of ``k_eff = 1..3`` (a 1x1 stem on ``cin`` channels) on 1-, 2- and 3-row arrays: ``gap`` is
    ``max(0, rows - k_eff, MIN_TILE - k_eff)``; only one row (a one-cycle drain) and ``k_eff = 1`` let
    ``MIN_TILE`` decide the gap. At ``k_eff + gap = MIN_TILE = 2`` the next tile's last slice
    comes two cycles after this one's, when the ConvUnit captures this one with the bookkeeping it took
    then. Every word exact, cycles = the model."""
    for seed in range(100):   # the first model with a 1x1 stem
        rng = np.random.default_rng(seed)
        im = random_model(rng, "dual", in_shape=[cin, 5, 6], max_channels=5, maxpool=False)
        if next(o for o in im.ops if o.get("name") == "conv1")["kernel"][0] == 1:
            break
    prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, 2), **BIG))
    stem = next(s for s in prog.steps if s["name"] == "conv1")
    assert stem["k_eff"] == cin and stem["desc"]["gap"] == max(0, rows - cin, MIN_TILE - cin)
    traces = {}
    assert check_program(prog, rng.integers(0, 256, im.meta["input_shape"]), layers=["conv1"], registered=registered,
                         traces=traces) == 1
    trace = traces["conv1"]
    assert len(trace) == stem["tiles_p"] * stem["tiles_c"] * cin
    assert max(b - a for a, b in zip(trace, trace[1:])) == 1 + stem["desc"]["gap"]
