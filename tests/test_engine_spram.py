"""SPRAM (hw/engine/spram.py) and the engine with its weights in SPRAM (``EngineParams.weight_memory``):
the behavioural model's ports and timing, the primitive tiling of an iCE40 build, and whole random
networks loaded over the stream (an SPRAM has no init) and run bit-exact, cycles equal to the model."""

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from rootshift.hw.engine import engine as E
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.engine.reference import ReferenceEngine
from rootshift.hw.engine.spram import SPRAM, tiles
from rootshift.sim.engine_driver import EngineDriver
from rootshift.sim.engine_fuzz import first_rtl_model
from rootshift.sw import golden
from rootshift.sw.errors import ConfigError

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


class ICE40:
    """A stand-in for an amaranth-boards iCE40 platform: only its family is read."""
    family = "iCE40"


@settings(max_examples=10, deadline=None)
@given(width=st.integers(1, 40), ops=st.lists(st.tuples(st.integers(0, 19), st.integers(0, (1 << 40) - 1),
                                                         st.integers(0, 7)), min_size=1, max_size=40))
def test_spram_model_writes_slices_and_reads_a_cycle_later(width, ops):
    """Against a dict: each cycle one address, ``wen`` slices written; after the edge a read shows its word."""
    dut = SPRAM(width, 20)
    mask = (1 << width) - 1
    out = []

    async def bench(ctx):
        ref = {}
        for addr, data, wen in ops:
            wen &= (1 << dut.slices) - 1
            ctx.set(dut.addr, addr)
            ctx.set(dut.wdata, data & mask)
            ctx.set(dut.wen, wen)
            await ctx.tick()       # the edge: the write, and the read of ``addr`` (shown from now on)
            if not wen:
                out.append((ctx.get(dut.rdata), ref.get(addr, 0)))
            old = ref.get(addr, 0)
            for s in range(dut.slices):
                if wen >> s & 1:
                    keep = ~(0xFFFF << (16 * s))
                    old = (old & keep) | (data & mask & (0xFFFF << (16 * s)))
            ref[addr] = old & mask

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for got, want in out:
        assert got == want


@pytest.mark.parametrize("width,depth,n", [(16, 38816, 3), (32, 19408, 4), (8, 100, 1)])
def test_spram_on_ice40_is_sb_spram256ka_tiles(width, depth, n):
    """The digits weight images: 2x2 W8 (16-bit words, 38,816) in 3 blocks, 4x4 W8 (32-bit, 19,408) in 4."""
    assert tiles(width, depth)[0] * tiles(width, depth)[1] == n
    assert rtlil.convert(SPRAM(width, depth), platform=ICE40()).count("cell \\SB_SPRAM256KA") == n
    assert "SB_SPRAM256KA" not in rtlil.convert(SPRAM(width, depth))


def test_spram_checks_its_size():
    with pytest.raises(TypeError, match="SPRAM depth must be a positive integer, not 0"):
        SPRAM(16, 0)


def spram_model(seed, rows, cols, drain):
    return first_rtl_model(seed, "dual", rows, cols, drain=drain, weight_memory="spram", desc_fetch=drain, **BIG)


def test_spram_weights_have_no_init():
    _, prog, _ = spram_model(0, 2, 2, "parallel")
    with pytest.raises(ConfigError, match="weight_memory 'spram' has no init"):
        E.Engine(prog)
    with pytest.raises(ConfigError, match="weight_memory must be one of bram, spram, not 'flash'"):
        EngineParams(weight_memory="flash")


