"""PEArray: rows x cols output-stationary processing elements with broadcast operands."""

from amaranth.hdl import Array, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import ArrayParams
from .pe import ProcessingElement


class PEArray(wiring.Component):
    """Row ``r`` computes output position ``r`` of a tile, column ``c`` output channel ``c``; PE (r, c)
    sums ``a[r][k] * w[c][k]`` over k. Each cycle one k-slice arrives: activation ``r`` is broadcast
    along row ``r`` and weight code ``c`` down column ``c`` (docs/hardware.md argues broadcast over
    systolic). A read-out multiplexer selects one PE's accumulators for the requantizer.

    Members
    -------
    a : In(rows * abits)      -- ``a[r]`` at bits ``[r*abits +: abits]``
    w : In(cols * wbits)      -- ``w[c]`` at bits ``[c*wbits +: wbits]``
    valid, clear : In(1)      -- as for :class:`ProcessingElement`
    sel : In(range(rows*cols)) -- read-out index ``r*cols + c``
    acc0, acc1 : Out(signed(acc_bits)) -- the selected PE's accumulators
    """

    def __init__(self, params: ArrayParams):
        self.p = params
        super().__init__({
            "a": In(params.rows * params.abits), "w": In(params.cols * params.wbits),
            "valid": In(1), "clear": In(1), "sel": In(range(params.rows * params.cols)),
            "acc0": Out(signed(params.acc_bits)), "acc1": Out(signed(params.acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        acc0, acc1 = [], []
        for r in range(p.rows):
            for c in range(p.cols):
                pe = ProcessingElement(p)
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [pe.a.eq(self.a[r * p.abits:(r + 1) * p.abits]),
                             pe.w.eq(self.w[c * p.wbits:(c + 1) * p.wbits]),
                             pe.valid.eq(self.valid), pe.clear.eq(self.clear)]
                acc0.append(pe.acc)
                acc1.append(pe.acc_odd)
        m.d.comb += self.acc0.eq(Array(acc0)[self.sel])
        if p.n_acc == 2:
            m.d.comb += self.acc1.eq(Array(acc1)[self.sel])
        return m
