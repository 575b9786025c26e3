"""MaxPoolUnit: the ``maxpool`` step (k x k window, stride, padding) on fine words, lane by lane."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C

from .desc import PoolDesc
from .params import check_lanes


class MaxPoolUnit(wiring.Component):
    """Visits the output words in memory order (position ``(oy, ox)``, then group ``g``) and, for each,
    the ``k x k`` window's input words (one read per cycle): a lane keeps the running maximum of the
    words inside the image; words in the padding are never read (they cannot win: docs/arithmetic.md,
    "Other ops"). ``k * k`` cycles per output word plus the pipeline's tail (``cycles``).

    Pipeline: address (t) -> memory word (t+1; t+2 with ``registered_reads``) -> registered (``+1``) ->
    running maximum (``+1``) -> written with the window's last word.

    Members
    -------
    desc : In(PoolDesc); start : In(1); busy, done : Out(1)
    rd_addr : Out(16); rd_data : In(ArrayLayout(signed(32), lanes))
    out_addr : Out(16); out_data : Out(lanes * 32); out_en : Out(1)
    """

    def __init__(self, lanes, registered_reads=False):
        check_lanes(lanes)
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        self.lanes, self.registered_reads = lanes, registered_reads
        super().__init__({
            "desc": In(PoolDesc), "start": In(1), "busy": Out(1), "done": Out(1),
            "rd_addr": Out(16), "rd_data": In(data.ArrayLayout(signed(32), lanes)),
            "out_addr": Out(16), "out_data": Out(lanes * 32), "out_en": Out(1),
        })

    @staticmethod
    def cycles(outs, k, registered_reads=False):
        """``start`` to ``done``, inclusive of the ``done`` cycle: one read per window word, then the tail
        (the read, the data register, the maximum, the write, ``done``)."""
        return 1 + outs * k * k + (5 if registered_reads else 4)

    def elaborate(self, platform):
        m = Module()
        finished = Signal()
        rd_ok, first, last = self._walk(m, finished)
        self._datapath(m, rd_ok, first, last, finished)
        return m

    def _walk(self, m, finished):
        """The window walk: per output word, ``(i, j)`` over the window; the read address is
        ``base + off`` (``base`` the window's corner word of group ``g``, ``off = (i*W + j) * G``) and the
        word is real where ``0 <= by + i < H`` and ``0 <= bx + j < W``. Returns the issue controls."""
        d = self.desc
        i = Signal(4)
        j = Signal(4)
        g = Signal(16)
        ox = Signal(16)
        n = Signal(24)
        by = Signal(signed(18))
        bx = Signal(signed(18))
        base = Signal(signed(32))
        off = Signal(signed(32))
        y = Signal(signed(19))
        x = Signal(signed(19))
        m.d.comb += [y.eq(by + i), x.eq(bx + j), self.rd_addr.eq(base + off)]
        ok = Signal()
        first = Signal()
        last = Signal()
        m.d.comb += [first.eq((i == 0) & (j == 0)), last.eq((i == d.k - 1) & (j == d.k - 1)),
                     ok.eq((y >= 0) & (y < d.h) & (x >= 0) & (x < d.w))]
        issue = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [i.eq(0), j.eq(0), g.eq(0), ox.eq(0), n.eq(0), off.eq(0), by.eq(-d.pad),
                                 bx.eq(-d.pad), base.eq(d.in_addr + d.ab0)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), issue.eq(1)]
                m.d.sync += [j.eq(j + 1), off.eq(off + d.groups)]
                with m.If(j == d.k - 1):
                    m.d.sync += [j.eq(0), i.eq(i + 1), off.eq(off + d.row_skip)]
                    with m.If(i == d.k - 1):                      # the window's last word: next output word
                        m.d.sync += [i.eq(0), off.eq(0), n.eq(n + 1), g.eq(g + 1), base.eq(base + 1)]
                        with m.If(g == d.groups - 1):
                            m.d.sync += [g.eq(0), ox.eq(ox + 1), bx.eq(bx + d.stride), base.eq(base + d.adv_x)]
                            with m.If(ox == d.wo - 1):
                                m.d.sync += [ox.eq(0), bx.eq(-d.pad), by.eq(by + d.stride),
                                             base.eq(base + d.adv_y)]
                        with m.If(n == d.outs - 1):
                            m.next = "TAIL"
            with m.State("TAIL"):                                 # until the last word is written
                m.d.comb += self.busy.eq(1)
                with m.If(finished):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return issue & ok, issue & first, issue & last

    def _datapath(self, m, rd_ok, first, last, finished):
        """The controls follow the word through the memory (one or two cycles) and its register; the
        running maximum starts at ``FINE_MIN`` on a window's first word; the last word's maximum is
        written a cycle later, and ``done`` follows the write."""
        d, L = self.desc, self.lanes
        stages = 1 + (1 if self.registered_reads else 0) + 1      # memory (+ output register) + data register
        ctl = [(rd_ok, first, last)]
        for s in range(stages):
            nxt = tuple(Signal(name=f"{n}_{s}") for n in ("ok", "first", "last"))
            m.d.sync += [a.eq(b) for a, b in zip(nxt, ctl[-1])]
            ctl.append(nxt)
        ok_q, first_q, last_q = ctl[-1]
        word = [Signal(signed(32), name=f"word{c}") for c in range(L)]
        m.d.sync += [w.eq(self.rd_data[c]) for c, w in enumerate(word)]
        best = [Signal(signed(32), name=f"best{c}") for c in range(L)]
        for c in range(L):
            cur = Mux(first_q, C.FINE_MIN, best[c])
            m.d.sync += best[c].eq(Mux(ok_q & (word[c] > cur), word[c], cur))
        out_en = Signal()
        out_n = Signal(24)
        m.d.sync += out_en.eq(last_q)
        with m.If(self.start):
            m.d.sync += out_n.eq(0)
        with m.Elif(out_en):
            m.d.sync += out_n.eq(out_n + 1)
        m.d.comb += [self.out_en.eq(out_en), self.out_addr.eq(d.out_addr + out_n),
                     self.out_data.eq(Cat(*best))]
        m.d.comb += finished.eq(out_en & (out_n == d.outs - 1))
