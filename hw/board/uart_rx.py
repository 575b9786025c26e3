"""UARTRx: 8N1 receiver, one byte per frame on an Amaranth stream."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


class UARTRx(wiring.Component):
    """Samples each bit in its middle, ``divisor`` clock cycles apart, after a 2-flip-flop synchronizer.

    A start bit is re-checked half a bit after its falling edge (a shorter glitch is ignored). A low stop
    bit is a framing error: the byte is dropped, ``frame_error`` pulses, and the receiver waits for the line
    to go high again (a break) before it looks for the next start bit. A byte that completes while the
    previous one is still unaccepted is lost and ``overrun`` pulses: the stream never stalls the line, so
    whoever consumes ``rx`` must keep up (docs/boards.md, "Flow control").

    Members
    -------
    pin : In(1)                     -- the serial line (idle high)
    rx : Out(stream.Signature(8))   -- received bytes
    frame_error : Out(1)            -- one-cycle pulse: stop bit was low
    overrun : Out(1)                -- one-cycle pulse: a byte was lost to back-pressure
    """

    def __init__(self, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"UART divisor (clock cycles per bit) must be an integer >= 4, not {divisor!r}")
        self.divisor = divisor
        super().__init__({"pin": In(1, init=1), "rx": Out(stream.Signature(8)),
                          "frame_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.pin, line, init=1)
        cnt = Signal(range(self.divisor))
        bit = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.rx.valid & self.rx.ready):
            m.d.sync += self.rx.valid.eq(0)

        with m.If(cnt != 0):
            m.d.sync += cnt.eq(cnt - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += cnt.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(cnt == 0):
                    with m.If(line):
                        m.next = "IDLE"                      # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [cnt.eq(self.divisor - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(cnt == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)),
                                 cnt.eq(self.divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(cnt == 0):
                    with m.If(line):
                        with m.If(self.rx.valid & ~self.rx.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.rx.payload.eq(shreg), self.rx.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m
