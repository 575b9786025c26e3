"""QuantStep: one quant op on chip: GAP, the ASQ adapter, the step divider, and the quantization pass."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .adapter import AdapterUnit
from .bram_outreg import RegisteredMemory
from .desc import QuantDesc
from .divider import StepDivider
from .gap_divider import GapDivider
from .quant_lanes import SCHEMES, QuantLanes, check_schemes

SUM_BITS = 56      # a channel's sum over up to 2^24 positions of 32-bit fine values


class QuantStep(wiring.Component):
    """Turns a fine tensor into the next layer's codes with no host (docs/arithmetic.md, "Activation
    quantization" and "The ASQ adapter in integers"):

    1. ``GAP`` (ASQ only): group by group, the words of a channel group are summed per lane, and
       ``g[c] = rdiv(sum, H*W)`` goes into a channel memory: a rounding shift (one cycle per lane) when
       ``H*W`` is a power of two, else lane by lane through :class:`GapDivider` (``desc.gap_div``:
       ``GapDivider.CYCLES + 1`` cycles per lane);
    2. ``ADAPT``: :class:`AdapterUnit` gives ``beta_fx`` (``2^16`` for LSQ), its first layer ``lanes``
       hidden outputs at a time;
    3. ``DIVIDE``: :class:`StepDivider` gives ``R = min(rdiv(K_s, beta), 2^31 - 1)``;
    4. ``PASS``: every fine word through :class:`QuantLanes` into a code word at the same offset.

    A shift quant op (``desc.shift_act``, issue 10) goes from ``start`` straight to ``PASS``: no GAP, no
    adapter, no divider (``beta = 1``); :class:`QuantLanes` takes ``T`` and ``n`` from the descriptor.
    ``schemes`` chooses what is built: ``("shift",)`` (a shift2 engine: :func:`schemes_for`) has no
    adapter, divider or multiplier at all; ``("linear",)`` no shift path.

    Members
    -------
    desc : In(QuantDesc); start : In(1); busy, done : Out(1)
    fine_addr : Out(16); fine_data : In(ArrayLayout(signed(32), lanes))
    code_addr : Out(16); code_data : Out(lanes * abits); code_en : Out(1)
    w_addr : Out(24); w_data : In(lanes * 16)    -- adapter weight words, ``lanes`` two's complement lanes
                                                 (:func:`~rootshift.hw.engine.adapter.adapter_weight_words`)
    b_addr : Out(16); b_data : In(signed(64))    -- adapter biases
    beta : Out(63); r : Out(31)   -- the sample's beta_fx and R, for the following layers and debug

    ``registered_reads``: ``fine_data`` (and the adapter's ``w_data``, ``b_data``, its GAP vector and hidden
    values: :class:`AdapterUnit`) come from :class:`~rootshift.hw.engine.bram_outreg.RegisteredMemory` s
    (the word two cycles after its address),
    and registered again next to the GAP's sums (one more cycle per channel group, ``OUTREG_STAGE``) and
    in :class:`QuantLanes` next to its DSPs (the pass's codes a cycle later, ``DSP_OPERAND_REG``;
    hw/engine/cycles.py).
    """

    def __init__(self, lanes, abits, max_channels, schemes=SCHEMES, registered_reads=False):
        for name, v in (("lanes", lanes), ("max_channels", max_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TypeError(f"{name} must be a positive integer, not {v!r}")
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        self.lanes, self.abits, self.max_channels = lanes, abits, max_channels
        self.registered_reads = registered_reads
        self.schemes = check_schemes(schemes)
        super().__init__({
            "desc": In(QuantDesc), "start": In(1), "busy": Out(1), "done": Out(1),
            "fine_addr": Out(16), "fine_data": In(data.ArrayLayout(signed(32), lanes)),
            "code_addr": Out(16), "code_data": Out(lanes * abits), "code_en": Out(1),
            "w_addr": Out(24), "w_data": In(lanes * 16), "b_addr": Out(16), "b_data": In(signed(64)),
            "beta": Out(63), "r": Out(31),
        })

    def elaborate(self, platform):
        m = Module()
        d, L = self.desc, self.lanes
        m.submodules.quant = q = QuantLanes(L, self.abits, self.schemes)
        m.d.comb += [q.r.eq(self.r), q.qmax.eq(d.qmax), q.shift.eq(d.shift_act), q.t.eq(d.t), q.n.eq(d.n)]
        ad = dv = gdv = g_wr = None
        if "linear" in self.schemes:
            m.submodules.adapter = ad = AdapterUnit(max(1, self.max_channels // 4), L,
                                                      registered_reads=self.registered_reads)
            m.submodules.divider = dv = StepDivider()
            m.submodules.gap_divider = gdv = GapDivider(SUM_BITS, 24, 32)     # 24: the descriptor's positions
            m.d.comb += gdv.n.eq(d.positions)
            if self.registered_reads:
                m.submodules.gmem = gmem = RegisteredMemory(32, max(2, self.max_channels))
                g_rd, g_wr = gmem.read_port(signed=True), gmem.write_port()
            else:
                m.submodules.gmem = gmem = Memory(shape=signed(32), depth=max(2, self.max_channels), init=[])
                g_rd, g_wr = gmem.read_port(), gmem.write_port()
            m.d.comb += [g_rd.addr.eq(ad.g_addr), ad.g_data.eq(g_rd.data),
                         self.w_addr.eq(d.aw_addr + ad.w_addr), ad.w_data.eq(self.w_data),
                         self.b_addr.eq(d.ab_addr + ad.b_addr), ad.b_data.eq(self.b_data),
                         ad.channels.eq(d.channels), ad.hidden.eq(d.hidden), ad.f1.eq(d.f1), ad.f2.eq(d.f2),
                         dv.k_step.eq(d.k_step), dv.beta.eq(self.beta)]
        for c in range(L):
            m.d.comb += q.x[c].eq(self.fine_data[c])
        self._sequence(m, ad, dv, gdv, q, g_wr)
        return m

    def _sequence(self, m, ad, dv, gdv, q, g_wr):
        d, L = self.desc, self.lanes
        pos = Signal(24)
        grp = Signal(16)
        lane = Signal(range(max(2, L)))
        idx = Signal(24)
        rd_addr = Signal(16)
        linear = "linear" in self.schemes
        sums = [Signal(signed(SUM_BITS), name=f"sum{c}") for c in range(L)] if linear else []
        # a fine word for the GAP is on the read port / in x_q
        acc_v = Signal()
        acc_q = Signal()
        x_q = [Signal(signed(32), name=f"gx{c}") for c in range(L)] if linear else []
        # with registered reads the word reaches the port a cycle later (acc_o), then x_q next to the sums
        acc_o = Signal(name="acc_o") if self.registered_reads else acc_v
        if self.registered_reads:
            m.d.sync += acc_o.eq(acc_v)
        m.d.sync += [acc_v.eq(0), acc_q.eq(acc_o)]
        m.d.sync += [x.eq(self.fine_data[c]) for c, x in enumerate(x_q)]
        m.d.comb += self.fine_addr.eq(rd_addr)
        with m.If(acc_q):
            for c, s in enumerate(sums):
                m.d.sync += s.eq(s + x_q[c])
        # the quantization pass: read (t), QuantLanes (t+1 .. t+LATENCY), write
        pass_v = Signal()
        m.d.sync += pass_v.eq(0)
        extra = 1 if self.registered_reads else 0      # the read word a cycle later
        if extra:
            pass_q = Signal()
            m.d.sync += pass_q.eq(pass_v)
            m.d.comb += q.i_valid.eq(pass_q)
        else:
            m.d.comb += q.i_valid.eq(pass_v)
        waddr = [Signal(16, name=f"code_addr_{i}") for i in range(QuantLanes.LATENCY + 1 + extra)]
        m.d.sync += waddr[0].eq(d.out_addr + idx)
        for a, b in zip(waddr, waddr[1:]):
            m.d.sync += b.eq(a)
        m.d.comb += [self.code_addr.eq(waddr[-1]), self.code_data.eq(q.codes), self.code_en.eq(q.o_valid)]
        # the sums start at the rounding half (rdiv by 2^gap_shift is then a floor shift); g is written from
        # registers, a cycle after its lane is selected
        half = Signal(SUM_BITS)
        m.d.sync += half.eq((1 << d.gap_shift) >> 1)
        g_en = Signal()
        g_addr = Signal(16)
        g_data = Signal(32)
        m.d.sync += g_en.eq(0)
        if linear:
            sel = sums[0]
            for c in range(1, L):
                sel = Mux(lane == c, sums[c], sel)
            m.d.comb += [g_wr.addr.eq(g_addr), g_wr.data.eq(g_data), g_wr.en.eq(g_en), gdv.sum.eq(sel)]

        def write_g(value):
            """g[grp*L + lane] = value (from registers), then the next lane, group, or the adapter."""
            ch = grp * L + lane
            m.d.sync += [g_addr.eq(ch), g_data.eq(value), g_en.eq(ch < d.channels)]
            m.d.sync += lane.eq(lane + 1)
            with m.If(lane == L - 1):
                m.d.sync += [lane.eq(0), pos.eq(0), grp.eq(grp + 1), rd_addr.eq(d.in_addr + grp + 1)]
                m.d.sync += [s.eq(half) for s in sums]
                with m.If(grp == d.groups - 1):
                    m.d.comb += ad.start.eq(1)
                    m.next = "ADAPT"
                with m.Else():
                    m.next = "GAP"
            with m.Else():
                m.next = "GAP_WRITE"

        tail = Signal(range(QuantLanes.LATENCY + 3 + extra))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pos.eq(0), grp.eq(0), lane.eq(0), idx.eq(0), rd_addr.eq(d.in_addr), tail.eq(0)]
                    m.d.sync += [s.eq((1 << d.gap_shift) >> 1) for s in sums]     # `half` is a cycle late
                    if linear:
                        with m.If(d.shift_act):
                            m.d.sync += self.beta.eq(1 << C.FINE_FRAC)
                            m.next = "PASS"
                        with m.Elif(d.asq):
                            m.next = "GAP"
                        with m.Else():
                            m.d.sync += self.beta.eq(1 << C.FINE_FRAC)
                            m.next = "DIVIDE"
                    else:   # shift activations only: no step, no adapter (a linear descriptor is refused by the compiler)
                        m.d.sync += self.beta.eq(1 << C.FINE_FRAC)
                        m.next = "PASS"
            if linear:
                with m.State("GAP"):
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += [acc_v.eq(1), pos.eq(pos + 1), rd_addr.eq(rd_addr + d.groups)]
                    with m.If(pos == d.positions - 1):
                        m.next = "GAP_WRITE"
                with m.State("GAP_WRITE"):
                    # two cycles after the last read its word is summed; then lanes cycles write g[grp*L + lane]
                    # (gap_div: the lane's sum goes to the GapDivider, and g is written when it is done)
                    m.d.comb += self.busy.eq(1)
                    with m.If(~acc_v & ~acc_o & ~acc_q):
                        with m.If(d.gap_div):
                            m.d.comb += gdv.start.eq(1)
                            m.next = "GAP_DIVIDING"
                        with m.Else():
                            write_g((sel >> d.gap_shift)[:32])
                with m.State("GAP_DIVIDING"):
                    m.d.comb += self.busy.eq(1)
                    with m.If(gdv.done):
                        write_g(gdv.q)
                with m.State("ADAPT"):
                    m.d.comb += self.busy.eq(1)
                    with m.If(ad.done):
                        m.d.sync += self.beta.eq(ad.beta)
                        m.next = "DIVIDE"
                with m.State("DIVIDE"):
                    m.d.comb += [self.busy.eq(1), dv.start.eq(1)]
                    m.next = "DIVIDING"
                with m.State("DIVIDING"):
                    m.d.comb += self.busy.eq(1)
                    with m.If(dv.done):
                        m.d.sync += [self.r.eq(dv.r), rd_addr.eq(d.in_addr), idx.eq(0)]
                        m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [pass_v.eq(1), rd_addr.eq(rd_addr + 1), idx.eq(idx + 1)]
                with m.If(idx == d.words - 1):
                    m.next = "FLUSH"
            with m.State("FLUSH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += tail.eq(tail + 1)
                with m.If(tail == QuantLanes.LATENCY + 1 + extra):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"


def schemes_for(params):
    """The quantizers an engine for ``params`` (ArrayParams) needs: shift activations on a shift2 array
    (its layers read only shift codes and the bit-plane pixels), linear (LSQ/ASQ) codes on every other."""
    return ("shift",) if params.pe == "shift2" else ("linear",)
