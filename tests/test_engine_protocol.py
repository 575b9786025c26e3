"""The engine's host driver (sim/engine_driver.py) over every transport: the Python device model, the
board's framed serial link (sim/transport.py FramedLink, over an in-memory byte channel that deframes into
the device model) and the RTL engine in amaranth.sim. Logits equal sw.golden, every tensor equal to the
reference executor, STATUS decoded (docs/engine.md, "Host protocol")."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from rootshift.hw.board import framing as F
from rootshift.hw.engine import engine as E
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.reference import ReferenceEngine
from rootshift.sim.engine_device import EngineDevice
from rootshift.sim.engine_driver import EngineDriver, EngineStatus
from rootshift.sim.engine_fuzz import first_rtl_model
from rootshift.sim.transport import FramedLink
from rootshift.sw import golden
from rootshift.sw.errors import ConfigError

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def rtl_model(seed, mode="dual", rows=2, cols=2):
    """The first random model from ``seed`` on that the RTL engine runs."""
    return first_rtl_model(seed, mode, rows, cols, **BIG)


class MemoryChannel:
    """A byte channel (write / read / flush_input) whose far end is a board in Python: it deframes
    requests, runs every whole engine command on the device model and frames the answer."""

    def __init__(self, device):
        self.device, self.pending, self.rx = device, [], bytearray()

    def write(self, frame):
        n_words, n_out = frame[1] | frame[2] << 8, frame[3] | frame[4] << 8
        assert F.crc16(frame[1:-2]) == frame[-2] | frame[-1] << 8
        if n_words == 0:
            self.pending = []
            self.rx += F.encode_answer(F.OK)
            return
        wb = (len(frame) - F.REQUEST_HEADER - F.CRC_BYTES) // n_words
        words = [int.from_bytes(frame[5 + i * wb:5 + (i + 1) * wb], "little") for i in range(n_words)]
        pending = self.pending + words
        n = self.device.complete_prefix(pending)
        self.pending = pending[n:]
        out = self.device.transact(pending[:n])
        assert len(out) == n_out, (len(out), n_out)
        self.rx += F.encode_answer(F.OK, out)

    def read(self, n, timeout):
        data, self.rx = bytes(self.rx[:n]), self.rx[n:]
        return data

    def flush_input(self, quiet):
        self.rx.clear()


def check_run(drv, im, prog, px):
    """The driver's whole surface against golden / the reference executor."""
    logits = drv.infer(px)
    assert logits.tolist() == golden.run(im, px[None]).reshape(-1).tolist()
    ref = ReferenceEngine(prog)
    ref.run(px)
    for name, t in prog.tensors.items():
        got = drv.read_fine(name) if t["kind"] == "fine" else drv.read_codes(name)
        assert np.array_equal(got, ref.read(name)), name
    st = drv.status()
    assert isinstance(st, EngineStatus) and st.is_engine and st.version == E.ENGINE_PROTOCOL_VERSION
    assert st.flags == 0 and st.errors == []
    assert st.image_cycles == cycle_report(prog)["cycles_per_image"]
    return st


def test_driver_over_the_device_model():
    im, prog, rng = rtl_model(0)
    px = rng.integers(0, 256, im.meta["input_shape"])
    drv = EngineDriver(prog, EngineDevice(prog))
    check_run(drv, im, prog, px)
    assert np.array_equal(drv.read_memory("fine")[:, :], drv.read_words("fine", 0, drv.words["fine"]))
    drv.probe()
    drv.clear()
    assert drv.status().image_cycles == 0


def test_driver_over_the_framed_link():
    """The board's transport (stop-and-wait frames, long requests split over several frames)."""
    im, prog, rng = rtl_model(3)
    px = rng.integers(0, 256, im.meta["input_shape"])
    dev = EngineDevice(prog)
    link = FramedLink(MemoryChannel(dev), max(32, prog.params.lanes * prog.params.array.abits), max_words=5)
    drv = EngineDriver(prog, link)
    check_run(drv, im, prog, px)
    assert link.frames > 10


