"""LinkBridge: UART byte streams <-> the engine's word streams, through checked frames (docs/boards.md)."""

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import framing as F
from .deframer import Deframer
from .framer import Framer
from .packet_buffer import PacketBuffer


class LinkBridge(wiring.Component):
    """Request bytes are checked by the :class:`Deframer`, held in a :class:`PacketBuffer` until their CRC
    matches, packed little-endian into ``data_bits``-wide words for the engine; the engine's 32-bit answers
    leave through the :class:`Framer`. ``buffer_bytes`` bounds a request frame (``max_words`` words).

    Members
    -------
    rx : In(stream.Signature(8))             -- bytes from the UART receiver
    line_error : In(1)                       -- UART framing error or overrun
    tx : Out(stream.Signature(8))            -- bytes to the UART transmitter
    i_stream : Out(stream.Signature(data_bits))  -- words to the engine
    o_stream : In(stream.Signature(32))      -- the engine's answers
    error : Out(1)                           -- the last request was bad (for an LED; cleared by a good one)
    engine_reset : Out(1)                    -- pulse: a reset frame; reset the engine with it
    """

    def __init__(self, data_bits, buffer_bytes, timeout):
        if isinstance(data_bits, bool) or not isinstance(data_bits, int) or data_bits < 1:
            raise ValueError(f"data_bits must be a positive integer, not {data_bits!r}")
        self.data_bits = data_bits
        self.word_bytes = F.word_bytes(data_bits)
        self.buffer_bytes = buffer_bytes
        self.max_words = min(buffer_bytes // self.word_bytes, (1 << 16) - 1)
        if self.max_words < 1:
            raise ValueError(f"a {buffer_bytes}-byte buffer cannot hold one {self.word_bytes}-byte word")
        self.timeout = timeout
        super().__init__({"rx": In(stream.Signature(8)), "line_error": In(1), "tx": Out(stream.Signature(8)),
                          "i_stream": Out(stream.Signature(data_bits)), "o_stream": In(stream.Signature(32)),
                          "error": Out(1), "engine_reset": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.deframer = dfr = Deframer(self.word_bytes, self.max_words, self.timeout)
        m.submodules.buffer = buf = PacketBuffer(self.buffer_bytes)
        m.submodules.framer = frm = ResetInserter(dfr.reset)(Framer())
        wiring.connect(m, wiring.flipped(self.rx), dfr.rx)
        m.d.comb += [dfr.line_error.eq(self.line_error), self.engine_reset.eq(dfr.reset), buf.flush.eq(dfr.reset),
                     buf.w_data.eq(dfr.w_data), buf.w_en.eq(dfr.w_en), buf.commit.eq(dfr.commit),
                     buf.rollback.eq(dfr.rollback),
                     frm.start.eq(dfr.start), frm.n_out.eq(dfr.n_out), frm.error.eq(dfr.error),
                     frm.error_code.eq(dfr.error_code)]
        wiring.connect(m, frm.words, wiring.flipped(self.o_stream))
        wiring.connect(m, frm.tx, wiring.flipped(self.tx))
        with m.If(dfr.error):
            m.d.sync += self.error.eq(1)
        with m.Elif(dfr.start):
            m.d.sync += self.error.eq(0)

        # byte -> word packer, little-endian
        ist = self.i_stream
        nbytes = Signal(range(self.word_bytes + 1))
        acc = Signal(self.word_bytes * 8)
        m.d.comb += [ist.valid.eq(nbytes == self.word_bytes), ist.payload.eq(acc[:self.data_bits]),
                     buf.r.ready.eq(nbytes != self.word_bytes)]
        with m.If(buf.r.valid & buf.r.ready):
            m.d.sync += [acc.eq(acc >> 8 | buf.r.payload << (8 * self.word_bytes - 8)), nbytes.eq(nbytes + 1)]
        with m.If((ist.valid & ist.ready) | dfr.reset):
            m.d.sync += nbytes.eq(0)
        m.d.comb += frm.drained.eq(buf.empty & (nbytes == 0))
        return m
