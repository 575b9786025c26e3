"""UART: an 8N1 UART (receiver + transmitter) with ``lib.stream`` byte interfaces, baud rate a parameter."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw.errors import ConfigError

from .uart_rx import UARTRx
from .uart_tx import UARTTx

MAX_BAUD = 3_000_000      # what the FTDI FT2232H on both boards reaches
MAX_BAUD_ERROR = 0.02     # 8N1 tolerates ~5 % total; the far end takes the other half


def uart_divisor(clk_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clk_hz``, or a :class:`ConfigError` naming the problem.

    The divisor must be at least 4 (the receiver samples mid-bit after a 2-cycle synchronizer) and the
    rounding must keep the rate within 2 % of ``baud``.
    """
    if isinstance(baud, bool) or not isinstance(baud, int) or not 1 <= baud <= MAX_BAUD:
        raise ConfigError(f"baud rate must be an integer in 1..{MAX_BAUD}, not {baud!r}")
    if not isinstance(clk_hz, (int, float)) or clk_hz <= 0:
        raise ConfigError(f"clock frequency must be a positive number of Hz, not {clk_hz!r}")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ConfigError(f"a {clk_hz / 1e6:g} MHz clock is too slow for {baud} baud: the UART needs at least "
                          f"4 clock cycles per bit ({4 * baud / 1e6:g} MHz)")
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ConfigError(f"{baud} baud from a {clk_hz / 1e6:g} MHz clock: {clk_hz / baud:.3f} cycles per bit rounds "
                          f"to {divisor}, a {100 * error:.1f} % rate error (at most {100 * MAX_BAUD_ERROR:g} %); "
                          f"pick a clock that is a near multiple of the baud rate")
    return divisor


class UART(wiring.Component):
    """Members
    -------
    rx_pin : In(1)                  -- line from the host (idle high)
    tx_pin : Out(1)                 -- line to the host
    rx : Out(stream.Signature(8))   -- received bytes (see :class:`UARTRx` for overrun)
    tx : In(stream.Signature(8))    -- bytes to send
    frame_error : Out(1)            -- pulse: a received stop bit was low
    overrun : Out(1)                -- pulse: a received byte was lost to back-pressure
    """

    def __init__(self, clk_hz, baud):
        self.divisor = uart_divisor(clk_hz, baud)
        self.clk_hz, self.baud = clk_hz, baud
        super().__init__({"rx_pin": In(1, init=1), "tx_pin": Out(1, init=1), "rx": Out(stream.Signature(8)),
                          "tx": In(stream.Signature(8)), "frame_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTRx(self.divisor)
        m.submodules.tx = tx = UARTTx(self.divisor)
        m.d.comb += [rx.pin.eq(self.rx_pin), self.tx_pin.eq(tx.pin), self.frame_error.eq(rx.frame_error),
                     self.overrun.eq(rx.overrun)]
        wiring.connect(m, wiring.flipped(self.rx), rx.rx)
        wiring.connect(m, tx.tx, wiring.flipped(self.tx))
        return m
