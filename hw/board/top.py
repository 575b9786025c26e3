"""BoardTop: the design that goes on the FPGA: :class:`BoardCore` plus clock, reset and pins."""

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from .boards import Board
from .core import BoardCore
from .pll import pll_instance


def board_clock(m, platform, board: Board):
    """THE SEAM between the board and its simulation: the oscillator pin, the PLL and the reset.

    It makes the ``sync`` domain at ``board.clock_mhz`` (through the PLL when that differs from the
    oscillator) and holds it in reset until the PLL locks. The simulations (tests/test_board_link.py,
    sim/board_cosim.py) leave out exactly this function and the I/O buffers: they drive
    :class:`BoardCore`'s clock and its UART pins directly.
    """
    pad = platform.request(platform.default_clk, 0, dir="-")
    m.domains.sync = sync = ClockDomain("sync")
    clk, locked = Signal(name="board_clk"), Signal(name="pll_locked")
    if board.clock_mhz != board.osc_mhz and board.family == "ice40":
        m.submodules.pll = pll_instance(board.family, board.osc_mhz, board.clock_mhz, pad.io, clk, locked)
    else:
        m.submodules.osc_buf = osc_buf = io.Buffer("i", pad)
        if board.clock_mhz == board.osc_mhz:
            m.d.comb += [clk.eq(osc_buf.i), locked.eq(1)]
        else:
            m.submodules.pll = pll_instance(board.family, board.osc_mhz, board.clock_mhz, osc_buf.i, clk, locked,
                                             device=board.device)
    # nextpnr derives the PLL output's constraint from the oscillator's and the dividers
    m.d.comb += sync.clk.eq(clk)
    m.submodules.reset = ResetSynchronizer(~locked, domain="sync")


class BoardTop(Elaboratable):
    """The engine slot (any component with the stream interface: the board table's engine) behind the
    UART link, on ``board``'s pins: UART rx/tx, a busy LED and an error LED (docs/boards.md, "LEDs")."""

    def __init__(self, board: Board, engine):
        self.board = board
        self.core = BoardCore(engine, board.clock_mhz * 1e6, board.baud, board.buffer_bytes,
                              timeout_cycles=int(board.link_timeout_ms * 1e-3 * board.clock_mhz * 1e6))

    def elaborate(self, platform):
        m = Module()
        board_clock(m, platform, self.board)
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.submodules.busy_buf = busy = io.Buffer("o", platform.request(*self.board.led_busy, dir="-"))
        m.submodules.error_buf = error = io.Buffer("o", platform.request(*self.board.led_error, dir="-"))
        m.d.comb += [core.rx_pin.eq(rx.i), tx.o.eq(core.tx_pin), busy.o.eq(core.led_busy),
                     error.o.eq(core.led_error)]
        return m
