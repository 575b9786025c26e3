"""ShadowArray: the PE array with shadow accumulators and a row-serial, column-parallel drain."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import ArrayParams
from ..pe import ProcessingElement


class ShadowArray(wiring.Component):
    """rows x cols :class:`~rootshift.hw.pe.ProcessingElement` s (broadcast operands, output stationary)
    plus one shadow register per accumulator. The PEs are built with ``capture_next``: ``capture`` copies
    every PE's adder output (the sum including the term in stage 2) into its shadow at the edge that adds a
    tile's last term, the same edge at which ``clear`` zeroes the accumulators, so the next tile's first
    term can reach stage 2 at the very next edge: no bubble between tiles (issue 9), and the next tile's
    MACs overlap this tile's drain. Each ``shift`` moves the shadow rows up by one, and ``out`` always shows
    shadow row 0 (one value per column, for one requantizer per column). No wide read-out multiplexer: the
    drain is a shift chain.

    Members
    -------
    a : In(rows * abits)        -- ``a[r]`` at bits ``[r*abits +: abits]``
    w : In(cols * wbits)        -- ``w[c]`` at bits ``[c*wbits +: wbits]``
    valid, clear : In(1)        -- as for the PE (``clear``: in the cycle of a tile's last term's stage 2)
    capture : In(1)             -- shadow <= the accumulators' next values (at the edge ending this cycle)
    shift : In(1)               -- shadow row r <= shadow row r + 1
    out0, out1 : Out(ArrayLayout(signed(acc_bits), cols)) -- shadow row 0 (out1: dual's odd accumulators)
    """

    def __init__(self, params: ArrayParams):
        if not isinstance(params, ArrayParams):
            raise TypeError(f"params must be ArrayParams, not {params!r}")
        self.p = params
        lay = data.ArrayLayout(signed(params.acc_bits), params.cols)
        super().__init__({
            "a": In(params.rows * params.abits), "w": In(params.cols * params.wbits),
            "valid": In(1), "clear": In(1), "capture": In(1), "shift": In(1),
            "out0": Out(lay), "out1": Out(lay),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n_acc = p.n_acc
        sh = [[[Signal(signed(p.acc_bits), name=f"sh{i}_{r}_{c}") for c in range(p.cols)] for r in range(p.rows)]
              for i in range(n_acc)]
        for r in range(p.rows):
            for c in range(p.cols):
                m.submodules[f"pe_{r}_{c}"] = pe = ProcessingElement(p, capture_next=True)
                m.d.comb += [pe.a.eq(self.a[r * p.abits:(r + 1) * p.abits]),
                             pe.w.eq(self.w[c * p.wbits:(c + 1) * p.wbits]),
                             pe.valid.eq(self.valid), pe.clear.eq(self.clear)]
                accs = [pe.acc_next, pe.acc_odd_next][:n_acc]
                for i in range(n_acc):
                    nxt = sh[i][r + 1][c] if r + 1 < p.rows else 0
                    with m.If(self.capture):
                        m.d.sync += sh[i][r][c].eq(accs[i])
                    with m.Elif(self.shift):
                        m.d.sync += sh[i][r][c].eq(nxt)
        for c in range(p.cols):
            m.d.comb += self.out0[c].eq(sh[0][0][c])
            if n_acc == 2:
                m.d.comb += self.out1[c].eq(sh[1][0][c])
        return m