@pytest.mark.parametrize("seed,rows,cols,drain", [(0, 2, 2, "serial"), (5, 3, 2, "parallel")])
def test_engine_with_spram_weights_loads_and_runs_exactly(seed, rows, cols, drain):
    """The iCE40 configuration (``drain="serial"``, ``desc_fetch="serial"``, weights in SPRAM): ``LOAD`` over
    the stream (the descriptors' chunks into 32-bit words), an image,
    every tensor equal to the reference executor, logits to sw.golden, flags 0, cycles = the model."""
    im, prog, rng = spram_model(seed, rows, cols, drain)
    px = rng.integers(0, 256, im.meta["input_shape"])
    dut = E.Engine(prog, baked=False)
    out = {}

    async def bench(ctx):
        async def transact(req):
            for word in req.words:
                ctx.set(dut.i_stream.payload, word)
                ctx.set(dut.i_stream.valid, 1)
                await ctx.tick().until(dut.i_stream.ready)
            ctx.set(dut.i_stream.valid, 0)
            ctx.set(dut.o_stream.ready, 1)
            got = []
            while len(got) < req.n_out:
                if ctx.get(dut.o_stream.valid):
                    got.append(ctx.get(dut.o_stream.payload))
                await ctx.tick()
            ctx.set(dut.o_stream.ready, 0)
            return got

        drv = EngineDriver(prog, transact)
        await drv.load_program()
        out["logits"] = await drv.infer(px)
        out["tensors"] = {name: await drv.read_tensor(name) for name in prog.tensors}
        out["status"] = await drv.probe()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert out["logits"].tolist() == golden.run(im, px[None]).reshape(-1).tolist()
    ref = ReferenceEngine(prog)
    ref.run(px)
    for name in prog.tensors:
        assert np.array_equal(out["tensors"][name], ref.read(name)), name
    assert out["status"].flags == 0 and out["status"].image_cycles == cycle_report(prog)["cycles_per_image"]


@settings(max_examples=8, deadline=None)
@given(words=st.integers(1, 5), steps=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_desc_fetch_reads_every_word_of_the_step(words, steps, seed):
    """``DescFetch`` (``desc_fetch="serial"``): ``ready`` after exactly ``words + 1`` cycles of ``run``, then
    ``desc`` is step ``pc``'s words, low word first, and held; ``times_const`` computes ``pc * words``."""
    from amaranth.hdl import Module
    from amaranth.lib.memory import Memory

    from rootshift.hw.engine.desc_fetch import DescFetch

    rng = np.random.default_rng(seed)
    image = [int(v) for v in rng.integers(0, 1 << 32, words * steps, dtype=np.uint64)]
    fetch = DescFetch(words, len(image))
    m = Module()
    m.submodules.fetch = fetch
    m.submodules.mem = mem = Memory(shape=32, depth=max(2, len(image)), init=image)
    rd = mem.read_port()
    m.d.comb += [rd.addr.eq(fetch.rd_addr), fetch.rd_data.eq(rd.data)]
    got = []

    async def bench(ctx):
        for pc in rng.permutation(steps):
            ctx.set(fetch.pc, int(pc))
            ctx.set(fetch.run, 1)
            n = 1
            while not ctx.get(fetch.ready):
                await ctx.tick()
                n += 1
            await ctx.tick()
            ctx.set(fetch.run, 0)
            await ctx.tick()           # DISPATCH, and one more: held
            got.append((int(pc), n, ctx.get(fetch.desc)))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for pc, n, desc in got:
        assert n == words + 1
        assert desc == sum(image[pc * words + k] << (32 * k) for k in range(words))


@pytest.mark.slow
def test_ice40_configuration_under_verilator(tmp_path):
    """The whole iCE40 configuration's Verilog (serial drain, SPRAM weights as the model, serial descriptors)
    under cocotb + Verilator through the host protocol: LOAD, two images, every tensor and the logits equal
    to the golden model, flags 0, cycles = the model (sim/engine_cosim.py)."""
    from rootshift.sim.engine_cosim import compare, run_job

    im, prog, rng = spram_model(3, 2, 2, "serial")
    px = rng.integers(0, 256, [2] + list(im.meta["input_shape"]))
    res = run_job(prog, px, sim="verilator", cache=tmp_path, baked=False)
    bad, compared, first, _ = compare(prog, im, px, res["images"])
    assert bad == 0 and first is None and compared > 0, first
    assert res["load"]["flags"] == 0
    assert all(r["status"].image_cycles == cycle_report(prog)["cycles_per_image"] for r in res["images"])
