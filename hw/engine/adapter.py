"""AdapterUnit: the ASQ adapter per sample, in integers: two linear layers, ReLU and the beta floor."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .bram_outreg import RegisteredMemory
from .pipe_mult import PipelinedMultiplier, mult_latency

ACC_BITS = 64          # contract: every adapter sum |W g + B| <= 2^62 - 1 (rsq refuses others)
H_BITS = 63            # hidden values: relu(rshift_round(sum, f1)) < 2^62


class AdapterUnit(wiring.Component):
    """``h[j] = max(0, rshift_round(sum_c W1[j,c] g[c] + B1[j], f1))`` and
    ``beta = max(1, rshift_round(sum_j W2[j] h[j] + B2, f2))`` (docs/arithmetic.md, "The ASQ adapter in
    integers"; ``sw.contract.adapter_beta_int``); ``hidden = 0`` is the single-layer adapter (``C < 8``),
    whose second layer reads ``g`` directly.

    One multiply-accumulate per cycle, pipelined: issue (addresses) -> operands (block RAM outputs) ->
    their register -> product (18x18 partial products) -> sum -> rounding half -> shift by ``f & 0x38``
    -> by ``f & 7`` -> ReLU or the beta floor, so a
    layer of ``n`` terms takes ``n`` cycles plus ``LAYER_TAIL``. Weights are read in the order the
    compiler writes them (``W1`` row-major, then ``W2``), biases ``B1[0..hidden-1]`` then ``B2``.

    Members
    -------
    channels : In(16); hidden : In(16); f1, f2 : In(6); start : In(1)
    g_addr : Out(16); g_data : In(signed(32))    -- the GAP vector (fine units)
    w_addr : Out(24); w_data : In(signed(16))    -- adapter weights
    b_addr : Out(16); b_data : In(signed(64))    -- adapter biases
    beta : Out(63)                               -- valid while ``done`` and after, until the next start
    done : Out(1); busy : Out(1)

    ``registered_reads``: ``g_data``, ``w_data`` and ``b_data`` come from
    :class:`~rootshift.hw.engine.bram_outreg.RegisteredMemory` s (the word two cycles after its address),
    the hidden values too, and the operands are registered again next to the multiplier's DSPs: one more
    cycle per layer (``DSP_OPERAND_REG`` in hw/engine/cycles.py).
    """

    # operands, their register, the product (PipelinedMultiplier), the sum, the rounding add, the two shift
    # stages, the clamp; plus one DONE cycle per run
    LAYER_TAIL = 7 + mult_latency(16, H_BITS)

    def __init__(self, max_hidden, registered_reads=False):
        if isinstance(max_hidden, bool) or not isinstance(max_hidden, int) or max_hidden < 1:
            raise TypeError(f"max_hidden must be a positive integer, not {max_hidden!r}")
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        self.max_hidden, self.registered_reads = max_hidden, registered_reads
        self.layer_tail = self.LAYER_TAIL + (1 if registered_reads else 0)
        super().__init__({
            "channels": In(16), "hidden": In(16), "f1": In(6), "f2": In(6), "start": In(1),
            "g_addr": Out(16), "g_data": In(signed(32)), "w_addr": Out(24), "w_data": In(signed(16)),
            "b_addr": Out(16), "b_data": In(signed(64)), "beta": Out(H_BITS), "done": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        if self.registered_reads:
            m.submodules.hmem = hmem = RegisteredMemory(H_BITS, max(2, self.max_hidden))
            h_rd, h_wr = hmem.read_port(signed=True), hmem.write_port()
        else:
            m.submodules.hmem = hmem = Memory(shape=signed(H_BITS), depth=max(2, self.max_hidden), init=[])
            h_rd, h_wr = hmem.read_port(), hmem.write_port()
        layer2 = Signal()               # which layer is issuing
        j, c, w_cnt = Signal(16), Signal(16), Signal(24)
        n_out, n_in = Signal(16), Signal(16)          # outputs and terms per output of this layer
        issuing = Signal()
        # stage A: issue
        m.d.comb += [self.g_addr.eq(c), h_rd.addr.eq(c), self.w_addr.eq(w_cnt), self.b_addr.eq(j + layer2 * self.hidden)]
        first_a, last_a = c == 0, c == n_in - 1
        # stage B: operands arrive
        vb, fb, lb, l2b, jb = Signal(), Signal(), Signal(), Signal(), Signal(16)
        m.d.sync += [vb.eq(issuing), fb.eq(first_a), lb.eq(last_a), l2b.eq(layer2), jb.eq(j)]
        if self.registered_reads:       # the operands a cycle later: the controls wait for them
            v2, f2, lst2, l22b, j2b = Signal(), Signal(), Signal(), Signal(), Signal(16)
            m.d.sync += [v2.eq(vb), f2.eq(fb), lst2.eq(lb), l22b.eq(l2b), j2b.eq(jb)]
            vb, fb, lb, l2b, jb = v2, f2, lst2, l22b, j2b
        use_h = l2b & (self.hidden != 0)
        x_q, w_q, b_q = Signal(signed(H_BITS)), Signal(signed(16)), Signal(signed(64))
        ctl_q = Signal(19)
        m.d.sync += [x_q.eq(Mux(use_h, h_rd.data, self.g_data)), w_q.eq(self.w_data), b_q.eq(self.b_data),
                     ctl_q.eq(Cat(vb, fb, lb, l2b, jb))]
        m.submodules.mul = mul = PipelinedMultiplier(signed(16), signed(H_BITS))
        m.d.comb += [mul.a.eq(w_q), mul.b.eq(x_q), mul.i_valid.eq(ctl_q[0])]
        ctl, bias_c = ctl_q, b_q
        for i in range(mul.latency):          # the controls and the bias travel beside the product
            c2, b2 = Signal(19, name=f"ctl_{i}"), Signal(signed(64), name=f"bias_{i}")
            m.d.sync += [c2.eq(ctl), b2.eq(bias_c)]
            ctl, bias_c = c2, b2
        prod = mul.p
        vc, fc, lc, l2c, jc = ctl[0], ctl[1], ctl[2], ctl[3], ctl[4:]
        # stage C: accumulate (the bias starts each sum)
        acc = Signal(signed(ACC_BITS))
        total = Mux(fc, bias_c, acc) + prod
        done_sum, l2d, jd = Signal(), Signal(), Signal(16)
        sum_d = Signal(signed(ACC_BITS))
        with m.If(vc):
            m.d.sync += acc.eq(total)
        m.d.sync += [done_sum.eq(vc & lc), sum_d.eq(total), l2d.eq(l2c), jd.eq(jc)]
        # stage D1: + the rounding half of the layer's shift; D2: the shift, ReLU (hidden) or the floor of
        # one LSB (beta); the hidden value is written, beta set, in the cycle after
        f = Mux(l2d, self.f2, self.f1)
        s1, f_1, done1, l21, j1 = Signal(signed(ACC_BITS + 1)), Signal(6), Signal(), Signal(), Signal(16)
        m.d.sync += [s1.eq(sum_d + ((1 << f) >> 1)), f_1.eq(f), done1.eq(done_sum), l21.eq(l2d), j1.eq(jd)]
        # the shift by f & 0x38, then by f & 7, each in its own stage; then ReLU / the floor of one LSB
        coarse, f_2, done_c, l2_c, j_c = Signal(signed(ACC_BITS + 1)), Signal(3), Signal(), Signal(), Signal(16)
        m.d.sync += [coarse.eq(s1 >> Cat(Const(0, 3), f_1[3:])), f_2.eq(f_1[:3]), done_c.eq(done1), l2_c.eq(l21),
                     j_c.eq(j1)]
        rounded, done_r, l2_r, j_r = Signal(signed(ACC_BITS + 1)), Signal(), Signal(), Signal(16)
        m.d.sync += [rounded.eq(coarse >> f_2), done_r.eq(done_c), l2_r.eq(l2_c), j_r.eq(j_c)]
        hval, bval = Signal(signed(H_BITS)), Signal(H_BITS)
        done2, l22, j2 = Signal(), Signal(), Signal(16)
        neg, zero = rounded[-1], ~rounded.any()
        m.d.sync += [hval.eq(Mux(neg, 0, rounded)), bval.eq(Mux(neg | zero, 1, rounded)),
                     done2.eq(done_r), l22.eq(l2_r), j2.eq(j_r)]
        m.d.comb += [h_wr.addr.eq(j2), h_wr.data.eq(hval), h_wr.en.eq(done2 & ~l22)]
        with m.If(done2 & l22):
            m.d.sync += self.beta.eq(bval)
        done_sum, l2d = done2, l22
        self._control(m, layer2, j, c, w_cnt, n_out, n_in, issuing, done_sum, l2d, j2)
        return m

    def _control(self, m, layer2, j, c, w_cnt, n_out, n_in, issuing, done_sum, l2d, j_done):
        """Counters: terms ``c`` of output ``j``; the layers one after the other (layer 2 waits for the
        last hidden value to be written)."""
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    single = self.hidden == 0
                    m.d.sync += [layer2.eq(single), j.eq(0), c.eq(0), w_cnt.eq(0),
                                 n_out.eq(Mux(single, 1, self.hidden)), n_in.eq(self.channels)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [issuing.eq(1), self.busy.eq(1)]
                m.d.sync += [c.eq(c + 1), w_cnt.eq(w_cnt + 1)]
                with m.If(c == n_in - 1):
                    m.d.sync += [c.eq(0), j.eq(j + 1)]
                    with m.If(j == n_out - 1):
                        m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(done_sum & (j_done == n_out - 1)):   # the layer's last output is written
                    with m.If(l2d):
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += [layer2.eq(1), j.eq(0), c.eq(0), n_out.eq(1), n_in.eq(self.hidden)]
                        m.next = "ISSUE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