def test_driver_refuses_bad_input():
    im, prog, rng = rtl_model(0)
    drv = EngineDriver(prog, EngineDevice(prog))
    c, h, w = prog.tensors[prog.steps[0]["out"]]["shape"]
    with pytest.raises(ConfigError, match=r"pixels must have shape \[%d, %d, %d\]" % (c, h, w)):
        drv.infer(np.zeros((c + 1, h, w), np.int64))
    with pytest.raises(ConfigError, match="pixel codes must be in 0..255"):
        drv.infer(np.full((c, h, w), 256))
    with pytest.raises(ConfigError, match="the program has no tensor 'nope'"):
        drv.read_tensor("nope")
    fine = next(n for n, t in prog.tensors.items() if t["kind"] == "fine")
    with pytest.raises(ConfigError, match=f"tensor '{fine}' holds fine, not codes: use read_fine"):
        drv.read_codes(fine)
    with pytest.raises(ConfigError, match="program must be a compiled Program"):
        EngineDriver("prog.bin", EngineDevice(prog))
    with pytest.raises(ConfigError, match="not a rootshift network engine"):
        EngineDriver(prog, lambda req: [0x52530200, 0, 0][:req.n_out]).probe()


def amaranth_run(prog, body):
    """Run ``body(drv)`` (async) against the RTL engine in amaranth.sim through the driver."""
    dut = E.Engine(prog)
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

        out["result"] = await body(EngineDriver(prog, transact))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out["result"]


def test_driver_over_the_rtl_engine():
    im, prog, rng = rtl_model(0)
    px = rng.integers(0, 256, im.meta["input_shape"])

    async def body(drv):
        assert drv.asynchronous
        logits = await drv.infer(px)
        tensors = {name: await drv.read_tensor(name) for name in prog.tensors}
        return logits, tensors, await drv.probe()

    logits, tensors, st = amaranth_run(prog, body)
    assert logits.tolist() == golden.run(im, px[None]).reshape(-1).tolist()
    ref = ReferenceEngine(prog)
    ref.run(px)
    for name in prog.tensors:
        assert np.array_equal(tensors[name], ref.read(name)), name
    assert st.flags == 0 and st.image_cycles == cycle_report(prog)["cycles_per_image"]


def rtl_transact(ctx, dut, limit=200_000):
    """An async transport over the engine's streams in amaranth.sim that fails instead of hanging when
    fewer words come back than the request expects."""

    async def transact(req):
        for word in req.words:
            ctx.set(dut.i_stream.payload, word)
            ctx.set(dut.i_stream.valid, 1)
            for _ in range(limit):
                ready = ctx.get(dut.i_stream.ready)    # settled before the edge: the word is taken on it
                await ctx.tick()
                if ready:
                    break
            else:
                raise AssertionError(f"the engine took no word for {limit} cycles ({req.info})")
        ctx.set(dut.i_stream.valid, 0)
        ctx.set(dut.o_stream.ready, 1)
        got, idle = [], 0
        while len(got) < req.n_out:
            if ctx.get(dut.o_stream.valid):
                got.append(ctx.get(dut.o_stream.payload))
                idle = 0
            idle += 1
            assert idle < limit, f"the engine answered {len(got)} of {req.n_out} words ({req.info})"
            await ctx.tick()
        for _ in range(8):                             # and nothing more
            assert not ctx.get(dut.o_stream.valid), f"an extra answer word after {req.info}"
            await ctx.tick()
        ctx.set(dut.o_stream.ready, 0)
        return got

    return transact

def rtl_answers(dut, seq, expected):
    """The RTL's answer to each request of ``seq`` (as many words as the device model gave)."""
    from rootshift.sim.driver import Request

    got = []

    async def bench(ctx):
        transact = rtl_transact(ctx, dut)
        for k, (words, exp) in enumerate(zip(seq, expected)):
            got.append(await transact(Request(words, len(exp), {"command": k, "word": hex(words[0])})))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def same_answers(seq, expected, got):
    """Assert the RTL answered like the device model (STATUS's clock total excepted); the flags seen."""
    flags_seen = 0
    for k, (words, exp, ans) in enumerate(zip(seq, expected, got)):
        if words[0] >> 28 == E.OP_STATUS:
            assert ans[:2] == exp[:2], (k, hex(ans[0]), hex(exp[0]))
            flags_seen |= exp[0] & 0xFF
        else:
            assert ans == exp, (k, hex(words[0]))
    return flags_seen


