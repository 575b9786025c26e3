"""Deframer: checks request frames byte by byte and commits their payload, or names what went wrong."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import framing as F
from .crc import crc16_next


class Deframer(wiring.Component):
    """Parses ``0xA5 | n_words | n_out | payload | CRC`` (hw/board/framing.py). Payload bytes go to a
    :class:`PacketBuffer` through ``w_*``; the CRC decides ``commit`` or ``rollback``. A good frame pulses
    ``start`` with its ``n_out``; anything else ends in one error, reported on ``error``/``error_code``
    only once the line has been quiet for ``timeout`` cycles, so the rest of a broken frame is swallowed
    and the host gets exactly one error answer:

    * a bad CRC -> ``ERR_BAD_CRC``;
    * a frame that stops arriving for ``timeout`` cycles -> ``ERR_SHORT`` (a dropped byte);
    * a byte other than 0xA5 between frames -> ``ERR_BAD_SYNC``;
    * ``n_words`` over ``max_words`` -> ``ERR_TOO_LONG``;

    A good frame with ``n_words = 0`` pulses ``reset`` (engine, buffer, framer), then ``start`` with
    ``n_out = 0`` a cycle later, so the reset is answered like any request.
    * ``line_error`` (a UART framing error or overrun) at any time -> ``ERR_LINE``.

    ``rx.ready`` is always high: the buffer has room for a whole frame by construction (docs/boards.md).

    Members
    -------
    rx : In(stream.Signature(8))    -- bytes from the UART
    line_error : In(1)
    w_data, w_en, commit, rollback : Out -- to the PacketBuffer
    start : Out(1)                  -- pulse: a frame was committed
    reset : Out(1)                  -- pulse: a reset frame arrived
    n_out : Out(16)                 -- its answer length, valid with ``start``
    error : Out(1)                  -- pulse: report ``error_code``
    error_code : Out(8)
    """

    def __init__(self, word_bytes, max_words, timeout):
        for name, v, lo in (("word_bytes", word_bytes, 1), ("max_words", max_words, 1), ("timeout", timeout, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {v!r}")
        if max_words >= 1 << 16:
            raise ValueError(f"max_words must fit the 16-bit length field, not {max_words}")
        self.word_bytes, self.max_words, self.timeout = word_bytes, max_words, timeout
        super().__init__({"rx": In(stream.Signature(8)), "line_error": In(1),
                          "w_data": Out(8), "w_en": Out(1), "commit": Out(1), "rollback": Out(1),
                          "start": Out(1), "reset": Out(1), "n_out": Out(16), "error": Out(1), "error_code": Out(8)})

    def elaborate(self, platform):
        m = Module()
        rx = self.rx
        byte, got = rx.payload, rx.valid
        m.d.comb += [rx.ready.eq(1), self.w_data.eq(byte)]
        crc = Signal(16)
        hdr = Signal(32)                        # n_words, n_out as they arrive (LE)
        idx = Signal(3)
        n_words = Signal(16)
        words = Signal(16)
        wbyte = Signal(range(self.word_bytes))
        crc_rx = Signal(8)
        crc_body = Signal(16)
        code = Signal(8)
        idle = Signal(range(self.timeout + 1))
        quiet = idle == self.timeout
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(~quiet):
            m.d.sync += idle.eq(idle + 1)
        with m.If(got):
            m.d.sync += crc.eq(crc16_next(crc, byte))

        def fail(err):
            m.d.comb += self.rollback.eq(1)
            m.d.sync += code.eq(err)
            m.next = "DISCARD"

        with m.FSM():
            with m.State("SYNC"):
                with m.If(self.line_error):  # the byte stream can no longer be trusted
                    fail(F.ERR_LINE)
                with m.Else():
                    with m.If(got):
                        m.d.sync += [crc.eq(F.CRC_INIT), idx.eq(0)]
                        with m.If(byte == F.SYNC_REQUEST):
                            m.next = "HEADER"
                        with m.Else():
                            fail(F.ERR_BAD_SYNC)
            with m.State("HEADER"):
                with m.If(self.line_error):  # the byte stream can no longer be trusted
                    fail(F.ERR_LINE)
                with m.Else():
                    with m.If(got):
                        m.d.sync += [hdr.eq(byte << 24 | hdr >> 8), idx.eq(idx + 1)]
                        with m.If(idx == 3):
                            nw = hdr[8:24]               # the last byte is still on the way in: n_out's high byte
                            m.d.sync += [n_words.eq(nw), words.eq(0), wbyte.eq(0)]
                            with m.If(nw > self.max_words):
                                fail(F.ERR_TOO_LONG)
                            with m.Elif(nw == 0):
                                m.next = "CRC_LO"
                            with m.Else():
                                m.next = "PAYLOAD"
                    with m.Elif(quiet):
                        fail(F.ERR_SHORT)
            with m.State("PAYLOAD"):
                with m.If(self.line_error):  # the byte stream can no longer be trusted
                    fail(F.ERR_LINE)
                with m.Else():
                    with m.If(got):
                        m.d.comb += self.w_en.eq(1)
                        m.d.sync += wbyte.eq(wbyte + 1)
                        with m.If(wbyte == self.word_bytes - 1):
                            m.d.sync += [wbyte.eq(0), words.eq(words + 1)]
                            with m.If(words == n_words - 1):
                                m.next = "CRC_LO"
                    with m.Elif(quiet):
                        fail(F.ERR_SHORT)
            with m.State("CRC_LO"):
                with m.If(self.line_error):  # the byte stream can no longer be trusted
                    fail(F.ERR_LINE)
                with m.Else():
                    with m.If(got):
                        m.d.sync += [crc_rx.eq(byte), crc_body.eq(crc)]
                        m.next = "CRC_HI"
                    with m.Elif(quiet):
                        fail(F.ERR_SHORT)
            with m.State("CRC_HI"):
                with m.If(self.line_error):  # the byte stream can no longer be trusted
                    fail(F.ERR_LINE)
                with m.Else():
                    with m.If(got):
                        with m.If((crc_body[0:8] != crc_rx) | (crc_body[8:16] != byte)):
                            fail(F.ERR_BAD_CRC)
                        with m.Elif(n_words == 0):
                            m.d.comb += self.reset.eq(1)
                            m.next = "RESET_ACK"
                        with m.Else():
                            m.d.comb += [self.commit.eq(1), self.start.eq(1)]
                            m.next = "SYNC"
                    with m.Elif(quiet):
                        fail(F.ERR_SHORT)
            with m.State("RESET_ACK"):
                m.d.comb += self.start.eq(1)
                m.next = "SYNC"
            with m.State("DISCARD"):
                with m.If(self.line_error):  # the byte stream can no longer be trusted
                    fail(F.ERR_LINE)
                with m.Else():
                    with m.If(quiet & ~got):
                        m.d.comb += [self.error.eq(1), self.error_code.eq(code)]
                        m.next = "SYNC"
        m.d.comb += self.n_out.eq(Mux(n_words == 0, 0, hdr[16:32]))
        return m
