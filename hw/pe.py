"""ProcessingElement: one output-stationary MAC cell in one of the contract's product modes."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .barrel_shifter import BarrelShifter
from .params import ArrayParams
from .post_decoder import PostDecoder


class ProcessingElement(wiring.Component):
    """Accumulates ``sum over k`` of one activation code times one weight code, exactly as the contract's
    ``accumulate`` (docs/arithmetic.md, "Products and accumulators").

    * ``dual``: ``+-(a << (E-k))`` into ``acc_even`` or ``acc_odd``; no multiplier.
    * ``lut``: ``+-(t << (E-k))`` with ``t = a << 8`` (even) or ``LUT[a] = round(a 2^8 / sqrt 2)`` (odd).
    * ``shift``: base 2, ``+-(a << (E-k))``.
    * ``mult``: ``a * w`` with signed integer weights (the multiplier baseline).
    * ``shift2``: shift weight times shift activation code ``c`` (``2^-(c-1)``, 0 for ``c = 0``): the
      exponents add and a one-hot decode gives ``+-(1 << (E_w + E_a - k - e))``; no multiplier, no shifter.

    Two pipeline stages: decode and shift (registered), then accumulate. The shift PEs never form a
    negative term: ``acc + (mag ^ s) + s`` adds ``-mag`` for ``s = 1``, and a zero code simply does
    not enable the accumulator. ``clear`` zeroes the accumulators through the flip-flops' synchronous
    reset, so starting a sum costs no multiplexer.

    Members
    -------
    a : In(abits)          -- activation code (unsigned)
    w : In(wbits)          -- weight code
    valid : In(1)          -- (a, w) is a term of the sum
    clear : In(1)          -- zero the accumulators (the cycle before the first term's stage 2)
    drain : In(1)          -- shift: ``acc <= acc_in``, ``acc_odd <= acc_odd_in`` (the read-out chain)
    acc_in, acc_odd_in : In(signed(acc_bits)) -- the next PE's accumulators on the read-out chain
    acc : Out(signed(acc_bits)) -- ``acc`` (lut/shift/mult) or ``acc_even`` (dual)
    acc_odd : Out(signed(acc_bits)) -- dual only (0 otherwise)

    acc_next, acc_odd_next : Out(signed(acc_bits)) -- ``capture_next`` only: the adders' outputs

    Port contract: ``acc``/``acc_odd`` are registers. A term presented with ``valid`` in cycle t is
    in them after the clock edge that ends cycle t + 1 (``PE_LATENCY = 2`` edges). ``clear`` and
    ``drain`` act at the next edge, ``clear`` first; ``drain`` must not overlap a term's stage 2.

    ``capture_next`` (the engine's :class:`~rootshift.hw.engine.shadow_array.ShadowArray`): ``acc_next``
    and ``acc_odd_next`` are what the accumulators take at the next edge unless ``clear``/``drain``, i.e.
    the sum including the term in stage 2. A shadow register can take a tile's sum at the edge that adds
    its last term, in the same edge as ``clear`` starts the next tile, so tiles follow with no bubble
    (issue 9). The stage-1 term registers are synchronously zeroed for a term that is not accumulated
    (not ``valid``, a zero code, or, for ``dual``, the other accumulator's: one term register per
    accumulator), so stage 2 always adds and needs no enable or multiplexer. Off by default: on iCE40 a
    logic cell gives its LUT or its flip-flop, not both, so an adder output used outside the cell costs
    cells; the tile engine (``PEArray``) keeps the default PE.
    """

    def __init__(self, params: ArrayParams, capture_next=False):
        if not isinstance(params, ArrayParams):
            raise TypeError(f"params must be ArrayParams, not {params!r}")
        if not isinstance(capture_next, bool):
            raise TypeError(f"capture_next must be True or False, not {capture_next!r}")
        self.p, self.capture_next = params, capture_next
        ports = {
            "a": In(params.abits), "w": In(params.wbits), "valid": In(1), "clear": In(1), "drain": In(1),
            "acc_in": In(signed(params.acc_bits)), "acc_odd_in": In(signed(params.acc_bits)),
            "acc": Out(signed(params.acc_bits)), "acc_odd": Out(signed(params.acc_bits)),
        }
        if capture_next:
            ports.update(acc_next=Out(signed(params.acc_bits)), acc_odd_next=Out(signed(params.acc_bits)))
        super().__init__(ports)

    def _accumulate(self, m, acc, nxt, acc_in, out):
        """``capture_next``'s stage 2: ``acc <= nxt`` (the adder, always), ``clear`` and ``drain`` first."""
        m.d.comb += out.eq(nxt)
        with m.If(self.clear):
            m.d.sync += acc.eq(0)
        with m.Elif(self.drain):
            m.d.sync += acc.eq(acc_in)
        with m.Else():
            m.d.sync += acc.eq(out)

    @staticmethod
    def _zeroed(m, cond, pairs):
        """Stage-1 registers ``reg <= value`` if ``cond``, else 0 (a synchronous reset, no multiplexer)."""
        with m.If(cond):
            m.d.sync += [r.eq(v) for r, v in pairs]
        with m.Else():
            m.d.sync += [r.eq(0) for r, _ in pairs]

    def _accumulate_enabled(self, m, en, accs, odd=None):
        """The default PE's stage 2: ``clear``, then ``drain`` (``accs``: ``(acc, sum, acc_in)``, all of
        them), else ``acc <= sum`` if ``en`` (dual: the even or the ``odd`` accumulator)."""
        with m.If(self.clear):
            m.d.sync += [acc.eq(0) for acc, _, _ in accs]
        with m.Elif(self.drain):
            m.d.sync += [acc.eq(src) for acc, _, src in accs]
        with m.Elif(en):
            if odd is None:
                m.d.sync += accs[0][0].eq(accs[0][1])
            else:
                with m.If(odd):
                    m.d.sync += accs[1][0].eq(accs[1][1])
                with m.Else():
                    m.d.sync += accs[0][0].eq(accs[0][1])

    def elaborate(self, platform):
        m = Module()
        p = self.p
        acc_e = Signal(signed(p.acc_bits))
        acc_o = Signal(signed(p.acc_bits))
        valid_r = Signal()                         # the default PE's stage-2 enable
        if not self.capture_next:
            m.d.sync += valid_r.eq(self.valid)
        if p.pe == "mult":
            prod = Signal(signed(p.abits + p.wbits + 1))
            if self.capture_next:
                self._zeroed(m, self.valid, [(prod, self.a.as_unsigned() * self.w.as_signed())])
                self._accumulate(m, acc_e, acc_e + prod, self.acc_in, self.acc_next)
            else:
                m.d.sync += prod.eq(self.a.as_unsigned() * self.w.as_signed())
                self._accumulate_enabled(m, valid_r, [(acc_e, acc_e + prod, self.acc_in)])
        elif p.pe == "shift2":
            # exponent add and one-hot decode: no multiplier, no barrel shifter (docs/arithmetic.md, "shift2")
            m.submodules.decoder = dec = PostDecoder(p.format)
            m.d.comb += dec.code.eq(self.w)
            e_total = p.shift_max + p.act_exponent
            amt = Signal(range(e_total + 1))        # E_total - k - e = (E_w - k) + (E_a + 1 - c), for c >= 1
            m.d.comb += amt.eq(dec.shift + (p.act_exponent + 1) - self.a)
            # stage 1: the one-hot word 2^amt, predecoded (amt = 4 hi + lo: bit i = L[i % 4] & H[i // 4], one
            # LUT4 per bit with the sign), XORed with the sign: the ones' complement, as in the shift PEs
            lo, hi = amt[:2], amt[2:]
            L = [lo == j for j in range(4)]
            H = [hi == h for h in range(e_total // 4 + 1)]
            term = Signal(signed(e_total + 2))
            neg = Signal()
            nz = Signal()
            bits = [(L[i % 4] & H[i // 4]) ^ dec.sign for i in range(e_total + 1)] + [dec.sign]
            if self.capture_next:
                self._zeroed(m, self.valid & ~dec.zero & self.a.any(), [(term, Cat(*bits)), (neg, dec.sign)])
                self._accumulate(m, acc_e, acc_e + term + neg, self.acc_in, self.acc_next)
            else:
                m.d.sync += [term.eq(Cat(*bits)), neg.eq(dec.sign), nz.eq(~dec.zero & self.a.any())]
                # stage 2: accumulate; a zero activation code (or a zero weight code) leaves it alone
                self._accumulate_enabled(m, valid_r & nz, [(acc_e, acc_e + term + neg, self.acc_in)])
        else:
            m.submodules.decoder = dec = PostDecoder(p.format)
            m.d.comb += dec.code.eq(self.w)
            if p.pe == "lut":
                lut = Array(Const(v, C.LUT_FRAC + p.abits) for v in C.lut_table(p.abits))
                t = Mux(dec.odd, lut[self.a], self.a << C.LUT_FRAC)
                width = p.abits + C.LUT_FRAC
            else:
                t, width = self.a, p.abits
            m.submodules.shifter = sh = BarrelShifter(width, p.shift_max)
            m.d.comb += [sh.i.eq(t), sh.amount.eq(dec.shift)]
            # stage 1: register the ones' complement term (mag ^ s): the conditional negation sits in
            # front of the register, so stage 2 is a bare adder (measured -12 % LUT per PE, issue 9)
            mag = Signal(signed(width + p.shift_max + 1))
            term = Signal.like(mag)
            neg = Signal()
            odd = Signal()
            nz = Signal()
            m.d.comb += mag.eq(sh.o)  # zero-extended: mag >= 0
            if self.capture_next:
                self._stages_next(m, Mux(dec.sign, ~mag, mag), dec, acc_e, acc_o, mag)
            else:
                m.d.sync += [term.eq(Mux(dec.sign, ~mag, mag)), neg.eq(dec.sign), nz.eq(~dec.zero)]
                if p.pe == "dual":
                    m.d.sync += odd.eq(dec.odd)
                # stage 2: acc + (mag ^ s) + s  ==  acc +- mag
                self._accumulate_enabled(m, valid_r & nz, [(acc_e, acc_e + term + neg, self.acc_in),
                                                           (acc_o, acc_o + term + neg, self.acc_odd_in)],
                                         odd if p.pe == "dual" else None)
        m.d.comb += [self.acc.eq(acc_e), self.acc_odd.eq(acc_o)]
        return m

    def _stages_next(self, m, ones, dec, acc_e, acc_o, mag):
        """``capture_next`` for dual/lut/shift: one zeroed term register (and sign) per accumulator, then
        ``acc + (mag ^ s) + s`` every cycle."""
        take = self.valid & ~dec.zero
        if self.p.pe == "dual":
            term_e = Signal.like(mag)
            term_o = Signal.like(mag)
            neg_e = Signal()
            neg_o = Signal()
            self._zeroed(m, take & ~dec.odd, [(term_e, ones), (neg_e, dec.sign)])
            self._zeroed(m, take & dec.odd, [(term_o, ones), (neg_o, dec.sign)])
            self._accumulate(m, acc_o, acc_o + term_o + neg_o, self.acc_odd_in, self.acc_odd_next)
        else:
            term_e = Signal.like(mag)
            neg_e = Signal()
            self._zeroed(m, take, [(term_e, ones), (neg_e, dec.sign)])
        self._accumulate(m, acc_e, acc_e + term_e + neg_e, self.acc_in, self.acc_next)


PE_LATENCY = 2  # cycles from (a, w, valid) to the updated acc