def illegal_and_legal(prog, drv, rng):
    """A word sequence of illegal and legal commands, as (words) requests: every flag, every refusal."""
    lm = E.port_config(prog).mems
    px = rng.integers(0, 256, prog.tensors[prog.steps[0]["out"]]["shape"])
    pix = drv.pixel_words(px)
    depth = {"fine": E.memory_words(prog, "fine"), "codes": E.memory_words(prog, "codes")}
    loads = drv.load_words()
    seq = [[E.OP_STATUS << 28],
           [E.OP_INFER << 28] + pix,                                    # before any LOAD: zeros, NOT_LOADED
           [E.OP_STATUS << 28], [E.OP_CLEAR << 28],
           [E.OP_READ_FINE << 28 | 0, 0],                               # n = 0: no answer, BAD_RANGE
           [E.OP_STATUS << 28], [E.OP_CLEAR << 28],
           [E.OP_READ_CODES << 28 | 2, depth["codes"] - 1],             # past the end: zeros, BAD_RANGE
           [E.OP_STATUS << 28], [E.OP_CLEAR << 28],
           [0x5 << 28 | 123], [0xF << 28],                              # unknown opcodes
           [E.OP_STATUS << 28], [E.OP_CLEAR << 28],
           [E.OP_LOAD << 28 | 9 << 24 | 3, 0, 1, 2, 3],                 # unknown memory
           [E.OP_STATUS << 28], [E.OP_CLEAR << 28],
           [E.OP_LOAD << 28 | 1 << 24 | 2 * lm[1].chunks, lm[1].depth - 1] + [7] * (2 * lm[1].chunks),  # one past
           [E.OP_STATUS << 28], [E.OP_CLEAR << 28],
           [E.OP_LOAD << 28 | 0 << 24 | lm[0].chunks + 1, 0] + [5] * (lm[0].chunks + 1),               # partial item
           [E.OP_STATUS << 28], [E.OP_CLEAR << 28],
           [E.OP_LOAD << 28 | 2 << 24 | 0, 0],                          # n = 0: nothing, no flag
           [E.OP_STATUS << 28]]
    seq += loads[:-1]                                                   # all memories but the last
    seq += [[E.OP_INFER << 28] + pix, [E.OP_STATUS << 28], [E.OP_CLEAR << 28]]
    short = loads[-1][2:-lm[-1].chunks]                                 # the last memory but its last item
    seq += [[E.OP_LOAD << 28 | (len(lm) - 1) << 24 | len(short), 0] + short]
    seq += [[E.OP_INFER << 28] + pix, [E.OP_STATUS << 28], [E.OP_CLEAR << 28]]
    seq += [[E.OP_LOAD << 28 | (len(lm) - 1) << 24 | lm[-1].chunks, lm[-1].need - 1] + loads[-1][-lm[-1].chunks:]]
    seq += [[E.OP_INFER << 28] + pix, [E.OP_STATUS << 28], [E.OP_CLEAR << 28]]
    seq += loads                                                        # the whole program
    seq += [[E.OP_INFER << 28] + pix, [E.OP_READ_FINE << 28 | depth["fine"], 0],
            [E.OP_READ_CODES << 28 | depth["codes"], 0], [E.OP_STATUS << 28]]
    return seq, px


