"""AdapterUnit: the ASQ adapter per sample, in integers: two linear layers, ReLU and the beta floor."""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bram_outreg import RegisteredMemory
from .pipe_mult import PipelinedMultiplier, delayed, mult_latency
from .params import check_lanes

ACC_BITS = 64          # contract: every adapter sum |W g + B| <= 2^62 - 1 (rsq refuses others)
H_BITS = 63            # hidden values: relu(rshift_round(sum, f1)) < 2^62
G_BITS = 32            # the GAP vector g (fine units)
W_BITS = 16            # one adapter weight, |Wq| < 2^15


def _blocks(n, lanes):
    return -(-n // lanes)


def adapter_weight_words(w1, w2, lanes):
    """The adapter weight memory's words (``lanes * 16`` bits, lane ``l`` in bits ``16 l ..``, two's
    complement), the one layout of the compiler's image and the tests' memories: ``W1`` in blocks of
    ``lanes`` hidden outputs, a word per block and channel with ``W1[b*lanes + l, c]`` in lane ``l`` (zero
    past ``hidden``): the words layer 1 multiplies in parallel; then ``W2`` (the single-layer adapter's
    weights when ``w1`` is None), ``lanes`` terms per word: term ``j`` in word ``j // lanes``, lane
    ``j % lanes``."""
    def pack(vals):
        return sum((int(v) & 0xFFFF) << (W_BITS * i) for i, v in enumerate(vals))

    words = []
    if w1 is not None:
        w1 = np.asarray(w1)
        for b in range(0, w1.shape[0], lanes):
            words += [pack(w1[b:b + lanes, c]) for c in range(w1.shape[1])]
    w2 = np.asarray(w2).reshape(-1)
    words += [pack(w2[j:j + lanes]) for j in range(0, len(w2), lanes)]
    return words


def adapter_weight_count(channels, hidden, lanes):
    """Words of :func:`adapter_weight_words` for an adapter on ``channels`` inputs (``hidden = 0``: the
    single-layer adapter): what the compiler advances ``aw_addr`` by."""
    if hidden:
        return _blocks(hidden, lanes) * channels + _blocks(hidden, lanes)
    return _blocks(channels, lanes)


class AdapterUnit(wiring.Component):
    """``h[j] = max(0, rshift_round(sum_c W1[j,c] g[c] + B1[j], f1))`` and
    ``beta = max(1, rshift_round(sum_j W2[j] h[j] + B2, f2))`` (docs/arithmetic.md, "The ASQ adapter in
    integers"; ``sw.contract.adapter_beta_int``); ``hidden = 0`` is the single-layer adapter (``C < 8``),
    whose second layer reads ``g`` directly.

    Layer 1, ``lanes`` hidden outputs at a time (it was ``hidden * C`` of the ``hidden * C + hidden``
    terms): a block of ``lanes`` outputs reads one weight word per channel (:func:`adapter_weight_words`)
    and ``g[c]``, broadcast to a 16 x 32 multiplier and a 64-bit accumulator per lane, ``max(C, lanes)``
    cycles per block. The block's sums are captured at its last term and drained one per cycle, while the
    next block multiplies: ``+ B1[j]`` (the bias memory, one read per cycle), then the tail below.
    A 64-bit sum that wraps on the way is still exact if the final one fits (the contract's bound).

    Layer 2 (and the single-layer adapter): one multiply-accumulate per cycle, pipelined: issue
    (addresses) -> operands (block RAM outputs; the weight is lane ``j % lanes`` of word ``j // lanes``)
    -> their register -> product (18x18 partial products) -> sum -> rounding half -> shift by ``f & 0x38``
    -> by ``f & 7`` -> ReLU or the beta floor, so ``n`` terms take ``n`` cycles plus ``LAYER_TAIL``.
    Biases are ``B1[0..hidden-1]`` then ``B2``. The cycle counts: ``cycles.adapter_cycles``.

    Members
    -------
    channels : In(16); hidden : In(16); f1, f2 : In(6); start : In(1)
    g_addr : Out(16); g_data : In(signed(32))    -- the GAP vector (fine units)
    w_addr : Out(24); w_data : In(lanes * 16)    -- adapter weight words, ``lanes`` two's complement lanes
    b_addr : Out(16); b_data : In(signed(64))    -- adapter biases
    beta : Out(63)                               -- valid while ``done`` and after, until the next start
    done : Out(1); busy : Out(1)

    ``registered_reads``: ``g_data``, ``w_data`` and ``b_data`` come from
    :class:`~rootshift.hw.engine.bram_outreg.RegisteredMemory` s (the word two cycles after its address),
    the hidden values too, and the operands are registered again next to the multipliers' DSPs: one more
    cycle for layer 2, two for layer 1 (its operands, and the drain's bias read; ``DSP_OPERAND_REG`` in
    hw/engine/cycles.py).
    """

    # operands, their register, the product (PipelinedMultiplier), the sum, the rounding add, the two shift
    # stages, the clamp; plus one DONE cycle per run
    LAYER_TAIL = 7 + mult_latency(W_BITS, H_BITS)
    # layer 1 after the last block's issue and its drain of one cycle per output: the operands, their
    # register, the lane product (16 x 32), the lane sums' capture, the drain's select and bias read,
    # the bias register, the sum with the bias, the rounding add, the two shift stages, the ReLU (the
    # last hidden value written as layer 2 starts); registered_reads: two more (operands, bias)
    LANE_TAIL = 9 + mult_latency(W_BITS, G_BITS)

    def __init__(self, max_hidden, lanes=1, registered_reads=False):
        if isinstance(max_hidden, bool) or not isinstance(max_hidden, int) or max_hidden < 1:
            raise TypeError(f"max_hidden must be a positive integer, not {max_hidden!r}")
        check_lanes(lanes)
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        self.max_hidden, self.lanes, self.registered_reads = max_hidden, lanes, registered_reads
        self.layer_tail = self.LAYER_TAIL + (1 if registered_reads else 0)
        super().__init__({
            "channels": In(16), "hidden": In(16), "f1": In(6), "f2": In(6), "start": In(1),
            "g_addr": Out(16), "g_data": In(signed(G_BITS)), "w_addr": Out(24), "w_data": In(lanes * W_BITS),
            "b_addr": Out(16), "b_data": In(signed(64)), "beta": Out(H_BITS), "done": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        read = 2 if self.registered_reads else 1       # address -> word on the port
        if self.registered_reads:
            m.submodules.hmem = hmem = RegisteredMemory(H_BITS, max(2, self.max_hidden))
            h_rd, h_wr = hmem.read_port(signed=True), hmem.write_port()
        else:
            m.submodules.hmem = hmem = Memory(shape=signed(H_BITS), depth=max(2, self.max_hidden), init=[])
            h_rd, h_wr = hmem.read_port(), hmem.write_port()
        # the descriptor's fields, registered at start: its union shares bits with the ConvUnit's fields, and
        # a `channels - 1` read straight from it was merged with the address generator's `kw - 1` into
        # the 85F build's critical path (desc -> carry chain -> 2.5 ns of routing -> an adapter enable)
        ch = Signal(16)
        ch_last = Signal(16)
        hid = Signal(16)
        hid_last = Signal(16)
        f1 = Signal(6)
        f2 = Signal(6)
        with m.If(self.start):
            m.d.sync += [ch.eq(self.channels), ch_last.eq(self.channels - 1), hid.eq(self.hidden),
                         hid_last.eq(self.hidden - 1), f1.eq(self.f1), f2.eq(self.f2)]
        cfg = ch, hid, hid_last
        layer2 = Signal()               # which path is issuing: the lanes (layer 1) or the single MAC
        j = Signal(16)
        c = Signal(16)
        w_cnt = Signal(24)
        wl = Signal(range(max(2, P)))   # the single MAC's weight lane in word w_cnt
        j0 = Signal(16)                 # layer 1: the block's first hidden output
        # outputs and terms (layer 1: cycles) per output
        n_out = Signal(16)
        n_in = Signal(16)
        issuing = Signal()
        issuing1 = Signal()
        # the drain of layer 1's captured lane sums: hidden output dbase + dk, dn of them
        dact = Signal()
        dk = Signal(range(max(2, P)))
        dn = Signal(range(P + 1))
        dbase = Signal(16)
        # stage A: issue
        m.d.comb += [self.g_addr.eq(c), h_rd.addr.eq(c), self.w_addr.eq(w_cnt),
                     self.b_addr.eq(Mux(layer2, hid, dbase + dk))]
        first_a, last_a = c == 0, c == ch_last
        self._lanes(m, issuing1, first_a, last_a, j0, read, dact, dk, dn, dbase, hid)
        # stage B: operands arrive
        vb, fb, lb, l2b, jb, wlb = (delayed(m, s, read, n) for s, n in (
            (issuing, "vb"), (first_a, "fb"), (c == n_in - 1, "lb"), (layer2, "l2b"), (j, "jb"), (wl, "wlb")))
        use_h = l2b & (hid != 0)
        x_q = Signal(signed(H_BITS))
        w_q = Signal(signed(W_BITS))
        b_q = Signal(signed(64))
        ctl_q = Signal(19)
        w_lane = self.w_data.word_select(wlb, W_BITS) if P > 1 else self.w_data
        m.d.sync += [x_q.eq(Mux(use_h, h_rd.data, self.g_data)), w_q.eq(w_lane.as_signed()),
                     b_q.eq(self.b_data), ctl_q.eq(Cat(vb, fb, lb, l2b, jb))]
        m.submodules.mul = mul = PipelinedMultiplier(signed(W_BITS), signed(H_BITS))
        m.d.comb += [mul.a.eq(w_q), mul.b.eq(x_q), mul.i_valid.eq(ctl_q[0])]
        ctl, bias_c = ctl_q, b_q
        for i in range(mul.latency):          # the controls and the bias travel beside the product
            c2, b2 = Signal(19, name=f"ctl_{i}"), Signal(signed(64), name=f"bias_{i}")
            m.d.sync += [c2.eq(ctl), b2.eq(bias_c)]
            ctl, bias_c = c2, b2
        prod = mul.p
        vc, fc, lc, l2c, jc = ctl[0], ctl[1], ctl[2], ctl[3], ctl[4:]
        # stage C: accumulate (the bias starts each sum); or, in its own adder beside the accumulator's loop, a
        # drained layer-1 lane sum plus its bias (the single MAC is idle then)
        dv, dsum, dbias, dj = self._drained
        acc = Signal(signed(ACC_BITS))
        total = Mux(fc, bias_c, acc) + prod
        done_sum = Signal()
        l2d = Signal()
        jd = Signal(16)
        sum_d = Signal(signed(ACC_BITS))
        with m.If(vc):
            m.d.sync += acc.eq(total)
        m.d.sync += [done_sum.eq((vc & lc) | dv), sum_d.eq(Mux(dv, dsum + dbias, total)), l2d.eq(l2c & ~dv),
                     jd.eq(Mux(dv, dj, jc))]
        # stage D1: + the rounding half of the layer's shift; D2: the shift, ReLU (hidden) or the floor of
        # one LSB (beta); the hidden value is written, beta set, in the cycle after
        f = Mux(l2d, f2, f1)
        s1 = Signal(signed(ACC_BITS + 1))
        f_1 = Signal(6)
        done1 = Signal()
        l21 = Signal()
        j1 = Signal(16)
        m.d.sync += [s1.eq(sum_d + ((1 << f) >> 1)), f_1.eq(f), done1.eq(done_sum), l21.eq(l2d), j1.eq(jd)]
        # the shift by f & 0x38, then by f & 7, each in its own stage; then ReLU / the floor of one LSB
        coarse = Signal(signed(ACC_BITS + 1))
        f_2 = Signal(3)
        done_c = Signal()
        l2_c = Signal()
        j_c = Signal(16)
        m.d.sync += [coarse.eq(s1 >> Cat(Const(0, 3), f_1[3:])), f_2.eq(f_1[:3]), done_c.eq(done1), l2_c.eq(l21),
                     j_c.eq(j1)]
        rounded = Signal(signed(ACC_BITS + 1))
        done_r = Signal()
        l2_r = Signal()
        j_r = Signal(16)
        m.d.sync += [rounded.eq(coarse >> f_2), done_r.eq(done_c), l2_r.eq(l2_c), j_r.eq(j_c)]
        hval = Signal(signed(H_BITS))
        bval = Signal(H_BITS)
        done2 = Signal()
        l22 = Signal()
        j2 = Signal(16)
        neg, zero = rounded[-1], ~rounded.any()
        m.d.sync += [hval.eq(Mux(neg, 0, rounded)), bval.eq(Mux(neg | zero, 1, rounded)),
                     done2.eq(done_r), l22.eq(l2_r), j2.eq(j_r)]
        m.d.comb += [h_wr.addr.eq(j2), h_wr.data.eq(hval), h_wr.en.eq(done2 & ~l22)]
        with m.If(done2 & l22):
            m.d.sync += self.beta.eq(bval)
        self._control(m, layer2, j, c, w_cnt, wl, j0, n_out, n_in, issuing, issuing1, done2, l22, j2, cfg)
        return m

    def _lanes(self, m, issuing1, first_a, last_a, j0, read, dact, dk, dn, dbase, hid):
        """Layer 1's lanes: ``g[c]`` times lane ``l`` of the weight word into accumulator ``l``; at a block's
        last term the sums are captured and drained (sets ``self._drained``: valid, sum, bias, output)."""
        P = self.lanes
        vb, fb, lb, jb = (delayed(m, s, read, n) for s, n in (
            (issuing1, "v1b"), (first_a, "f1b"), (last_a, "l1b"), (j0, "j1b")))
        g_q = Signal(signed(G_BITS))
        w_q = [Signal(signed(W_BITS), name=f"w1q_{i}") for i in range(P)]
        ctl_q = Signal(19)
        m.d.sync += [g_q.eq(self.g_data), ctl_q.eq(Cat(vb, fb, lb, jb))]
        m.d.sync += [w.eq(self.w_data[W_BITS * i:W_BITS * (i + 1)].as_signed()) for i, w in enumerate(w_q)]
        prods = []
        for i in range(P):
            m.submodules[f"lane_mul{i}"] = mul = PipelinedMultiplier(signed(W_BITS), signed(G_BITS))
            m.d.comb += [mul.a.eq(w_q[i]), mul.b.eq(g_q)]
            prods.append(mul.p)
        ctl = delayed(m, ctl_q, mult_latency(W_BITS, G_BITS), "ctl1")
        vc, fc, lc, jc = ctl[0], ctl[1], ctl[2], ctl[3:]
        caps = []
        for i, p in enumerate(prods):
            acc, cap = Signal(signed(ACC_BITS), name=f"lane_acc{i}"), Signal(signed(ACC_BITS), name=f"lane_sum{i}")
            total = Mux(fc, 0, acc) + p
            with m.If(vc):
                m.d.sync += acc.eq(total)
            with m.If(vc & lc):
                m.d.sync += cap.eq(total)
            caps.append(cap)
        # the drain: one captured sum per cycle, its bias read at the same time (b_addr = dbase + dk)
        with m.If(dact):
            m.d.sync += dk.eq(dk + 1)
            with m.If(dk == dn - 1):
                m.d.sync += [dact.eq(0), dk.eq(0)]
        rem = hid - jc
        with m.If(vc & lc):           # after the drain's updates: a block never captures before it is drained
            m.d.sync += [dact.eq(1), dk.eq(0), dbase.eq(jc), dn.eq(Mux(rem < P, rem, P))]
        sel = Signal(signed(ACC_BITS))
        m.d.sync += sel.eq(Cat(*caps).word_select(dk, ACC_BITS).as_signed() if P > 1 else caps[0])
        v0 = Signal()
        j_0 = Signal(16)
        m.d.sync += [v0.eq(dact), j_0.eq(dbase + dk)]
        # the bias is on the port `read` cycles after its address; both into registers beside the adder
        v1, s1, jj1 = (delayed(m, s, read - 1, n) for s, n in ((v0, "dv"), (sel, "dsel"), (j_0, "dj")))
        dv = Signal()
        dsum = Signal(signed(ACC_BITS))
        dbias = Signal(signed(64))
        dj = Signal(16)
        m.d.sync += [dv.eq(v1), dsum.eq(s1), dbias.eq(self.b_data), dj.eq(jj1)]
        self._drained = dv, dsum, dbias, dj

    def _control(self, m, layer2, j, c, w_cnt, wl, j0, n_out, n_in, issuing, issuing1, done_sum, l2d, j_done, cfg):
        """Counters: layer 1 by blocks of ``lanes`` outputs (``max(C, lanes)`` cycles each, a term per
        channel), then layer 2 a term per cycle (layer 2 waits for the last hidden value to be written).
        ``cfg``: ``channels``, ``hidden`` and ``hidden - 1`` as registered at ``start``."""
        P = self.lanes
        ch, hid, hid_last = cfg
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    single = self.hidden == 0
                    m.d.sync += [layer2.eq(single), j.eq(0), j0.eq(0), c.eq(0), w_cnt.eq(0), wl.eq(0),
                                 n_out.eq(1), n_in.eq(self.channels)]
                    with m.If(single):
                        m.next = "ISSUE"
                    with m.Else():
                        m.d.sync += n_in.eq(Mux(self.channels > P, self.channels, P))
                        m.next = "ISSUE1"
            with m.State("ISSUE1"):
                m.d.comb += [issuing1.eq(c < ch), self.busy.eq(1)]
                m.d.sync += c.eq(c + 1)
                with m.If(c < ch):
                    m.d.sync += w_cnt.eq(w_cnt + 1)
                with m.If(c == n_in - 1):
                    m.d.sync += [c.eq(0), j0.eq(j0 + P)]
                    with m.If(j0 + P >= hid):
                        m.next = "WAIT"
            with m.State("ISSUE"):
                m.d.comb += [issuing.eq(1), self.busy.eq(1)]
                m.d.sync += [c.eq(c + 1), wl.eq(wl + 1)]
                with m.If(wl == P - 1):
                    m.d.sync += [wl.eq(0), w_cnt.eq(w_cnt + 1)]
                with m.If(c == n_in - 1):
                    m.d.sync += [c.eq(0), j.eq(j + 1)]
                    with m.If(j == n_out - 1):
                        m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(done_sum & l2d):
                    m.next = "DONE"
                with m.Elif(done_sum & (j_done == hid_last)):   # the last hidden value is written
                    m.d.sync += [layer2.eq(1), j.eq(0), c.eq(0), wl.eq(0), n_out.eq(1), n_in.eq(hid)]
                    m.next = "ISSUE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
