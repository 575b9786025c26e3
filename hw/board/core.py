"""BoardCore: everything on the board that runs in the engine's clock domain, pins in and out."""

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .bridge import LinkBridge
from .uart import UART


class BoardCore(wiring.Component):
    """The engine slot, the UART and the :class:`LinkBridge`, in one ``sync`` domain. The board top
    (:class:`~rootshift.hw.board.top.BoardTop`) adds only the PLL, the reset and the I/O buffers around it,
    so a simulation of this component is a simulation of the board from its UART pins in.

    ``engine`` is any component with ``i_stream`` (In, stream of ``data_bits``), ``o_stream`` (Out, stream
    of 32 bits) and ``busy`` (Out(1)): the network :class:`~rootshift.hw.engine.engine.Engine` (ULX3S-45F/85F)
    or the tile :class:`~rootshift.hw.accelerator.Accelerator`; the board table decides (boards.py).

    An engine with ``answer_words`` (the network engine: its logits) answers into a FIFO that deep: it
    hands an image's logits over in as many cycles and starts the next image (whose request is already in
    the packet buffer) while the UART sends them, so an overlapped run takes ``max(compute, answer +
    request)`` per image instead of ``max(compute, request) + answer`` (docs/boards.md, "Overlap").

    Members
    -------
    rx_pin : In(1)      -- UART line from the host
    tx_pin : Out(1)     -- UART line to the host
    led_busy : Out(1)   -- the engine is computing
    led_error : Out(1)  -- the last request was rejected (a bad frame on the line)
    """

    def __init__(self, engine, clk_hz, baud, buffer_bytes, timeout_cycles):
        for name in ("i_stream", "o_stream", "busy"):
            if not hasattr(engine, name):
                raise TypeError(f"the engine must have i_stream, o_stream and busy; {engine!r} has no {name}")
        self.engine = engine
        self.uart = UART(clk_hz, baud)
        self.bridge = LinkBridge(len(engine.i_stream.payload), buffer_bytes, timeout_cycles)
        self.answer_words = getattr(engine, "answer_words", 0)
        if isinstance(self.answer_words, bool) or not isinstance(self.answer_words, int) or self.answer_words < 0:
            raise TypeError(f"the engine's answer_words must be a non-negative integer, not {self.answer_words!r}")
        super().__init__({"rx_pin": In(1, init=1), "tx_pin": Out(1, init=1), "led_busy": Out(1), "led_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = self.uart
        m.submodules.bridge = bridge = self.bridge
        engine = self.engine
        # a reset frame (after a link error) resets the engine a cycle later, from a flip-flop: the pulse
        # leaves the deframer's CRC check combinationally, and through the engine's thousands of flip-flops
        # it was the board's critical path (ULX3S-85F, 8818fa5: 15.6 ns, 13.0 of them routing)
        engine_reset = Signal()
        m.d.sync += engine_reset.eq(bridge.engine_reset)
        m.submodules.engine = ResetInserter(engine_reset)(engine)
        wiring.connect(m, uart.rx, bridge.rx)
        wiring.connect(m, bridge.tx, uart.tx)
        wiring.connect(m, bridge.i_stream, engine.i_stream)
        if self.answer_words:
            # reset with the engine: a reset frame drops logits not yet sent
            fifo = SyncFIFOBuffered(width=32, depth=self.answer_words)
            m.submodules.answers = ResetInserter(engine_reset)(fifo)
            wiring.connect(m, engine.o_stream, fifo.w_stream)
            wiring.connect(m, fifo.r_stream, bridge.o_stream)
        else:
            wiring.connect(m, engine.o_stream, bridge.o_stream)
        m.d.comb += [uart.rx_pin.eq(self.rx_pin), self.tx_pin.eq(uart.tx_pin),
                     bridge.line_error.eq(uart.frame_error | uart.overrun),
                     self.led_error.eq(bridge.error)]
        # stretch busy so a short tile is still visible: ~1/6 s at 12 MHz
        stretch = Signal(21)
        with m.If(engine.busy):
            m.d.sync += stretch.eq((1 << len(stretch)) - 1)
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        m.d.comb += self.led_busy.eq(engine.busy | (stretch != 0))
        return m
