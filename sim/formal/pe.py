"""Formal harness: one ``ProcessingElement``, and its ``capture_next`` variant (the engine's), against a 64-bit
reference accumulation of the contract's terms."""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Assert, Assume, Elaboratable, Module, Mux, Signal, signed

from rootshift.hw.params import ArrayParams
from rootshift.hw.pe import ProcessingElement
from rootshift.sw import contract as C

REF_BITS = 64


@dataclass(frozen=True)
class NarrowParams(ArrayParams):
    """Mutation: the generator's accumulator one bit narrower than the contract's bound asks for."""

    @property
    def acc_bits(self):
        return super().acc_bits - 1


def code_factors(p):
    """Per weight code, the signed factors the contract multiplies into the accumulators
    (``sw.contract.weight_terms``): ``(even, odd)`` per code for dual/lut, ``(acc, 0)`` for shift.
    Illegal codes (outside the window, never exported) are 0, as the hardware decodes them."""
    fmt = p.format
    legal = set(int(c) for c in fmt.all_codes())
    codes = np.array(sorted(legal))
    terms = C.weight_terms(codes, fmt, p.pe)
    out = {}
    for i, c in enumerate(codes):
        out[int(c)] = (int(terms["even"][i]), int(terms["odd"][i])) if p.pe in ("dual", "lut") else (int(terms["acc"][i]), 0)
    return [out.get(c, (0, 0)) for c in range(2 ** p.wbits)]


def term_max(p):
    """Largest ``|term|`` of one product: the contract's accumulator bound for ``K = 1``."""
    if p.pe == "shift2":
        return C.acc_bound(p.pe, 1, p.abits, p.format, p.wbits, act_max_exponent=p.act_exponent)
    return C.acc_bound(p.pe, 1, p.abits, p.format, p.wbits)


class _UnzeroedPE(ProcessingElement):
    """Mutation of the ``capture_next`` PE only: its stage-1 term registers keep a term that is not to be
    accumulated (not valid, zero code) instead of being zeroed, so stage 2 adds it anyway."""

    @staticmethod
    def _zeroed(m, cond, pairs):
        m.d.sync += [r.eq(v) for r, v in pairs]


