"""PEArray: rows x cols output-stationary processing elements with broadcast operands."""

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import ArrayParams
from .pe import ProcessingElement


class PEArray(wiring.Component):
    """Row ``r`` computes output position ``r`` of a tile, column ``c`` output channel ``c``; PE (r, c)
    sums ``a[r][k] * w[c][k]`` over k. Each cycle one k-slice arrives: activation ``r`` is broadcast
    along row ``r`` and weight code ``c`` down column ``c`` (docs/hardware.md argues broadcast over
    systolic).

    Read-out is a shift chain, not a multiplexer: PE index ``i = r*cols + c`` takes PE ``i + 1``'s
    accumulators while ``drain`` is high, and PE 0's are the outputs. So ``acc0``/``acc1`` show PE
    ``t``'s result in the t-th drain cycle (t = 0 before the first ``drain`` edge), and zeros enter at
    the far end. The chain is local wiring (one 2:1 choice per accumulator bit in each PE) where the
    multiplexer was a rows*cols:1 tree over every accumulator (38 % of the 8x8 dual array's LUTs).

    Members
    -------
    a : In(rows * abits)      -- ``a[r]`` at bits ``[r*abits +: abits]``
    w : In(cols * wbits)      -- ``w[c]`` at bits ``[c*wbits +: wbits]``
    valid, clear, drain : In(1) -- as for :class:`ProcessingElement`
    acc0, acc1 : Out(signed(acc_bits)) -- PE 0's accumulators (acc1: dual's odd one, else 0)
    """

    def __init__(self, params: ArrayParams):
        self.p = params
        super().__init__({
            "a": In(params.rows * params.abits), "w": In(params.cols * params.wbits),
            "valid": In(1), "clear": In(1), "drain": In(1),
            "acc0": Out(signed(params.acc_bits)), "acc1": Out(signed(params.acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        pes = []
        for r in range(p.rows):
            for c in range(p.cols):
                pe = ProcessingElement(p)
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [pe.a.eq(self.a[r * p.abits:(r + 1) * p.abits]),
                             pe.w.eq(self.w[c * p.wbits:(c + 1) * p.wbits]),
                             pe.valid.eq(self.valid), pe.clear.eq(self.clear), pe.drain.eq(self.drain)]
                pes.append(pe)
        for pe, nxt in zip(pes, pes[1:]):
            m.d.comb += [pe.acc_in.eq(nxt.acc), pe.acc_odd_in.eq(nxt.acc_odd)]
        m.d.comb += [self.acc0.eq(pes[0].acc), self.acc1.eq(pes[0].acc_odd)]
        return m
