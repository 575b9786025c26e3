"""The board core (UART + framing + engine slot) in amaranth.sim, driven bit by bit on its UART pins by
the host's own framing code (sim/transport.py FramedLink): tiles match the device model, and corrupted,
dropped and junk bytes end in a named LinkError and never in a wrong answer (docs/boards.md)."""

from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from rootshift.hw import protocol as P
from rootshift.hw.accelerator import Accelerator
from rootshift.hw.board import framing as F
from rootshift.hw.board.core import BoardCore
from rootshift.hw.params import ArrayParams
from rootshift.sim.driver import Request
from rootshift.sim.model import DeviceModel
from rootshift.sim.transport import FramedLink, LinkError

CLK, BAUD = 4_000_000, 1_000_000          # 4 cycles per bit: the tightest ratio the UART allows
PARAMS = ArrayParams(wbits=4, abits=4, rows=2, cols=2, max_k=12, max_shift=3)
BUFFER = 64                               # 16 words: a tile request needs several frames


class PinChannel:
    """A byte channel whose bytes travel bit by bit on the core's rx/tx pins in amaranth.sim.
    ``read`` advances the simulation; timeouts are in simulated seconds. ``faults`` maps the index of a
    written frame to ``("corrupt", offset)``, ``("drop", offset)`` or ``("junk", byte)``."""

    def __init__(self, core, divisor, faults=None):
        self.core, self.div = core, divisor
        self.out, self.inp = deque(), []
        self.cycles = 0
        self.writes = 0
        self.faults = faults or {}
        self.sim = Simulator(core)
        self.sim.add_clock(1 / CLK)
        self.sim.add_testbench(self._drive, background=True)
        self.sim.add_testbench(self._monitor, background=True)

    def write(self, data):
        data = bytearray(data)
        kind, arg = self.faults.get(self.writes, (None, None))
        if kind == "corrupt":
            data[arg] ^= 0x10
        elif kind == "drop":
            del data[arg]
        elif kind == "junk":
            data = bytearray((arg,)) + data
        self.writes += 1
        self.out.extend(data)

    def _advance_until(self, cond, cycles):
        end = self.cycles + cycles
        while not cond() and self.cycles < end:
            self.sim.advance()

    def read(self, n, timeout):
        self._advance_until(lambda: len(self.inp) >= n, int(timeout * CLK))
        data, self.inp[:] = bytes(self.inp[:n]), self.inp[n:]
        return data

    def flush_input(self, quiet):
        self._advance_until(lambda: False, int(quiet * CLK))
        self.inp.clear()

    async def _drive(self, ctx):
        ctx.set(self.core.rx_pin, 1)
        while True:
            await ctx.tick()
            self.cycles += 1
            if self.out:
                b = self.out.popleft()
                for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                    ctx.set(self.core.rx_pin, bit)
                    await ctx.tick().repeat(self.div)
                    self.cycles += self.div

    async def _monitor(self, ctx):
        while True:
            await ctx.tick()
            if ctx.get(self.core.tx_pin):
                continue
            await ctx.tick().repeat(self.div // 2)
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(self.div)
                byte |= ctx.get(self.core.tx_pin) << i
            await ctx.tick().repeat(self.div)
            assert ctx.get(self.core.tx_pin) == 1, "the board sent a low stop bit"
            self.inp.append(byte)


def make_link(faults=None):
    timeout = 8 * 10 * CLK // BAUD               # 8 byte times of silence: a dropped byte
    core = BoardCore(Accelerator(PARAMS), CLK, BAUD, BUFFER, timeout_cycles=timeout)
    ch = PinChannel(core, CLK // BAUD, faults)
    link = FramedLink(ch, PARAMS.data_bits, core.bridge.max_words, timeout=2e-3, quiet=2 * timeout / CLK)
    return link, ch


def random_tile(rng, k=9):
    a = rng.integers(0, 2 ** PARAMS.abits, (PARAMS.rows, k))
    fmt = PARAMS.format
    w = rng.choice(fmt.all_codes(), (PARAMS.cols, k))
    mults = [rng.integers(-2**20, 2**20, PARAMS.cols) for _ in range(PARAMS.n_acc)]
    bias = rng.integers(-2**30, 2**30, PARAMS.cols)
    return P.tile_words(PARAMS, a, w, mults, bias, shift=12, relu=False)


def test_tiles_over_the_pins_match_the_device_model():
    link, ch = make_link()
    model = DeviceModel(PARAMS)
    rng = np.random.default_rng(5)
    for i in range(2):
        words = random_tile(rng)
        n_out = PARAMS.rows * PARAMS.cols
        assert len(words) > link.max_words                    # split into several frames
        assert link.transact(Request(words, n_out)) == model.transact(words, n_out), i
    status = link.transact(Request([P.header(P.OP_STATUS)], 3))
    assert status[0] == P.status_word0(0)
    assert link.frames == 2 * -(-len(words) // link.max_words) + 1


@pytest.mark.parametrize("fault, kind", [
    (("corrupt", 9), "device:bad_crc"),         # a payload byte
    (("corrupt", 1), "device:"),                 # the length: bad CRC, too long or short, all named
    (("drop", 7), "device:short"),               # a payload byte dropped: the frame never completes
    (("drop", 0), "device:bad_sync"),            # the sync byte dropped
    (("junk", 0x00), "device:bad_sync"),         # noise between frames
])
def test_line_faults_are_named_and_never_a_wrong_answer(fault, kind):
    """The fault hits the second frame of the second tile, after the engine took the first one. That tile
    raises; the host's reset frame puts the engine back in IDLE, and the tile resent whole is exact."""
    rng = np.random.default_rng(11)
    tiles = [random_tile(rng, k=3) for _ in range(2)]
    n_out = PARAMS.rows * PARAMS.cols
    frames_per_tile = -(-len(tiles[0]) // 16)
    link, ch = make_link({frames_per_tile + 1: fault})
    model = DeviceModel(PARAMS)
    assert link.transact(Request(tiles[0], n_out)) == model.transact(tiles[0], n_out)
    with pytest.raises(LinkError) as e:
        link.transact(Request(tiles[1], n_out, {"layer": "conv1", "tile": (0, 0)}))
    assert e.value.kind.startswith(kind), e.value
    assert "conv1" in str(e.value)
    assert link.transact(Request(tiles[1], n_out)) == model.transact(tiles[1], n_out)


def test_answer_errors_are_named_on_the_host():
    """A corrupted or missing answer is caught by the host: CRC, sync, length, timeout."""

    class Canned:
        def __init__(self, answer):
            self.answer = answer

        def write(self, data):
            pass

        def read(self, n, timeout):
            data, self.answer = self.answer[:n], self.answer[n:]
            return data

        def flush_input(self, quiet):
            self.answer = b""

    good = F.encode_answer(F.OK, [1, 2, 3])
    cases = [(good[:5] + bytes([good[5] ^ 1]) + good[6:], "answer_crc"), (b"\x00" + good[1:], "answer_sync"),
             (F.encode_answer(F.OK, [1, 2]), "answer_length"), (b"", "timeout"), (good[:9], "short_answer"),
             (F.encode_answer(F.ERR_BAD_CRC), "device:bad_crc")]
    for answer, kind in cases:
        link = FramedLink(Canned(answer), 32, 16)
        with pytest.raises(LinkError) as e:
            link.transact(Request([0], 3))
        assert e.value.kind == kind
    assert FramedLink(Canned(good), 32, 16).transact(Request([0], 3)) == [1, 2, 3]


def test_request_encoding_matches_the_format():
    frame = F.encode_request([0x11223344, 5], 7, 4)
    assert frame[:5] == bytes([0xA5, 2, 0, 7, 0])
    assert frame[5:9] == bytes([0x44, 0x33, 0x22, 0x11])
    assert F.crc16(frame[1:-2]) == frame[-2] | frame[-1] << 8
    assert F.crc16(b"123456789") == 0x29B1       # the CRC-16/CCITT-FALSE check value
