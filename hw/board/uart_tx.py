"""UARTTx: 8N1 transmitter fed by an Amaranth stream."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class UARTTx(wiring.Component):
    """Sends a start bit, 8 data bits LSB first and one stop bit, each ``divisor`` clock cycles long.
    ``tx.ready`` is high only while the line is idle, so back-pressure holds the producer.

    Members
    -------
    tx : In(stream.Signature(8))   -- bytes to send
    pin : Out(1)                   -- the serial line (idle high)
    """

    def __init__(self, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"UART divisor (clock cycles per bit) must be an integer >= 4, not {divisor!r}")
        self.divisor = divisor
        super().__init__({"tx": In(stream.Signature(8)), "pin": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(10, init=0x3FF)              # stop, data[7:0], start; shifted out from bit 0
        bits = Signal(range(11))
        cnt = Signal(range(self.divisor))
        m.d.comb += self.pin.eq(shreg[0])
        with m.If(bits == 0):
            m.d.comb += self.tx.ready.eq(1)
            with m.If(self.tx.valid):
                m.d.sync += [shreg.eq(Cat(Const(0, 1), self.tx.payload, Const(1, 1))), bits.eq(10),
                             cnt.eq(self.divisor - 1)]
        with m.Elif(cnt == 0):
            m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), bits.eq(bits - 1), cnt.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += cnt.eq(cnt - 1)
        return m
