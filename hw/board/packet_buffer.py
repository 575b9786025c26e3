"""PacketBuffer: a byte FIFO whose writes become readable only when the frame is committed."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


class PacketBuffer(wiring.Component):
    """A request's payload is written here as it arrives and only ``commit`` (its CRC matched) lets the
    engine read it; ``rollback`` (bad CRC, short frame) forgets it. So the engine never sees a byte of a
    corrupted request. One block RAM of ``depth`` bytes.

    Members
    -------
    w_data : In(8)
    w_en : In(1)
    commit : In(1)                  -- make every written byte readable
    rollback : In(1)                -- drop every byte written since the last commit
    flush : In(1)                   -- drop everything (a reset frame)
    r : Out(stream.Signature(8))    -- committed bytes, in order
    empty : Out(1)                  -- nothing committed is left (including the byte on ``r``)
    """

    def __init__(self, depth):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"packet buffer depth must be a power of two >= 2, not {depth!r}")
        self.depth = depth
        super().__init__({"w_data": In(8), "w_en": In(1), "commit": In(1), "rollback": In(1), "flush": In(1),
                          "r": Out(stream.Signature(8)), "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8, depth=self.depth, init=[])
        wp_, rp_ = mem.write_port(), mem.read_port(transparent_for=())
        # one bit more than the address, so a buffer holding exactly ``depth`` bytes is not empty
        bits = (self.depth - 1).bit_length() + 1
        wp = Signal(bits)
        cp = Signal(bits)
        rp = Signal(bits)
        m.d.comb += [wp_.addr.eq(wp[:-1]), wp_.data.eq(self.w_data), wp_.en.eq(self.w_en)]
        with m.If(self.rollback):
            m.d.sync += wp.eq(cp)
        with m.Elif(self.w_en):
            m.d.sync += wp.eq(wp + 1)
        with m.If(self.commit):
            m.d.sync += cp.eq(wp)

        load = (rp != cp) & (~self.r.valid | self.r.ready)
        m.d.comb += [rp_.addr.eq(rp[:-1]), rp_.en.eq(load), self.r.payload.eq(rp_.data)]
        with m.If(load):
            m.d.sync += [rp.eq(rp + 1), self.r.valid.eq(1)]
        with m.Elif(self.r.ready):
            m.d.sync += self.r.valid.eq(0)
        with m.If(self.flush):
            m.d.sync += [rp.eq(wp), cp.eq(wp), self.r.valid.eq(0)]
        m.d.comb += self.empty.eq((rp == cp) & ~self.r.valid)
        return m
