"""Host protocol v4's packed INFER pixels at the protocol level (docs/engine.md, "Host protocol v4"): the
port's packed-word count and its checks, a digits-like image's words, the pixel phase's cycles against
the cycle model (``rootshift compile --json``'s ``input_cycles``), and the device model against the RTL
engine on a payload with junk in its padding."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from rootshift.hw.engine import engine as E
from rootshift.hw.engine.compiler import compile_model
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.host_port import HostPort, PortConfig
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.engine.pixel_unpack import unpack_tail
from rootshift.sim.engine_device import EngineDevice
from rootshift.sim.engine_driver import EngineDriver
from rootshift.sim.engine_fuzz import first_rtl_model, fuzz_params_for, random_model
from rootshift.sw.errors import ConfigError
from test_engine_protocol import rtl_transact  # noqa: E402  (tests/ is on sys.path: the conftest's folder)
from test_pixel_unpack import py_pack  # noqa: E402

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def port(**kw):
    base = dict(data_bits=32, lanes=4, abits=8, pix_addr=0, pix_channels=1, pix_positions=64, pix_groups=1,
                out_addr=0, classes=10, fine_depth=64, code_depth=64, mems=(E.LoadMem("a", 32, 2, 1),))
    return PortConfig(**{**base, **kw})


def test_port_config_counts_packed_words_and_refuses_a_bad_layout():
    assert port().pix_words == 16 and port().pix_bank_words == 64 and port().pix_codes == 64
    assert port(data_bits=64, lanes=8).pix_words == 8
    assert port(abits=3, pix_channels=5, pix_groups=2, pix_positions=3).pix_words == 2    # 10 codes a word
    with pytest.raises(ConfigError, match=r"5 channels take ceil\(5 / 4 lanes\) = 2 words per position, "
                                          "not pix_groups 1"):
        port(pix_channels=5)
    with pytest.raises(ConfigError, match="pix_positions must be a positive integer, not 0"):
        port(pix_positions=0)
    with pytest.raises(ConfigError, match="the pixel or logits tensor lies outside its memory"):
        port(pix_addr=1)


def digits_like(cols):
    """A random 1-channel 8x8 network with 8-bit pixel codes, compiled for a 4 x ``cols`` array."""
    return first_rtl_model(0, "dual", 4, cols, (8, 8), channels=1, max_channels=6, debug=False, tries=50, **BIG)


@pytest.mark.parametrize("cols,data_bits,words", [(4, 32, 16), (8, 64, 8)])
def test_a_digits_image_is_one_byte_per_pixel(cols, data_bits, words):
    """v3 sent 64 words (a 1-channel group per position) of 4 or 8 bytes; v4 packs the 64 8-bit codes."""
    im, prog, rng = digits_like(cols)
    pc = E.port_config(prog)
    assert (pc.data_bits, pc.pix_words, pc.pix_bank_words) == (data_bits, words, 64)
    drv = EngineDriver(prog, EngineDevice(prog))
    px = rng.integers(0, 256, (1, 8, 8))
    w = drv.pixel_words(px)
    assert len(w) == words and words * data_bits // 8 == 64
    assert w == py_pack(px.reshape(-1).tolist(), 8, data_bits)
    assert cycle_report(prog)["input_cycles"] == 64 and unpack_tail(64, 8, data_bits) == data_bits // 8 - 1


def test_infer_pixel_phase_takes_the_model_input_cycles():
    """The HostPort of a compiled program, its stream always valid: the cycles from the INFER word to
    ``seq_start`` are ``cycle_report``'s ``input_cycles`` (what ``rootshift compile --json`` reports), and
    the words taken are ``pix_words``."""
    for cols, shape in ((2, [3, 4, 5]), (4, [1, 8, 8]), (3, [2, 5, 4])):
        im = random_model(np.random.default_rng(cols), "dual", in_shape=shape, max_channels=5, maxpool=False)
        prog = compile_model(im, EngineParams(fuzz_params_for(im, 2, cols), **BIG))
        pc = E.port_config(prog)
        dut = HostPort(pc)
        px = np.random.default_rng(1).integers(0, 256, shape)
        words = EngineDriver(prog, EngineDevice(prog)).pixel_words(px)
        seen = {}

        async def bench(ctx):
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, E.OP_INFER << 28)
            await ctx.tick()
            cyc, k = 0, 0
            while True:
                ctx.set(dut.i_stream.payload, words[min(k, len(words) - 1)])
                await ctx.delay(1e-9)
                started = ctx.get(dut.seq_start)
                k += ctx.get(dut.i_stream.ready)
                await ctx.tick()
                cyc += 1
                if started:
                    break
                assert cyc < 10_000
            seen.update(cycles=cyc, taken=k)

        sim = Simulator(dut)
        sim.add_clock(1e-6)
        sim.add_testbench(bench)
        sim.run()
        assert seen == {"cycles": cycle_report(prog)["input_cycles"], "taken": pc.pix_words}, (cols, shape)


def test_device_model_ignores_padding_like_the_rtl():
    """An INFER whose last word carries junk in its padding (75 codes, 4 a word): the RTL engine and the
    device model write the same code banks (READ_CODES) and answer the same logits as with a zero-padded
    word (the padding is ignored, docs/engine.md)."""
    from rootshift.sim.driver import Request

    im = random_model(np.random.default_rng(3), "dual", in_shape=[3, 5, 5], max_channels=4, maxpool=False)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, 2, 2), **BIG), debug=True)
    E.rtl_check(prog)
    pc = E.port_config(prog)
    assert (pc.pix_codes, pc.data_bits // pc.abits, pc.pix_words) == (75, 4, 19)
    words = EngineDriver(prog, EngineDevice(prog)).pixel_words(np.random.default_rng(4).integers(0, 256, (3, 5, 5)))
    junk = words[:-1] + [words[-1] | 0xFF << 24]
    n_codes = E.memory_words(prog, "codes")
    seq = [[E.OP_INFER << 28] + junk, [E.OP_READ_CODES << 28 | n_codes, 0],
           [E.OP_INFER << 28] + words, [E.OP_READ_CODES << 28 | n_codes, 0]]
    dev = EngineDevice(prog)
    exp = [dev.transact(s) for s in seq]
    assert exp[0] == exp[2] and exp[1] == exp[3] and len(exp[0]) > 0
    dut = E.Engine(prog)
    got = []

    async def bench(ctx):
        transact = rtl_transact(ctx, dut)
        for k, (s, e) in enumerate(zip(seq, exp)):
            got.append(await transact(Request(s, len(e), {"command": k})))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == exp
