"""QuantStep (hw/engine/quant_step.py): whole quant ops (GAP, ASQ adapter, divider, quantization pass)
from on-chip memories in amaranth.sim, against the reference executor's code memory and beta after the
same step (the executor is bit-exact with the golden model: tests/test_compiler.py)."""


import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from rootshift.hw.engine.bram_outreg import RegisteredMemory
from rootshift.hw.engine.compiler import compile_model
from rootshift.hw.engine.cycles import quant_step_cycles
from rootshift.hw.engine.desc import QuantDesc, gap_shift
from rootshift.hw.engine.engine import images
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.engine.quant_step import QuantStep
from rootshift.hw.engine.reference import ReferenceEngine
from rootshift.sim.engine_fuzz import fuzz_params_for, random_model

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def adapter_images(prog):
    """The adapter weight and bias memories as the engine lays them out (``engine.images``: W1 in blocks of
    ``lanes`` hidden outputs, W2 ``lanes`` per word; B1, B2)."""
    _, _, w, b = images(prog)
    return w, b


def run_quant(prog, eng, step, schemes=("linear",), registered=False):
    """``registered``: the unit's memories are ``RegisteredMemory`` s (the ECP5 configuration)."""
    p = prog.params.array
    lanes = prog.params.lanes
    fine = [[int(v) for v in row] for row in eng.fine]
    wimg, bimg = adapter_images(prog)
    unit = QuantStep(lanes, p.abits, 64, schemes, registered_reads=registered)

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({})

        def elaborate(self, platform):
            m = Module()
            m.submodules.unit = unit
            init = [sum((v & 0xFFFFFFFF) << (32 * c) for c, v in enumerate(row)) for row in fine]
            mems = (("fine", init, 32 * lanes, unit.fine_addr, None),
                    ("w", wimg, 16 * lanes, unit.w_addr, unit.w_data), ("b", bimg, 64, unit.b_addr, unit.b_data))
            for name, img, width, addr, dat in mems:
                if registered:
                    m.submodules[name] = mem = RegisteredMemory(width, max(2, len(img)),
                                                                init=[v & ((1 << width) - 1) for v in img])
                else:
                    m.submodules[name] = mem = Memory(shape=width, depth=max(2, len(img)),
                                                      init=[v & ((1 << width) - 1) for v in img])
                r = mem.read_port()
                m.d.comb += r.addr.eq(addr)
                if dat is None:
                    for c in range(lanes):
                        m.d.comb += unit.fine_data[c].eq(r.data[32 * c:32 * (c + 1)].as_signed())
                else:
                    m.d.comb += dat.eq(r.data if name == "w" else r.data.as_signed())
            return m

    written, res = {}, {}

    async def bench(ctx):
        ctx.set(unit.desc, QuantDesc.const(step["desc"]))
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        n = 1
        while True:
            if ctx.get(unit.code_en):
                v = ctx.get(unit.code_data)
                written[ctx.get(unit.code_addr)] = [(v >> (p.abits * c)) & ((1 << p.abits) - 1) for c in range(lanes)]
            if ctx.get(unit.done):
                break
            await ctx.tick()
            n += 1
            assert n < 200_000
        res.update(beta=ctx.get(unit.beta), r=ctx.get(unit.r), cycles=n)

    sim = Simulator(Top())
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return written, res


@pytest.mark.parametrize("seed,cols,max_channels,registered,in_shape", [
    (1, 3, 12, False, [2, 4, 8]), (4, 2, 12, False, [2, 4, 8]), (1, 3, 10, False, [2, 4, 8]),
    (1, 3, 12, True, [2, 4, 8]), (4, 2, 12, True, [2, 4, 8]),
    (3, 3, 12, False, [2, 5, 7]), (6, 2, 9, True, [3, 7, 7])])
def test_quant_step_matches_the_reference(seed, cols, max_channels, registered, in_shape):
    """ASQ with and without the hidden layer, LSQ, spatial tensors and the pooled vector; ``registered``:
    behind ``RegisteredMemory`` s (the ECP5 configuration), ``DSP_OPERAND_REG`` more cycles per pass and
    adapter layer, the same codes and beta. ``in_shape`` 5x7 and 7x7: GAPs over ``H*W`` not a power of two
    (35, 49, 15, 16, ...) through the GapDivider, ``GAP_DIV + GapDivider.CYCLES`` per lane."""
    rng = np.random.default_rng(seed)
    im = random_model(rng, "dual", in_shape=in_shape, max_channels=max_channels)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, 2, cols), **BIG))
    px = rng.integers(0, 256, im.meta["input_shape"])
    eng = ReferenceEngine(prog)
    checked, divided = 0, 0
    for step in prog.steps:
        t_in = prog.tensors.get(step.get("in")) if isinstance(step.get("in"), str) else None
        runnable = step["kind"] == "quant"
        if runnable:
            written, res = run_quant(prog, eng, step, registered=registered)
        eng.step(step, px)
        if runnable:
            divided += bool(step["adapter"]) and gap_shift(t_in["shape"][1] * t_in["shape"][2]) is None
            t = prog.tensors[step["out"]]
            assert sorted(written) == list(range(t["addr"], t["addr"] + t["words"])), step["name"]
            for addr, lanes in written.items():
                assert lanes == [int(v) for v in eng.codes[addr]], (step["name"], addr)
            beta = eng.beta.get(step["name"], 1 << 16)
            assert res["beta"] == beta
            assert res["cycles"] == quant_step_cycles(step, t_in, prog.params.lanes, registered), step["name"]
            checked += 1
    assert checked >= 2
    assert divided >= (1 if gap_shift(in_shape[1] * in_shape[2]) is None else 0)


@pytest.mark.parametrize("seed,cols,schemes", [(2, 3, ("shift",)), (5, 2, ("linear", "shift"))])
def test_shift_quant_steps_match_the_reference(seed, cols, schemes):
    """Shift activations (issue 10): start -> pass, no divider or adapter; codes, beta = 1 and the cycle
    count against the reference executor and the model, with and without the linear path built."""
    rng = np.random.default_rng(seed)
    im = random_model(rng, "shift2", in_shape=[2, 4, 6], max_channels=9)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, 2, cols), **BIG))
    px = rng.integers(0, 256, im.meta["input_shape"])
    eng = ReferenceEngine(prog)
    checked = 0
    for step in prog.steps:
        if step["kind"] == "quant":
            written, res = run_quant(prog, eng, step, schemes)
        eng.step(step, px)
        if step["kind"] == "quant":
            t = prog.tensors[step["out"]]
            assert sorted(written) == list(range(t["addr"], t["addr"] + t["words"])), step["name"]
            for addr, lanes in written.items():
                assert lanes == [int(v) for v in eng.codes[addr]], (step["name"], addr)
            assert res["beta"] == 1 << 16
            assert res["cycles"] == quant_step_cycles(step, prog.tensors[step["in"]], prog.params.lanes), step["name"]
            checked += 1
    assert checked == 4
