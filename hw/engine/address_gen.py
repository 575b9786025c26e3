"""AddressGenerator: im2col by address generation for one conv/linear layer (no host, no im2col copy)."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .desc import ConvDesc


class AddressGenerator(wiring.Component):
    """Visits a layer tile by tile (``tile_p`` outer, ``tile_c`` inner, then k over ``(i, j, c)``: the
    ``cin`` real channels of each kernel tap, channel ``c`` in word ``g = c // lanes``, lane ``c % lanes``)
    and gives, every issue cycle, each array row's input word address, whether the row's operand is real
    (inside the image, a real output position) and the lane to take from the word. The padded lanes of a
    tap's last word are skipped, not visited with code 0: a stem with ``cin = 1`` issues ``kh * kw``
    k-slices per tile, not ``kh * kw * lanes`` (``k_eff = kh * kw * cin``).
    After each tile's last k-slice it inserts ``desc.gap`` bubble cycles (``desc.tile_gap``), 0 unless the
    tile is short: the shadow registers' drain must end before the next capture, and a tile must last
    ``desc.MIN_TILE`` cycles. With ``gap = 0`` the tile advances in its last ``RUN`` cycle and the next
    tile's first k-slice follows at once (the PEs clear at the last term's stage 2 and the shadow registers
    take the adders' outputs: hw/engine/conv_unit.py).

    Every update is an adder and a compare (docs/engine.md): per row the corner offset ``ab`` of its
    receptive field, and one shared offset ``off`` of the k-slice inside it.

    Members
    -------
    desc : In(ConvDesc)          -- the layer's descriptor fields (``desc.conv_fields``); held while busy
    start : In(1)                -- begin the layer (ignored while busy)
    busy : Out(1)
    valid : Out(1)               -- a k-slice is issued this cycle
    addr : Out(ArrayLayout(signed(32), rows)) -- word address per row, relative to the input tensor
    ok : Out(rows)               -- the row's operand is real (else the array gets code 0)
    live : Out(rows)             -- the row's output position exists (its result is written)
    lane : Out(range(lanes))     -- the lane of the word that holds this k-slice's channel
    waddr : Out(32)              -- weight-image word, relative to the layer's first
    first, last : Out(1)         -- first / last k-slice of a tile
    tile_p, tile_c : Out(16)
    pos0 : Out(24)               -- output position of row 0 of this tile
    done : Out(1)                -- one cycle, after the last tile (and its bubble, if any)
    """

    def __init__(self, rows, lanes):
        for name, v in (("rows", rows), ("lanes", lanes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TypeError(f"{name} must be a positive integer, not {v!r}")
        self.rows, self.lanes = rows, lanes
        super().__init__({
            "desc": In(ConvDesc), "start": In(1), "busy": Out(1), "valid": Out(1),
            "addr": Out(data.ArrayLayout(signed(32), rows)), "ok": Out(rows), "live": Out(rows),
            "lane": Out(range(max(2, lanes))), "waddr": Out(32), "first": Out(1), "last": Out(1),
            "tile_p": Out(16), "tile_c": Out(16), "pos0": Out(24), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d, R = self.desc, self.rows
        ox = [Signal(16, name=f"ox{r}") for r in range(R)]
        by = [Signal(signed(24), name=f"by{r}") for r in range(R)]
        bx = [Signal(signed(24), name=f"bx{r}") for r in range(R)]
        ab = [Signal(signed(32), name=f"ab{r}") for r in range(R)]
        pos = [Signal(24, name=f"pos{r}") for r in range(R)]
        i = Signal(16)
        j = Signal(16)
        lane = Signal(range(max(2, self.lanes)))
        cpos = Signal(17)
        off = Signal(signed(32))
        waddr = Signal(32)
        tp = Signal(16)
        tc = Signal(16)
        setup = Signal(range(R + 1))
        bubble = Signal(16)
        first = Signal()
        k = self._constants(m, d)
        k["ox2"] = [Signal(17, name=f"ox2_{r}") for r in range(R)]
        k["wrap"] = [Signal(name=f"wrap_{r}") for r in range(R)]
        for r in range(R):    # see _advance_rows
            m.d.sync += [k["ox2"][r].eq(ox[r] + d.adv_x), k["wrap"][r].eq(ox[r] + d.adv_x >= d.wo)]
        # the tile counters' compares, registered like ox2/wrap: tc and tp change only when a tile
        # advances, and tiles are at least desc.MIN_TILE = 2 cycles apart
        k["tc_last"], k["tp_last"] = Signal(name="tc_last"), Signal(name="tp_last")
        m.d.sync += [k["tc_last"].eq(tc == k["tiles_c_m1"]), k["tp_last"].eq(tp == k["tiles_p_m1"])]

        # cpos == cin - 1 (the tap's last real channel), j == kw - 1 and i == kh - 1, each kept in a
        # flip-flop and set a cycle ahead from the counter's next value: the tile's last k-slice then is
        # an AND of three flip-flops, not three 16-bit compares in front of every row's enable
        c_last = Signal()
        j_last = Signal()
        i_last = Signal()
        tap_end = c_last
        last = tap_end & j_last & i_last
        m.d.comb += [self.lane.eq(lane), self.waddr.eq(waddr), self.first.eq(first), self.last.eq(last),
                     self.tile_p.eq(tp), self.tile_c.eq(tc), self.pos0.eq(pos[0])]
        for r in range(R):
            y, x = by[r] + i, bx[r] + j
            m.d.comb += [self.addr[r].eq(ab[r] + off),
                         self.live[r].eq(pos[r] < d.npos),
                         self.ok[r].eq((y >= 0) & (y < d.h) & (x >= 0) & (x < d.w) & (pos[r] < d.npos))]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    for r in range(R):
                        m.d.sync += [ox[r].eq(0), by[r].eq(-d.pad), bx[r].eq(-d.pad), ab[r].eq(d.ab0), pos[r].eq(0)]
                    m.d.sync += [i.eq(0), j.eq(0), lane.eq(0), cpos.eq(0), off.eq(0), waddr.eq(0),
                                 tp.eq(0), tc.eq(0), setup.eq(1), first.eq(1),
                                 c_last.eq(d.cin == 1), j_last.eq(d.kw == 1), i_last.eq(d.kh == 1)]
                    m.next = "SETUP" if R > 1 else "RUN"
            if R > 1:
                with m.State("SETUP"):
                    # rows r >= setup advance one position: after rows-1 cycles row r sits at position r
                    m.d.comb += self.busy.eq(1)
                    for r in range(1, R):
                        with m.If(setup <= r):
                            self._advance_one(m, d, k, r, ox, by, bx, ab, pos)
                    m.d.sync += setup.eq(setup + 1)
                    with m.If(setup == R - 1):
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), self.valid.eq(1)]
                m.d.sync += [waddr.eq(waddr + 1), first.eq(0), lane.eq(lane + 1), cpos.eq(cpos + 1),
                             c_last.eq(cpos + 1 == k["cin_m1"])]
                with m.If((lane == self.lanes - 1) | tap_end):     # the word's last lane: next word
                    m.d.sync += [lane.eq(0), off.eq(off + 1)]
                    with m.If(tap_end):
                        m.d.sync += [cpos.eq(0), j.eq(j + 1), c_last.eq(k["cin1"]), j_last.eq(j + 1 == k["kw_m1"])]
                        with m.If(j_last):
                            m.d.sync += [j.eq(0), off.eq(off + d.row_skip), i.eq(i + 1), j_last.eq(k["kw1"]),
                                         i_last.eq(i + 1 == k["kh_m1"])]
                            with m.If(i_last):     # the tile's last k-slice
                                m.d.sync += [i.eq(0), off.eq(0), bubble.eq(1), i_last.eq(k["kh1"])]
                                with m.If(k["gap0"]):
                                    self._next_tile(m, d, k, tc, tp, waddr, first, ox, by, bx, ab, pos)
                                with m.Else():
                                    m.next = "BUBBLE"
            with m.State("BUBBLE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [first.eq(1), bubble.eq(bubble + 1)]
                with m.If(bubble >= d.gap):
                    self._next_tile(m, d, k, tc, tp, waddr, first, ox, by, bx, ab, pos)
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m

    def _next_tile(self, m, d, k, tc, tp, waddr, first, ox, by, bx, ab, pos):
        """The next column tile, or the next position tile (every row ``rows`` positions on), or ``DONE``:
        in the last ``RUN`` cycle (``gap = 0``) or the last ``BUBBLE`` cycle."""
        m.d.sync += first.eq(1)
        with m.If(k["tc_last"]):
            m.d.sync += [tc.eq(0), tp.eq(tp + 1), waddr.eq(0)]
            for r in range(self.rows):
                self._advance_rows(m, d, k, r, ox, by, bx, ab, pos)
            with m.If(k["tp_last"]):
                m.next = "DONE"
            with m.Else():
                m.next = "RUN"
        with m.Else():
            m.d.sync += tc.eq(tc + 1)
            m.next = "RUN"

    def _constants(self, m, d):
        """Sums and compare operands of descriptor fields, registered at ``start`` (the descriptor is held
        while busy): every compare below is against a register, and no update adds two fields at once."""
        k = {}
        for name, value in (("cin_m1", d.cin - 1), ("kw_m1", d.kw - 1), ("kh_m1", d.kh - 1),
                            ("tiles_c_m1", d.tiles_c - 1), ("tiles_p_m1", d.tiles_p - 1), ("wo_m1", d.wo - 1),
                            ("by_wrap", d.adv_by + d.stride), ("bx_wrap", d.adv_bx - d.wo_s),
                            ("ab_wrap", d.ab_adv + d.ab_wrap), ("gap0", d.gap == 0), ("cin1", d.cin == 1),
                            ("kw1", d.kw == 1), ("kh1", d.kh == 1)):
            k[name] = Signal(signed(len(value) + 1) if value.shape().signed else len(value), name=f"k_{name}")
            with m.If(self.start & ~self.busy):
                m.d.sync += k[name].eq(value)
        return k

    def _advance_one(self, m, d, k, r, ox, by, bx, ab, pos):
        """Row r moves to the next output position (used once per layer, in SETUP)."""
        m.d.sync += pos[r].eq(pos[r] + 1)
        with m.If(ox[r] == k["wo_m1"]):
            m.d.sync += [ox[r].eq(0), by[r].eq(by[r] + d.stride), bx[r].eq(-d.pad), ab[r].eq(ab[r] + d.ab_wrap1)]
        with m.Else():
            m.d.sync += [ox[r].eq(ox[r] + 1), bx[r].eq(bx[r] + d.stride), ab[r].eq(ab[r] + d.sg)]

    def _advance_rows(self, m, d, k, r, ox, by, bx, ab, pos):
        """Row r moves ``rows`` positions on (``rows = adv_y * wo + adv_x``), at most one extra line wrap.
        ``ox + adv_x`` and its compare with ``wo`` are registered every cycle: ``ox`` changes at most once
        per tile, and a tile (``k_eff`` RUN cycles, then ``gap`` BUBBLE cycles) lasts at least
        ``desc.MIN_TILE = 2`` cycles."""
        ox2, wrap = k["ox2"][r], k["wrap"][r]
        m.d.sync += pos[r].eq(pos[r] + self.rows)
        with m.If(wrap):
            m.d.sync += [ox[r].eq(ox2 - d.wo), by[r].eq(by[r] + k["by_wrap"]),
                         bx[r].eq(bx[r] + k["bx_wrap"]), ab[r].eq(ab[r] + k["ab_wrap"])]
        with m.Else():
            m.d.sync += [ox[r].eq(ox2), by[r].eq(by[r] + d.adv_by), bx[r].eq(bx[r] + d.adv_bx),
                         ab[r].eq(ab[r] + d.ab_adv)]
