"""The board core's Verilog (UART pins in and out, framing, engine slot) in cocotb + Verilator, with the
host's own FramedLink talking to it bit by bit on its rx/tx pins: tiles equal the device model's
answers, and corrupted or dropped bytes on the line each raise a named LinkError, never a wrong answer.
Only the PLL, reset synchronizer and I/O buffers (hw/board/top.py ``board_clock``, the seam) are left out.

pytest runs ``test_board_core_in_verilator``; cocotb runs ``board_pins_bench`` inside the simulator.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

CLK, BAUD = 4_000_000, 1_000_000
BUFFER = 64
FAULTS = [("corrupt", 9, "device:bad_crc"), ("drop", 7, "device:short"), ("drop", 0, "device:bad_sync")]


def _params():
    from rootshift.hw.params import ArrayParams

    return ArrayParams(wbits=4, abits=4, rows=2, cols=2, max_k=12, max_shift=3)


def _core():
    from rootshift.hw.accelerator import Accelerator
    from rootshift.hw.board.core import BoardCore

    return BoardCore(Accelerator(_params()), CLK, BAUD, BUFFER, timeout_cycles=8 * 10 * CLK // BAUD)


def _tile(rng):
    from rootshift.hw import protocol as P

    p = _params()
    a = rng.integers(0, 2 ** p.abits, (p.rows, 5))
    w = rng.choice(p.format.all_codes(), (p.cols, 5))
    mults = [rng.integers(-2**20, 2**20, p.cols) for _ in range(p.n_acc)]
    return P.tile_words(p, a, w, mults, rng.integers(-2**30, 2**30, p.cols), shift=12, relu=False)


@pytest.mark.slow
def test_board_core_in_verilator(tmp_path):
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    from rootshift.hw.tools import verilator_env

    src = tmp_path / "board_core.v"
    src.write_text(verilog.convert(_core(), name="board_core"))
    os.environ.update({k: v for k, v in verilator_env().items() if k in ("PATH", "VERILATOR_ROOT")})
    runner = get_runner("verilator")
    runner.build(sources=[src], hdl_toplevel="board_core", build_dir=tmp_path / "build",
                 build_args=["-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "--output-split", "0"], always=True,
                 log_file=tmp_path / "build.log")
    out = tmp_path / "result.json"
    runner.test(test_module="test_board_cocotb", hdl_toplevel="board_core", build_dir=tmp_path / "build",
                test_dir=Path(__file__).parent, extra_env={"ROOTSHIFT_BOARD_RESULT": str(out)},
                log_file=tmp_path / "sim.log", results_xml=str(tmp_path / "results.xml"))
    result = json.loads(out.read_text())
    assert result["tiles_exact"] == result["tiles"] >= 2 + len(FAULTS)
    assert result["faults"] == [kind for _, _, kind in FAULTS], result
    assert result["wrong_answers"] == 0


try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.task import bridge, resume
    from cocotb.triggers import ClockCycles, RisingEdge
except ImportError:                    # pragma: no cover
    cocotb = None


class _PinChannel:
    """FramedLink's byte channel on the DUT's pins; reads and writes block the host thread until the
    simulation has moved the bytes (cocotb bridge/resume). Timeouts are in simulated seconds."""

    def __init__(self, dut):
        self.dut, self.div = dut, CLK // BAUD
        self.out, self.inp, self.cycles, self.fault = [], [], 0, None

    def write(self, data):
        data = bytearray(data)
        if self.fault:
            kind, at = self.fault
            self.fault = None
            if kind == "corrupt":
                data[at] ^= 0x10
            else:
                del data[at]
        self.out.extend(data)

    def read(self, n, timeout):
        return _resume_read(self, n, timeout)

    def flush_input(self, quiet):
        _resume_wait(self, quiet)
        self.inp.clear()

    async def drive(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycles += 1
            if self.out:
                b = self.out.pop(0)
                for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                    dut.rx_pin.value = bit
                    await ClockCycles(dut.clk, self.div)
                    self.cycles += self.div

    async def monitor(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            if int(dut.tx_pin.value):
                continue
            await ClockCycles(dut.clk, self.div // 2)
            byte = 0
            for i in range(8):
                await ClockCycles(dut.clk, self.div)
                byte |= int(dut.tx_pin.value) << i
            await ClockCycles(dut.clk, self.div)
            self.inp.append(byte)


if cocotb is not None:
    @resume
    async def _resume_read(ch, n, timeout):
        end = ch.cycles + int(timeout * CLK)
        while len(ch.inp) < n and ch.cycles < end:
            await ClockCycles(ch.dut.clk, 8)
        data = bytes(ch.inp[:n])
        del ch.inp[:n]
        return data

    @resume
    async def _resume_wait(ch, seconds):
        await ClockCycles(ch.dut.clk, int(seconds * CLK))

    @cocotb.test()
    async def board_pins_bench(dut):
        from rootshift.sim.driver import Request
        from rootshift.sim.model import DeviceModel
        from rootshift.sim.transport import FramedLink, LinkError

        Clock(dut.clk, 1e9 / CLK, unit="ns").start()
        dut.rx_pin.value = 1
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        ch = _PinChannel(dut)
        cocotb.start_soon(ch.drive())
        cocotb.start_soon(ch.monitor())
        p = _params()
        timeout = 8 * 10 * CLK // BAUD
        link = FramedLink(ch, p.data_bits, BUFFER // 4, timeout=2e-3, quiet=2 * timeout / CLK)
        model = DeviceModel(p)
        rng = np.random.default_rng(1)
        n_out = p.rows * p.cols
        result = {"tiles": 0, "tiles_exact": 0, "faults": [], "wrong_answers": 0}

        @bridge
        def host():
            def tile():
                words = _tile(rng)
                result["tiles"] += 1
                got = link.transact(Request(words, n_out))
                ok = got == model.transact(words, n_out)
                result["tiles_exact"] += ok
                result["wrong_answers"] += not ok

            tile()
            for kind, at, _ in FAULTS:
                ch.fault = None
                words = _tile(rng)
                frames_before = link.frames
                ch_write = ch.write

                def write_second_frame_faulty(data, state={"n": 0}, k=kind, a=at):
                    state["n"] += 1
                    if state["n"] == 2:
                        ch.fault = (k, a)
                    ch_write(data)
                ch.write = write_second_frame_faulty
                try:
                    link.transact(Request(words, n_out))
                    result["wrong_answers"] += 1          # a fault that went unnoticed
                except LinkError as e:
                    result["faults"].append(e.kind)
                finally:
                    ch.write = ch_write
                assert link.frames > frames_before
                tile()                                    # the link and the engine are usable again
            tile()

        await host()
        Path(os.environ["ROOTSHIFT_BOARD_RESULT"]).write_text(json.dumps(result))
