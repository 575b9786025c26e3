"""VectorUnit: the element-wise steps on fine words: the residual ``add_relu`` and the global average pool."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .desc import VecDesc

SUM_BITS = 56


class VectorUnit(wiring.Component):
    """``add_relu``: ``clamp(a + b, 0, 2^31 - 1)`` lane by lane, one word per cycle (two read ports).
    ``avgpool`` (global): per channel group, the sum over ``H*W`` positions per lane, then
    ``rdiv(sum, H*W)`` as a rounding shift (``H*W`` a power of two), one output word per group
    (docs/arithmetic.md, "Other ops").

    Members
    -------
    desc : In(VecDesc); start : In(1); busy, done : Out(1)
    a_addr, b_addr : Out(16); a_data, b_data : In(ArrayLayout(signed(32), lanes))
    out_addr : Out(16); out_data : Out(lanes * 32); out_en : Out(1)
    """

    def __init__(self, lanes):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        lay = data.ArrayLayout(signed(32), lanes)
        super().__init__({
            "desc": In(VecDesc), "start": In(1), "busy": Out(1), "done": Out(1),
            "a_addr": Out(16), "b_addr": Out(16), "a_data": In(lay), "b_data": In(lay),
            "out_addr": Out(16), "out_data": Out(lanes * 32), "out_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d, L = self.desc, self.lanes
        idx, pos, grp = Signal(24), Signal(24), Signal(16)
        ra, rb = Signal(16), Signal(16)
        m.d.comb += [self.a_addr.eq(ra), self.b_addr.eq(rb)]
        add_v, sum_v, add_addr = Signal(), Signal(), Signal(16)
        m.d.sync += [add_v.eq(0), sum_v.eq(0)]
        # add_relu: one cycle after the reads, write the clamped sums
        added = []
        for c in range(L):
            s = Signal(signed(33), name=f"add{c}")
            m.d.comb += s.eq(self.a_data[c] + self.b_data[c])
            added.append(Mux(s < 0, 0, Mux(s > C.FINE_MAX, C.FINE_MAX, s))[:32])
        sums = [Signal(signed(SUM_BITS), name=f"sum{c}") for c in range(L)]
        with m.If(sum_v):
            for c in range(L):
                m.d.sync += sums[c].eq(sums[c] + self.a_data[c])
        avg = [((sums[c] + ((1 << d.shift) >> 1)) >> d.shift)[:32] for c in range(L)]
        write_avg = Signal()
        m.d.comb += [self.out_en.eq(add_v | write_avg),
                     self.out_data.eq(Mux(add_v, Cat(*added), Cat(*avg))),
                     self.out_addr.eq(Mux(add_v, add_addr, d.out_addr + grp))]
        m.d.sync += add_addr.eq(d.out_addr + idx)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [idx.eq(0), pos.eq(0), grp.eq(0), ra.eq(d.a_addr), rb.eq(d.b_addr)]
                    m.d.sync += [s.eq(0) for s in sums]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                with m.If(d.avg):
                    m.next = "SUM"
                with m.Else():
                    m.next = "ADD"
            with m.State("ADD"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [add_v.eq(1), idx.eq(idx + 1), ra.eq(ra + 1), rb.eq(rb + 1)]
                with m.If(idx == d.words - 1):
                    m.next = "FLUSH"
            with m.State("SUM"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [sum_v.eq(1), pos.eq(pos + 1), ra.eq(ra + d.groups)]
                with m.If(pos == d.positions - 1):
                    m.next = "AVG_WRITE"
            with m.State("AVG_WRITE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~sum_v):
                    m.d.comb += write_avg.eq(1)
                    m.d.sync += [grp.eq(grp + 1), pos.eq(0), ra.eq(d.a_addr + grp + 1)]
                    m.d.sync += [s.eq(0) for s in sums]
                    with m.If(grp == d.groups - 1):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "SUM"
            with m.State("FLUSH"):
                m.d.comb += self.busy.eq(1)
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
