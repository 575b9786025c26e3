"""QuantLanes: fine values to activation codes, one word of ``lanes`` channels per cycle."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C


class QuantLanes(wiring.Component):
    """``code = clamp(rshift_round(X * R, 40), 0, qmax)`` per lane (docs/arithmetic.md, "Activation
    quantization"; ``sw.contract.quant_codes``). ``R`` is the per-sample multiplier (< 2^31), so
    ``X * R`` fits 63 bits signed. Two stages: the products; then add half, shift, clamp.

    Members
    -------
    x : In(ArrayLayout(signed(32), lanes))  -- fine values
    r : In(31)                              -- R, held for the whole tensor
    qmax : In(abits)                        -- 2^bits - 1 of the layer's codes
    i_valid : In(1)
    codes : Out(lanes * abits)              -- lane ``c`` at bits ``[c*abits +: abits]``
    o_valid : Out(1)
    """

    LATENCY = 2

    def __init__(self, lanes, abits):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        if isinstance(abits, bool) or not isinstance(abits, int) or not 2 <= abits <= 8:
            raise TypeError(f"Activation bits must be an integer in 2..8, not {abits!r}")
        self.lanes, self.abits = lanes, abits
        super().__init__({
            "x": In(data.ArrayLayout(signed(32), lanes)), "r": In(31), "qmax": In(abits), "i_valid": In(1),
            "codes": Out(lanes * abits), "o_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        v1 = Signal()
        m.d.sync += [v1.eq(self.i_valid), self.o_valid.eq(v1)]
        codes = []
        for c in range(self.lanes):
            prod = Signal(signed(64), name=f"prod{c}")
            m.d.sync += prod.eq(self.x[c] * self.r.as_unsigned())
            rounded = Signal(signed(65), name=f"rounded{c}")
            m.d.comb += rounded.eq((prod + (1 << (C.QUANT_SHIFT - 1))) >> C.QUANT_SHIFT)
            code = Signal(unsigned(self.abits), name=f"code{c}")
            m.d.sync += code.eq(Mux(rounded < 0, 0, Mux(rounded > self.qmax, self.qmax, rounded[:self.abits])))
            codes.append(code)
        m.d.comb += self.codes.eq(Cat(*codes))
        return m
