"""ConvUnit: runs one conv/linear layer from on-chip memories: address generation, the PE array with
shadow accumulators, one requantizer per column, fine words written back. No host involvement."""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import BIAS_BITS, M_BITS, OUT_BITS, ArrayParams
from .. import requantizer as _rq
from ..requantizer import Requantizer
from .address_gen import AddressGenerator
from .desc import ConvDesc
from .pipe_mult import delayed
from .shadow_array import ShadowArray

ADDR_BITS = 16
OPERAND_REG = 1      # the code and weight words registered between the block RAMs and the array
OUTREG_STAGE = 1     # registered_reads: the block RAMs' output register before that one (hw/engine/cycles.py)
CAPTURE_STAGE = 1    # a tile's last slice at the array -> its capture: the PEs' stage 1 (the shadow registers
                     # take the adders' outputs at the stage-2 edge, ProcessingElement(capture_next=True))


def hw_bias(bias, shift):
    """The bias word the requantizer takes for the contract's ``B`` (already ``<< d``) and shift ``S``:
    ``B + 2^(S-1)`` where the requantizer folds the rounding half into the bias
    (``hw.requantizer.fold_rounding``), else ``B``. Raises ValueError if it leaves 64 bits."""
    fold = getattr(_rq, "fold_rounding", None)
    return fold(bias, shift) if fold else int(bias)


def const_word_bits(params: ArrayParams):
    """One requantization-constant word: per column ``M0 (32), [M1 (32)], B (64)``."""
    return params.cols * (params.n_acc * M_BITS + BIAS_BITS)


