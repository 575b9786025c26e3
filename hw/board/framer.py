"""Framer: sends one answer frame per request, the engine's words or an error code (framing.py)."""

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import framing as F
from .crc import crc16_next


class Framer(wiring.Component):
    """On ``start`` (a committed request) it sends ``0x5A | 0 | n_out`` and then ``n_out`` words taken
    from the engine, waits until the engine has consumed the whole request (``drained``), and closes
    with the CRC. Closing only after the drain is what makes stop-and-wait lossless: when the host has the
    complete answer, the buffer is empty and has room for the next request.

    On ``error`` it sends ``0x5A | code | 0 | CRC`` (at once, or after the answer in progress).

    Members
    -------
    start : In(1)
    n_out : In(16)
    error : In(1)
    error_code : In(8)
    drained : In(1)                 -- the request buffer and the word packer are empty
    words : In(stream.Signature(32))  -- the engine's answers
    tx : Out(stream.Signature(8))   -- bytes to the UART
    """

    def __init__(self):
        super().__init__({"start": In(1), "n_out": In(16), "error": In(1), "error_code": In(8), "drained": In(1),
                          "words": In(stream.Signature(32)), "tx": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        tx = self.tx
        status = Signal(8)
        count = Signal(16)
        pending = Signal()
        pending_code = Signal(8)
        crc = Signal(16)
        idx = Signal(2)
        word = Signal(32)
        crc_out = Signal(16)
        sent = tx.valid & tx.ready

        with m.If(self.error):
            m.d.sync += [pending.eq(1), pending_code.eq(self.error_code)]
        with m.If(sent):
            m.d.sync += crc.eq(crc16_next(crc, tx.payload))

        header = Array([F.SYNC_ANSWER, status, count[0:8], count[8:16]])
        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += idx.eq(0)
                with m.If(self.start):
                    m.d.sync += [status.eq(F.OK), count.eq(self.n_out)]
                    m.next = "HEADER"
                with m.Elif(pending):
                    m.d.sync += [status.eq(pending_code), count.eq(0), pending.eq(self.error)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(header[idx])]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 0):
                        m.d.sync += crc.eq(F.CRC_INIT)      # the sync byte is not covered
                    with m.If(idx == 3):
                        m.next = "WAIT_WORD"
            with m.State("WAIT_WORD"):
                with m.If(count == 0):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.words.ready.eq(1)
                    with m.If(self.words.valid):
                        m.d.sync += [word.eq(self.words.payload), count.eq(count - 1), idx.eq(0)]
                        m.next = "WORD"
            with m.State("WORD"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(word.word_select(idx, 8))]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 3):
                        m.next = "WAIT_WORD"
            with m.State("DRAIN"):
                m.d.sync += [idx.eq(0), crc_out.eq(crc)]
                with m.If(self.drained | (status != F.OK)):
                    m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc_out.word_select(idx[0], 8))]
                with m.If(sent):
                    m.d.sync += idx.eq(1)
                    with m.If(idx[0]):
                        m.next = "IDLE"
        return m