def test_device_model_equals_rtl_on_legal_and_illegal_sequences():
    """baked=False: the same word sequence (every illegal command, partial loads, INFER before a whole
    load, then LOAD_PROGRAM and an image) through the RTL and the device model: the same answers word for
    word, flags included (STATUS's clock total excepted), and the image's logits equal sw.golden."""
    im, prog, rng = rtl_model(5)
    dev = EngineDevice(prog, baked=False)
    seq, px = illegal_and_legal(prog, EngineDriver(prog, dev), rng)
    expected = [dev.transact(words) for words in seq]
    dut = E.Engine(prog, baked=False)
    got = rtl_answers(dut, seq, expected)
    flags_seen = same_answers(seq, expected, got)
    assert flags_seen == E.FLAG_BAD_OPCODE | E.FLAG_BAD_RANGE | E.FLAG_NOT_LOADED
    # the refused INFERs answered zeros; the last one the golden logits; its STATUS has no flag
    assert expected[1] == [0] * prog.tensors[prog.output]["shape"][0]
    infer = [k for k, w in enumerate(seq) if w[0] >> 28 == E.OP_INFER]
    assert [expected[k] == [0] * len(expected[k]) for k in infer] == [True, True, True, True, False]
    from rootshift.sim.engine_driver import s32

    assert s32(expected[infer[-1]]).tolist() == golden.run(im, px[None]).reshape(-1).tolist()
    assert expected[-1][0] & 0xFF == 0 and expected[-1][1] == cycle_report(prog)["cycles_per_image"]


@pytest.mark.parametrize("seed", [1, 2])
def test_device_model_equals_rtl_on_random_word_sequences(seed):
    """Random commands, legal and illegal (unknown opcodes, reads and loads around the memories' ends,
    unknown memories, partial items, INFER before a whole load), then the program and an image: RTL and
    device model answer the same words, flags and loaded memories included."""
    im, prog, rng = rtl_model(5)
    rng = np.random.default_rng(seed)
    dev = EngineDevice(prog, baked=False)
    drv = EngineDriver(prog, dev)
    mems = E.port_config(prog).mems
    depth = {"fine": E.memory_words(prog, "fine"), "codes": E.memory_words(prog, "codes")}
    px = rng.integers(0, 256, prog.tensors[prog.steps[0]["out"]]["shape"])
    seq, expected = [], []

    def add(words):
        seq.append(words)
        expected.append(dev.transact(words))

    for _ in range(60):
        kind = rng.choice(["clear", "status", "bad", "read", "load", "infer"])
        if kind == "clear":
            add([E.OP_CLEAR << 28])
        elif kind == "status":
            add([E.OP_STATUS << 28])
        elif kind == "bad":
            add([int(rng.choice([5, 6, 8, 11, 15])) << 28 | int(rng.integers(0, 1 << 28))])
        elif kind == "read":
            k = str(rng.choice(["fine", "codes"]))
            n = int(rng.choice([0, 1, 2, depth[k]]))
            addr = int(rng.choice([0, depth[k] - 1, depth[k], int(rng.integers(0, depth[k]))]))
            add([(E.OP_READ_FINE if k == "fine" else E.OP_READ_CODES) << 28 | n, addr])
        elif kind == "load":
            sel = int(rng.integers(0, len(mems) + 2))
            m = mems[min(sel, len(mems) - 1)]
            addr = int(rng.choice([0, 1, m.need - 1, m.depth - 1, m.depth]))
            n = int(rng.integers(0, 2 * m.chunks + 2))
            add([E.OP_LOAD << 28 | sel << 24 | n, addr] + [int(v) for v in rng.integers(0, 1 << 32, n)])
        elif not all(dev.loaded):       # INFER is refused (answered with zeros) until a whole load
            add([E.OP_INFER << 28] + drv.pixel_words(px))
    assert any(w[0] >> 28 == E.OP_INFER for w in seq)
    for words in drv.load_words():
        add(words)
    add([E.OP_CLEAR << 28])
    add([E.OP_INFER << 28] + drv.pixel_words(px))
    add([E.OP_READ_CODES << 28 | depth["codes"], 0])
    add([E.OP_STATUS << 28])
    dut = E.Engine(prog, baked=False)
    got = rtl_answers(dut, seq, expected)
    flags_seen = same_answers(seq, expected, got)
    assert flags_seen == E.FLAG_BAD_OPCODE | E.FLAG_BAD_RANGE | E.FLAG_NOT_LOADED
    from rootshift.sim.engine_driver import s32

    assert s32(expected[-3]).tolist() == golden.run(im, px[None]).reshape(-1).tolist()
    assert expected[-1][0] & 0xFF == 0