class ConvUnit(wiring.Component):
    """One layer, start to done. Pipeline (docs/engine.md, "Sequencer"): the address generator issues a
    k-slice per cycle; the code banks (one per array row) and the weight memory answer a cycle later; the
    lane is selected and the slice enters the :class:`ShadowArray`; at the edge that adds a tile's last
    slice (``CAPTURE_STAGE`` cycle after it reached the array) the shadow registers take the sums and the
    accumulators are cleared, so the next tile's slices follow with no bubble; the drain turns shadow row
    after shadow row into one fine word each (position ``p``, column tile ``tc`` -> word
    ``out_addr + p * tiles_c + tc``), while the next tile computes. ``drain`` (``EngineParams.drain``):

    * ``"parallel"``: ``cols`` :class:`~rootshift.hw.requantizer.Requantizer` s, a row per cycle
      (``rows`` drain cycles);
    * ``"serial"``: one requantizer, a column multiplexer over shadow row 0 and the constant word, one
      accumulator per cycle (``rows * cols`` drain cycles: ``cols`` times fewer multipliers, for the
      8 DSPs of an iCE40 UP5K); the lanes of a row collect in a shift register and the word is written
      with its last lane.

    Members
    -------
    desc : In(ConvDesc)              -- held while busy
    start : In(1); busy, done : Out(1)
    code_addr : Out(ArrayLayout(unsigned(16), rows)); code_data : In(ArrayLayout(unsigned(cols*abits), rows))
    wgt_addr : Out(24); wgt_data : In(cols * wbits)
    const_addr : Out(16); const_data : In(cols * (n_acc*32 + 64))  -- per column M0, [M1], B

    ``registered_reads``: the code, weight and constant words come from
    :class:`~rootshift.hw.engine.bram_outreg.RegisteredMemory` s (the word two cycles after its address,
    the block RAM's output register on ECP5), and are registered again in the fabric: the operand
    register (``OPERAND_REG``) after the output register (``OUTREG_STAGE``), because a weight word fans
    out to the whole array and a block RAM sits far from it; the constant word, which feeds the
    requantizers' DSPs, likewise (``Requantizer(consts_registered=True)``, ``DSP_OPERAND_REG``): two more
    cycles at a layer's end.
    Default: one-cycle reads (``lib.memory`` read ports), registered here.
    out_addr : Out(16); out_data : Out(cols * 32); out_en : Out(1)
    busy_cycles : Out(32)            -- cycles since start (the layer's cycle counter)
    """

    def __init__(self, params: ArrayParams, drain="parallel", registered_reads=False):
        from .params import DRAINS

        if not isinstance(params, ArrayParams):
            raise TypeError(f"params must be ArrayParams, not {params!r}")
        if drain not in DRAINS:
            raise TypeError(f"drain must be one of {', '.join(DRAINS)}, not {drain!r}")
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        if registered_reads and drain != "parallel":
            raise TypeError("registered_reads needs drain 'parallel' (the serial drain selects a column of the "
                            "constant word before its register)")
        self.p, self.drain, self.registered_reads = params, drain, registered_reads
        self.drain_cycles = params.rows * (params.cols if drain == "serial" else 1)
        # the requantizers' latency: one more stage behind registered constants (hw/engine/cycles.py, DSP_OPERAND_REG)
        self.rq_latency = Requantizer.DEEP_LATENCY + (1 if registered_reads else 0)
        # memory answer -> array: the operand register, after the block RAMs' output register if any
        self.operand_stages = OPERAND_REG + (OUTREG_STAGE if registered_reads else 0)
        super().__init__({
            "desc": In(ConvDesc), "start": In(1), "busy": Out(1), "done": Out(1),
            "code_addr": Out(data.ArrayLayout(unsigned(ADDR_BITS), params.rows)),
            "code_data": In(data.ArrayLayout(unsigned(params.cols * params.abits), params.rows)),
            "wgt_addr": Out(24), "wgt_data": In(params.cols * params.wbits),
            "const_addr": Out(ADDR_BITS), "const_data": In(const_word_bits(params)),
            "out_addr": Out(ADDR_BITS), "out_data": Out(params.cols * OUT_BITS), "out_en": Out(1),
            "busy_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        p, d = self.p, self.desc
        m.submodules.ag = ag = AddressGenerator(p.rows, p.cols)
        m.submodules.array = arr = ShadowArray(p)
        m.d.comb += [ag.desc.eq(d), ag.start.eq(self.start)]
        iss = self._issue(m, ag)
        self._fetch(m, iss, arr)
        self._drain(m, iss, arr)
        return m

    def _issue(self, m, ag):
        """One register stage after the address generator (``ISSUE_REG`` in hw/engine/cycles.py): the
        memories' addresses come from flip-flops, not through the generator's ``ab + off`` and the
        layer's base (two adders), and every other generator output is delayed with them, so the rest of
        the pipeline sees an address generator one cycle later."""
        p, d = self.p, self.desc
        for r in range(p.rows):
            m.d.sync += self.code_addr[r].eq(d.in_addr + ag.addr[r])
        m.d.sync += self.wgt_addr.eq(d.w_addr + ag.waddr)
        iss = {}
        for name in ("valid", "last", "ok", "live", "lane", "tile_c", "done"):
            src = getattr(ag, name)
            iss[name] = Signal.like(src, name=f"iss_{name}")
            m.d.sync += iss[name].eq(src)
        return SimpleNamespace(**iss)

    def _fetch(self, m, ag, arr):
        """Issue (cycle t) -> memory answer (t + 1) -> operand register (``OPERAND_REG``), lane select
        (t + 2) -> the array: the block RAMs' outputs feed flip-flops only."""
        p = self.p
        ok_d = Signal(p.rows)
        lane_d = Signal.like(ag.lane)
        valid_d = Signal()
        m.d.sync += [ok_d.eq(ag.ok), lane_d.eq(ag.lane), valid_d.eq(ag.valid)]
        if self.registered_reads:        # the words a cycle later (the output register): the controls wait
            ok_o = Signal.like(ok_d)
            lane_o = Signal.like(lane_d)
            valid_o = Signal()
            m.d.sync += [ok_o.eq(ok_d), lane_o.eq(lane_d), valid_o.eq(valid_d)]
            ok_d, lane_d, valid_d = ok_o, lane_o, valid_o
        ok_q = Signal.like(ok_d)
        lane_q = Signal.like(lane_d)
        valid_q = Signal()
        code_q = [Signal(len(self.code_data[r]), name=f"code_q{r}") for r in range(p.rows)]
        w_q = Signal.like(self.wgt_data, name="w_q")
        m.d.sync += [ok_q.eq(ok_d), lane_q.eq(lane_d), valid_q.eq(valid_d)]
        m.d.sync += [w_q.eq(self.wgt_data)] + [q.eq(self.code_data[r]) for r, q in enumerate(code_q)]
        a = []
        for r in range(p.rows):
            lanes = Array(code_q[r][c * p.abits:(c + 1) * p.abits] for c in range(p.cols))
            a.append(lanes[lane_q] & ok_q[r].replicate(p.abits))
        m.d.comb += [arr.a.eq(Cat(*a)), arr.w.eq(w_q), arr.valid.eq(valid_q)]

    def _drain(self, m, ag, arr):
        """Capture at the edge that adds a tile's last slice (``CAPTURE_STAGE`` after it reached the array,
        ``2 + operand_stages`` after its issue: ``OPERAND_REG``, and ``OUTREG_STAGE`` with registered reads),
        and ``clear`` the accumulators at that same edge (the sync reset wins over the add; the next tile's
        first slice is in stage 1 then, so it needs no bubble); then ``drain_cycles`` drain cycles (``rows``,
        or ``rows * cols`` with the serial drain). ``start`` clears too (a cycle later, long before the first
        slice), so a layer never depends on how the last one ended."""
        p, d = self.p, self.desc
        # the tile being computed: its output base, column tile and live rows, kept until its capture
        ob = Signal(ADDR_BITS)                     # out_addr + tile_p * rows * tiles_c
        pend_addr = Signal(ADDR_BITS)
        pend_tc = Signal(16)
        pend_live = Signal(p.rows)
        # issue -> data -> presented -> capture (the last slice's stage 2)
        last_pipe = [Signal(name=f"last_{i}") for i in range(1 + self.operand_stages + CAPTURE_STAGE)]
        m.d.sync += last_pipe[0].eq(ag.valid & ag.last)
        m.d.sync += [b.eq(a) for a, b in zip(last_pipe, last_pipe[1:])]
        capture = last_pipe[-1]
        # clear: the capture, or a cycle after start, from its own flip-flop (it fans out to every
        # accumulator bit's synchronous reset)
        clear = Signal()
        m.d.sync += clear.eq(last_pipe[-2] | self.start)
        m.d.comb += arr.clear.eq(clear)
        with m.If(self.start):
            m.d.sync += ob.eq(d.out_addr)
        # the tile's bookkeeping moves with its last slice through the operand register, so it is taken
        # two cycles before its capture, as without that register (a next tile may end that soon:
        # desc.MIN_TILE)
        last_at, tc_at, live_at = ag.valid & ag.last, ag.tile_c, ag.live
        for i in range(self.operand_stages):
            tc_d, live_d = Signal.like(ag.tile_c, name=f"tc_d{i}"), Signal.like(ag.live, name=f"live_d{i}")
            m.d.sync += [tc_d.eq(tc_at), live_d.eq(live_at)]
            last_at, tc_at, live_at = last_pipe[i], tc_d, live_d
        with m.If(last_at):
            m.d.sync += [pend_addr.eq(ob + tc_at), pend_tc.eq(tc_at), pend_live.eq(live_at)]
            with m.If(tc_at == d.tiles_c - 1):
                m.d.sync += ob.eq(ob + d.out_tile)
        if self.drain == "serial":
            self._drain_serial(m, arr, capture, pend_addr, pend_tc, pend_live)
        else:
            self._drain_parallel(m, arr, capture, pend_addr, pend_tc, pend_live)
        self._done(m, ag)

    def _requantizer(self, m, name, acc0, acc1, word, valid):
        """One requantizer fed with ``acc0``/``acc1`` and a column's constant word ``M0, [M1], B``."""
        p, d = self.p, self.desc
        m.submodules[name] = rq = Requantizer(p.acc_bits, p.n_acc, deep=True, consts_registered=self.registered_reads)
        m.d.comb += [rq.acc0.eq(acc0), rq.m0.eq(word[0:M_BITS].as_signed()),
                     rq.bias.eq(word[p.n_acc * M_BITS:].as_signed()), rq.shift.eq(d.shift), rq.relu.eq(d.relu),
                     rq.i_valid.eq(valid)]
        if p.n_acc == 2:
            m.d.comb += [rq.acc1.eq(acc1), rq.m1.eq(word[M_BITS:2 * M_BITS].as_signed())]
        return rq

    def _drain_parallel(self, m, arr, capture, pend_addr, pend_tc, pend_live):
        """``rows`` cycles after the capture, one shadow row per cycle into ``cols`` requantizers."""
        p, d = self.p, self.desc
        dr_addr = Signal(ADDR_BITS)
        dr_tc = Signal(16)
        dr_live = Signal(p.rows)
        dr_n = Signal(range(p.rows + 1))
        m.d.comb += [arr.capture.eq(capture), arr.shift.eq(dr_n != 0),
                     self.const_addr.eq(d.c_addr + Mux(capture, pend_tc, dr_tc))]
        with m.If(capture):
            m.d.sync += [dr_addr.eq(pend_addr), dr_tc.eq(pend_tc), dr_live.eq(pend_live), dr_n.eq(p.rows)]
        with m.Elif(dr_n != 0):
            m.d.sync += [dr_addr.eq(dr_addr + d.tiles_c), dr_live.eq(dr_live >> 1), dr_n.eq(dr_n - 1)]
        cw = p.n_acc * M_BITS + BIAS_BITS
        ys = []
        for c in range(p.cols):
            rq = self._requantizer(m, f"rq_{c}", arr.out0[c], arr.out1[c], self.const_data[c * cw:(c + 1) * cw],
                                   (dr_n != 0) & dr_live[0])
            ys.append(rq.y)
        m.d.comb += [self.out_addr.eq(delayed(m, dr_addr, self.rq_latency, "waddr")), self.out_data.eq(Cat(*ys)),
                     self.out_en.eq(m.submodules["rq_0"].o_valid)]

    def _drain_serial(self, m, arr, capture, pend_addr, pend_tc, pend_live):
        """``rows * cols`` cycles after the capture: column ``c`` of shadow row 0 per cycle into one
        requantizer; the chain shifts after a row's last column; a row's word is written with its last lane."""
        p, d = self.p, self.desc
        dr_addr = Signal(ADDR_BITS)
        dr_tc = Signal(16)
        dr_live = Signal(p.rows)
        dr_n = Signal(range(p.rows + 1))
        col = Signal(range(p.cols))
        last_col = col == p.cols - 1
        m.d.comb += [arr.capture.eq(capture), arr.shift.eq((dr_n != 0) & last_col),
                     self.const_addr.eq(d.c_addr + Mux(capture, pend_tc, dr_tc))]
        with m.If(capture):
            m.d.sync += [dr_addr.eq(pend_addr), dr_tc.eq(pend_tc), dr_live.eq(pend_live), dr_n.eq(p.rows), col.eq(0)]
        with m.Elif(dr_n != 0):
            m.d.sync += col.eq(Mux(last_col, 0, col + 1))
            with m.If(last_col):
                m.d.sync += [dr_addr.eq(dr_addr + d.tiles_c), dr_live.eq(dr_live >> 1), dr_n.eq(dr_n - 1)]
        cw = p.n_acc * M_BITS + BIAS_BITS
        acc0 = Array(arr.out0[c] for c in range(p.cols))[col]
        acc1 = Array(arr.out1[c] for c in range(p.cols))[col]
        word = Array(self.const_data[c * cw:(c + 1) * cw] for c in range(p.cols))[col]
        rq = self._requantizer(m, "rq", acc0, acc1, word, (dr_n != 0) & dr_live[0])
        # the word's address and "last lane" travel with the value through the requantizer
        w_addr = delayed(m, dr_addr, Requantizer.DEEP_LATENCY, "waddr")
        w_last = delayed(m, last_col, Requantizer.DEEP_LATENCY, "wlast")
        lanes = [Signal(OUT_BITS, name=f"lane_{c}") for c in range(p.cols - 1)]   # lanes 0 .. cols-2 of the row
        with m.If(rq.o_valid):
            m.d.sync += [a.eq(b) for a, b in zip(lanes, lanes[1:] + [rq.y])]
        m.d.comb += [self.out_addr.eq(w_addr), self.out_data.eq(Cat(*lanes, rq.y)),
                     self.out_en.eq(rq.o_valid & w_last)]

    def _done(self, m, ag):
        """done: the generator finished, and the last capture, drain and requantizer pipeline are through."""
        flush = 2 + self.operand_stages + CAPTURE_STAGE + self.drain_cycles + self.rq_latency   # from the (issue-registered) done
        count = Signal(range(flush + 1))
        running = Signal()
        cycles = Signal(32)
        m.d.comb += [self.busy.eq(running), self.busy_cycles.eq(cycles)]
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), cycles.eq(0), count.eq(0)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(ag.done | (count != 0)):
                m.d.sync += count.eq(count + 1)
                with m.If(count == flush):
                    m.d.sync += [running.eq(0), count.eq(0)]
                    m.d.comb += self.done.eq(1)