class PEHarness(Elaboratable):
    """Free ``a``, ``w``, ``valid``, ``clear`` every cycle. The harness keeps its own registered copy of
    the operands and a 64-bit reference sum, built from the contract's tables by multiplication (not by
    shifting): ``ref += a * factor[w]`` (dual, shift), ``(a * 2^8) * even[w] + LUT[a] * odd[w]`` (lut),
    ``a * w`` (mult), ``f(a) * factor[w]`` with ``f`` from ``sw.contract.shift_act_factor`` (shift2).
    ``clear`` zeroes both; at most ``max_k`` terms arrive between clears (assumed).

    Asserted every cycle: the PE's accumulators equal the reference (so no accumulator ever wraps), and,
    to make the induction close, ``|ref| <= n * max|term|`` with ``n`` the terms since the clear. The same
    inputs drive a ``ProcessingElement(capture_next=True)``: its accumulators equal the reference too, and
    its ``acc_next``/``acc_odd_next`` the reference plus the term in stage 2 (``clear`` or not; while that
    sum has at most ``max_k`` terms), the value the ShadowArray captures at a tile's last edge.

    ``mutant``: ``"carry"`` drops the ``+1`` of a negative term's two's complement in the reference
    (``"sign"`` for mult: the weight read as unsigned); ``"narrow"`` builds the PE one accumulator bit
    narrower than the contract's bound; ``"unzeroed"`` builds the ``capture_next`` PE without the zeroing of
    its stage-1 terms (the default PE is left alone: this one must be caught by the capture_next assertions).
    """

    def __init__(self, params: ArrayParams, mutant=None):
        if mutant not in (None, "carry", "narrow", "unzeroed"):
            raise ValueError(f"unknown PE mutant {mutant!r}")
        self.p, self.mutant = params, mutant
        self.a = Signal(params.abits)
        self.w = Signal(params.wbits)
        self.valid = Signal()
        self.clear = Signal()

    def ports(self):
        return [self.a, self.w, self.valid, self.clear]

    def elaborate(self, platform):
        m = Module()
        p = self.p
        dut_params = NarrowParams(**{f: getattr(p, f) for f in p.__dataclass_fields__}) if self.mutant == "narrow" else p
        m.submodules.pe = pe = ProcessingElement(dut_params)
        next_pe = _UnzeroedPE if self.mutant == "unzeroed" else ProcessingElement
        m.submodules.pe_next = pe_n = next_pe(dut_params, capture_next=True)
        for dut in (pe, pe_n):
            m.d.comb += [dut.a.eq(self.a), dut.w.eq(self.w), dut.valid.eq(self.valid), dut.clear.eq(self.clear)]

        a_d, w_d, v_d = Signal.like(self.a), Signal.like(self.w), Signal()
        m.d.sync += [a_d.eq(self.a), w_d.eq(self.w), v_d.eq(self.valid)]

        t_even, t_odd = Signal(signed(REF_BITS)), Signal(signed(REF_BITS))
        u_even, u_odd = Signal(signed(REF_BITS)), Signal(signed(REF_BITS))  # before any mutation
        if p.pe == "mult":
            w_val = w_d.as_unsigned() if self.mutant == "carry" else w_d.as_signed()
            m.d.comb += u_even.eq(a_d * w_val)
        else:
            f_even, f_odd = Signal(signed(REF_BITS)), Signal(signed(REF_BITS))
            with m.Switch(w_d):
                for c, (fe, fo) in enumerate(code_factors(p)):
                    with m.Case(c):
                        m.d.comb += [f_even.eq(fe), f_odd.eq(fo)]
            if p.pe == "shift2":  # the activation code's factor f(c) = 2^(E_a - (c - 1)), 0 for c = 0
                act_f = Signal(signed(REF_BITS))
                with m.Switch(a_d):
                    for a, v in enumerate(C.shift_act_factor(np.arange(2 ** p.abits), p.act_exponent)):
                        with m.Case(a):
                            m.d.comb += act_f.eq(int(v))
                m.d.comb += u_even.eq(act_f * f_even)
            elif p.pe == "lut":
                lut = Signal(signed(REF_BITS))
                with m.Switch(a_d):
                    for a, v in enumerate(C.lut_table(p.abits)):
                        with m.Case(a):
                            m.d.comb += lut.eq(int(v))
                m.d.comb += u_even.eq(a_d * (1 << C.LUT_FRAC) * f_even + lut * f_odd)
            else:
                m.d.comb += [u_even.eq(a_d * f_even), u_odd.eq(a_d * f_odd)]
        if self.mutant == "carry" and p.pe != "mult":  # -|t| - 1 instead of -|t|: the lost carry-in
            neg = w_d[p.wbits - 1]
            m.d.comb += [t_even.eq(u_even - (neg & (u_even != 0))), t_odd.eq(u_odd - (neg & (u_odd != 0)))]
        else:
            m.d.comb += [t_even.eq(u_even), t_odd.eq(u_odd)]

        ref_e, ref_o = Signal(signed(REF_BITS)), Signal(signed(REF_BITS))
        n = Signal(range(p.max_k + 2))
        with m.If(self.clear):
            m.d.sync += [ref_e.eq(0), ref_o.eq(0), n.eq(0)]
        with m.Elif(v_d):
            m.d.sync += [ref_e.eq(ref_e + t_even), ref_o.eq(ref_o + t_odd), n.eq(n + 1)]
        m.d.comb += Assume(n <= p.max_k)

        bound = Signal(signed(REF_BITS))
        m.d.comb += bound.eq(n * term_max(p))
        # capture_next: the adders' outputs are the sum including the term in stage 2 (whatever clear
        # does at this edge), for every sum of at most max_k terms
        next_e, next_o = Signal(signed(REF_BITS)), Signal(signed(REF_BITS))
        m.d.comb += [next_e.eq(ref_e + Mux(v_d, t_even, 0)), next_o.eq(ref_o + Mux(v_d, t_odd, 0))]
        fits = n + v_d <= p.max_k
        m.d.comb += [
            Assert(pe.acc == ref_e, "acc equals the reference sum"),
            Assert(pe.acc_odd == ref_o, "acc_odd equals the reference sum"),
            Assert((pe_n.acc == ref_e) & (pe_n.acc_odd == ref_o), "capture_next: acc, acc_odd equal the reference"),
            Assert(~fits | ((pe_n.acc_next == next_e) & (pe_n.acc_odd_next == next_o)),
                   "capture_next: acc_next, acc_odd_next equal the reference sum with the stage-2 term"),
            Assert((ref_e <= bound) & (ref_e >= -bound) & (ref_o <= bound) & (ref_o >= -bound),
                   "|ref| <= n * max|term|"),
        ]
        return m
