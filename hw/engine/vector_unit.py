"""VectorUnit: the element-wise steps on fine words: the residual ``add_relu`` and the global average pool."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .desc import VecDesc
from .gap_divider import GapDivider
from .params import check_lanes

SUM_BITS = 56


class VectorUnit(wiring.Component):
    """``add_relu``: ``clamp(a + b, 0, 2^31 - 1)`` lane by lane, one word per cycle (two read ports).
    ``avgpool`` (global): per channel group, the sum over ``H*W`` positions per lane, then
    ``rdiv(sum, H*W)``, one output word per group (docs/arithmetic.md, "Other ops"): a rounding shift
    when ``H*W`` is a power of two, else lane by lane through :class:`GapDivider` (``desc.div``:
    ``lanes * (GapDivider.CYCLES + 1)`` more cycles per group).

    Members
    -------
    desc : In(VecDesc); start : In(1); busy, done : Out(1)
    a_addr, b_addr : Out(16); a_data, b_data : In(ArrayLayout(signed(32), lanes))
    out_addr : Out(16); out_data : Out(lanes * 32); out_en : Out(1)

    ``registered_reads``: ``a_data``/``b_data`` come from
    :class:`~rootshift.hw.engine.bram_outreg.RegisteredMemory` s (the word two cycles after its address,
    the block RAM's output register on ECP5) and are registered again here, next to the adders: one
    more cycle per ``add_relu`` and per average-pool channel group (``OUTREG_STAGE``, hw/engine/cycles.py).
    """

    def __init__(self, lanes, registered_reads=False):
        check_lanes(lanes)
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        self.lanes, self.registered_reads = lanes, registered_reads
        lay = data.ArrayLayout(signed(32), lanes)
        super().__init__({
            "desc": In(VecDesc), "start": In(1), "busy": Out(1), "done": Out(1),
            "a_addr": Out(16), "b_addr": Out(16), "a_data": In(lay), "b_data": In(lay),
            "out_addr": Out(16), "out_data": Out(lanes * 32), "out_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d, L = self.desc, self.lanes
        idx = Signal(24)
        pos = Signal(24)
        grp = Signal(16)
        ra = Signal(16)
        rb = Signal(16)
        m.d.comb += [self.a_addr.eq(ra), self.b_addr.eq(rb)]
        # the read words are registered before any arithmetic (block RAM outputs), and the written word
        # leaves from registers: read (t) -> data (t+1) -> a_q, b_q (t+2) -> out (t+3)
        a_q = [Signal(signed(32), name=f"a_q{c}") for c in range(L)]
        b_q = [Signal(signed(32), name=f"b_q{c}") for c in range(L)]
        m.d.sync += [x.eq(self.a_data[c]) for c, x in enumerate(a_q)] + [x.eq(self.b_data[c]) for c, x in enumerate(b_q)]
        # data on the read ports (read at t: t+1)
        add_v = Signal()
        sum_v = Signal()
        # in a_q / b_q
        add_q = Signal()
        sum_q = Signal()
        addr_v = Signal(16)
        addr_q = Signal(16)
        m.d.sync += [add_v.eq(0), sum_v.eq(0), addr_v.eq(d.out_addr + idx)]
        # with registered reads the words reach the ports a cycle later: add_o, sum_o, addr_o wait for them
        add_o, sum_o, addr_o = add_v, sum_v, addr_v
        if self.registered_reads:
            add_o = Signal()
            sum_o = Signal()
            addr_o = Signal(16)
            m.d.sync += [add_o.eq(add_v), sum_o.eq(sum_v), addr_o.eq(addr_v)]
        m.d.sync += [add_q.eq(add_o), sum_q.eq(sum_o), addr_q.eq(addr_o)]
        out_en = Signal()
        out_addr = Signal(16)
        out_data = Signal(L * 32)
        m.d.comb += [self.out_en.eq(out_en), self.out_addr.eq(out_addr), self.out_data.eq(out_data)]
        m.d.sync += out_en.eq(0)
        with m.If(add_q):                                 # add_relu: clamp(a + b, 0, 2^31 - 1)
            added = []
            for c in range(L):
                s = Signal(signed(33), name=f"add{c}")
                m.d.comb += s.eq(a_q[c] + b_q[c])
                added.append(Mux(s[-1], 0, Mux(s[31], C.FINE_MAX, s[:32])))
            m.d.sync += [out_en.eq(1), out_addr.eq(addr_q), out_data.eq(Cat(*added))]
        # avgpool: the sums start at the rounding half, so rdiv(sum, 2^shift) is a floor shift
        half = Signal(SUM_BITS)
        sums = [Signal(signed(SUM_BITS), name=f"sum{c}") for c in range(L)]
        with m.If(sum_q):
            m.d.sync += [sums[c].eq(sums[c] + a_q[c]) for c in range(L)]
        write_avg = Signal()
        with m.If(write_avg):
            m.d.sync += [out_en.eq(1), out_addr.eq(d.out_addr + grp),
                         out_data.eq(Cat(*[(sums[c] >> d.shift)[:32] for c in range(L)]))]
        # desc.div: lane 0's sum to the divider, then the sums rotate down with the quotient entering at the
        # top; after ``lanes`` divisions each lane holds its mean, written as a shift by 0 (no lane mux, no
        # second source for out_data)
        m.submodules.divider = dv = GapDivider(SUM_BITS, 24, 32)     # 24: the descriptor's positions
        lane = Signal(range(L + 1))
        m.d.comb += [dv.sum.eq(sums[0]), dv.n.eq(d.positions)]
        with m.If(dv.done):
            m.d.sync += [sums[c].eq(sums[c + 1]) for c in range(L - 1)] + [sums[L - 1].eq(dv.q), lane.eq(lane + 1)]

        def next_group():
            m.d.sync += [grp.eq(grp + 1), pos.eq(0), ra.eq(d.a_addr + grp + 1)]
            m.d.sync += [s.eq(half) for s in sums]
            with m.If(grp == d.groups - 1):
                m.next = "FLUSH"
            with m.Else():
                m.next = "SUM"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [idx.eq(0), pos.eq(0), grp.eq(0), ra.eq(d.a_addr), rb.eq(d.b_addr), lane.eq(0),
                                 half.eq((1 << d.shift) >> 1)]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [s.eq(half) for s in sums]
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
                with m.If(~sum_v & ~sum_o & ~sum_q):
                    with m.If(d.div & (lane != L)):
                        m.d.comb += dv.start.eq(1)
                        m.next = "AVG_DIVIDING"
                    with m.Else():
                        m.d.comb += write_avg.eq(1)
                        m.d.sync += lane.eq(0)
                        next_group()
            with m.State("AVG_DIVIDING"):
                m.d.comb += self.busy.eq(1)
                with m.If(dv.done):
                    m.next = "AVG_WRITE"
            with m.State("FLUSH"):                        # until the last word is written
                m.d.comb += self.busy.eq(1)
                with m.If(~add_v & ~add_o & ~add_q):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
