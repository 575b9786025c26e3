"""RegisteredMemory: a block RAM whose read word passes one more register, latency neutral for the
engine. On ECP5 that register is the DP16KD's own output register (``REGMODE_B = "OUTREG"``); Yosys
infers every ``lib.memory`` as a DP16KD without it (its ``brams_map_16kd.v`` sets ``NOREG``), and the
NOREG clock-to-out is 5.83 ns in nextpnr's ECP5 model against 0.96 ns with OUTREG (measured on one
PDPW16KD feeding an adder, docs/engine.md "Measured cost"). Everywhere else (amaranth.sim, Verilator,
iCE40, Gowin) it is a ``lib.memory`` plus a register, the same cycle for cycle."""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Signal, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

# DP16KD port configurations (data bits per word, words): 18,432 bits of which the 1/2/4-bit widths
# use the 16,384 data bits (the ninth bit of every byte is the 9/18-bit widths' parity, unused there);
# 36 bits is the pseudo-dual-port mode (Yosys's PDPW16KD): both ports' data pins make one write and one
# read word, the low half out of port A's output register, the high half out of port B's
MODES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
MAX_DOWN = 4          # blocks stacked in depth at most: the read word is a MAX_DOWN:1 multiplexer (one LUT level)


def is_ecp5(platform):
    """The seam: an elaborating platform whose ``family`` is ECP5 (amaranth's ``LatticePlatform`` says
    ``"ecp5"``; the bench passes a stand-in) gets the primitive; ``None`` and anything else the model."""
    return str(getattr(platform, "family", "")).lower() == "ecp5"


def _across(width, granularity, bits):
    """Blocks side by side: each write granule (``granularity`` bits, or the whole word) in its own
    blocks, so a block never straddles two write enables."""
    g = granularity if granularity and granularity < width else width
    return (width // g) * -(-g // bits)


def tiling(width, depth, granularity=None):
    """``(bits, words, across, down)``: the DP16KD mode and how many blocks side by side and stacked.
    The fewest blocks with at most ``MAX_DOWN`` stacked (ties: fewer stacked, so a smaller multiplexer);
    where a write enable covers ``granularity`` bits a block must not straddle two of them."""
    cands = [(_across(width, granularity, b) * -(-depth // w), -(-depth // w), b, w) for b, w in MODES]
    ok = [c for c in cands if c[1] <= MAX_DOWN] or sorted(cands, key=lambda c: (c[1], c[0]))[:1]
    blocks, down, b, w = min(ok)
    return b, w, _across(width, granularity, b), down


def columns(width, granularity, bits):
    """Per block column: ``(granule, [source bit or None] * bits)``, the word's bits it holds."""
    g = granularity if granularity and granularity < width else width
    per = -(-g // bits)
    out = []
    for t in range(_across(width, granularity, bits)):
        k, off = divmod(t, per)
        out.append((k, [k * g + off * bits + j if off * bits + j < g else None for j in range(bits)]))
    return out


def _bit_pos(bits, word, k):
    """Where bit ``k`` of ``word`` sits in the block's 18,432-bit array (the INITVAL order: 1,024 rows of
    18 bits). 9/18-bit words fill it densely; 1/2/4-bit words fill the 8 data bits of each 9-bit byte."""
    if bits in (9, 18, 36):
        return word * bits + k
    a = word * bits + k
    return (a // 8) * 9 + a % 8


def initvals(bits, words):
    """The 64 ``INITVAL_xx`` parameters (320 bits: 16 rows of 18 bits in 20-bit fields) of a block
    holding ``words`` (a list of at most the mode's depth ``bits``-bit integers)."""
    flat = 0
    for i, v in enumerate(words):
        for k in range(bits):
            if v >> k & 1:
                flat |= 1 << _bit_pos(bits, i, k)
    out = {}
    for j in range(64):
        val = 0
        for r in range(16):
            val |= ((flat >> ((j * 16 + r) * 18)) & 0x3FFFF) << (r * 20)
        out[f"p_INITVAL_{j:02X}"] = Const(val, 320)
    return out


class RegisteredMemory(wiring.Component):
    """``depth`` words of ``width`` bits, one write port and one read port; the read word is at
    ``rdata`` two cycles after its address (the synchronous read, then the output register), so
    "``lib.memory`` read port + a register in the unit" becomes this, cycle for cycle.

    ``primitive``: ``None`` (default) decides by the platform (:func:`is_ecp5`), ``True``/``False``
    force the DP16KD tiles or the model (the tests compare both). On ECP5 the memory is
    ``tiling(width, depth, granularity)`` DP16KD blocks, port A writing and port B reading with
    ``REGMODE_B = "OUTREG"``; the high address bits of the read, delayed with the word, select a
    stacked block after the output registers. ``init`` becomes the blocks' ``INITVAL``.

    A read of the word written in the same cycle is undefined on ECP5 (the two ports collide; the
    model returns the old word): the engine never does it (weights and codes are written while no
    unit reads them).

    Members
    -------
    raddr : In(range(depth))
    rdata : Out(width)                  -- the word at ``raddr`` two cycles earlier
    waddr : In(range(depth)); wdata : In(width)
    wen : In(width // granularity)      -- a bit per ``granularity`` bits (one bit without granularity)
    """

    def __init__(self, width, depth, init=(), granularity=None, primitive=None):
        for name, v in (("width", width), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TypeError(f"RegisteredMemory {name} must be a positive integer, not {v!r}")
        if granularity is not None and (isinstance(granularity, bool) or not isinstance(granularity, int)
                                        or granularity < 1 or width % granularity):
            raise TypeError(f"RegisteredMemory granularity must be a positive divisor of width {width}, "
                            f"not {granularity!r}")
        if primitive not in (None, True, False):
            raise TypeError(f"primitive must be None, True or False, not {primitive!r}")
        init = [int(v) for v in init]
        if len(init) > depth:
            raise ValueError(f"RegisteredMemory init has {len(init)} words, more than its depth {depth}")
        if any(v < 0 or v >> width for v in init):
            raise ValueError(f"RegisteredMemory init words must be unsigned {width}-bit integers")
        self.width, self.depth, self.init = width, depth, init
        self.granularity = granularity if granularity is not None and granularity < width else None
        self.primitive = primitive
        super().__init__({"raddr": In(range(max(2, depth))), "rdata": Out(width),
                          "waddr": In(range(max(2, depth))), "wdata": In(width),
                          "wen": In(width // self.granularity if self.granularity else 1)})

    def read_port(self, signed=False):
        """The read port under ``lib.memory``'s names (``addr``, ``data``), so a unit wires a ``Memory`` and
        a ``RegisteredMemory`` alike (the word is two cycles late here). There is one read port: every call
        returns it. ``signed``: ``data`` as a signed value (``rdata`` is unsigned)."""
        return SimpleNamespace(addr=self.raddr, data=self.rdata.as_signed() if signed else self.rdata)

    def write_port(self):
        """The write port under ``lib.memory``'s names (``addr``, ``data``, ``en``); there is one."""
        return SimpleNamespace(addr=self.waddr, data=self.wdata, en=self.wen)

    def elaborate(self, platform):
        m = Module()
        if self.primitive if self.primitive is not None else is_ecp5(platform):
            self._dp16kd(m)
        else:
            self._model(m)
        return m

    def _model(self, m):
        m.submodules.mem = mem = Memory(shape=self.width, depth=max(2, self.depth), init=self.init)
        wr = mem.write_port(granularity=self.granularity) if self.granularity else mem.write_port()
        rd = mem.read_port(transparent_for=())
        m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.wen), rd.addr.eq(self.raddr)]
        m.d.sync += self.rdata.eq(rd.data)

    def _dp16kd(self, m):
        bits, words, across, down = tiling(self.width, self.depth, self.granularity)
        shift = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4, 36: 5}[bits]      # the word address sits at AD[13:shift]
        lo = (words - 1).bit_length()
        wsel, rsel = self.waddr[lo:], self.raddr[lo:]
        # the select follows the read as the blocks' read latch and output register do: not reset (a reset
        # zeroes every output register, whichever block is selected, and leaves the latch)
        rsel_q = Signal(max(1, len(rsel)), name="rsel_q", reset_less=True)
        rsel_qq = Signal(max(1, len(rsel)), name="rsel_qq", reset_less=True)
        if len(rsel):
            m.d.sync += [rsel_q.eq(rsel), rsel_qq.eq(rsel_q)]
        rows = []
        for b in range(down):
            row_we = (wsel == b) if len(wsel) else Const(1)
            outs = []
            for t, (g, src) in enumerate(columns(self.width, self.granularity, bits)):
                we = row_we & self.wen[g]
                img = [sum((v >> i & 1) << j for j, i in enumerate(src) if i is not None)
                       for v in self.init[b * words:(b + 1) * words]]
                m.submodules[f"bram_{b}_{t}"], do = self._block(bits, shift, src, we, img)
                outs += [(i, do[j]) for j, i in enumerate(src) if i is not None]
            rows.append(Cat(*[v for _, v in sorted(outs, key=lambda o: o[0])]))
        m.d.comb += self.rdata.eq(Array(rows)[rsel_qq] if down > 1 else rows[0])

    def _block(self, bits, shift, src, we, img):
        """One DP16KD: port A writes ``src``'s bits of ``wdata`` when ``we``, port B reads, through the output
        register. 1..18 bits: true dual port, 0b11 on AD[1:0] at 18 bits (the byte enables). 36 bits: the
        pseudo-dual-port wiring Yosys uses for PDPW16KD (the write word on DIA and DIB, AD[3:0] of port A
        its byte enables, the read word on DOA and DOB), both output registers on."""
        wide = bits == 36
        do = Signal(36 if wide else 18, name="do")
        din = [self.wdata[i] if i is not None else Const(0) for i in src] + [Const(0)] * (36 - len(src))
        be = we.replicate(4) if wide else Const(0b11 if bits == 18 else 0, 2)
        ada = Cat(be, Const(0, 14))[:shift] if wide or bits == 18 else Const(0, shift)
        ada = Cat(ada, self.waddr, Const(0, 14))[:14]
        adb = Cat(Const(0, shift), self.raddr, Const(0, 14))[:14]
        pins = {f"i_DIA{k}": din[k] for k in range(18)}
        pins.update({f"i_DIB{k}": din[18 + k] if wide else Const(0) for k in range(18)})
        pins.update({f"i_ADA{k}": ada[k] for k in range(14)})
        pins.update({f"i_ADB{k}": adb[k] for k in range(14)})
        pins.update({f"o_DOB{k}": do[18 + k if wide else k] for k in range(18)})
        if wide:
            pins.update({f"o_DOA{k}": do[k] for k in range(18)})
        inst = Instance(
            "DP16KD",
            p_DATA_WIDTH_A=bits, p_DATA_WIDTH_B=bits, p_REGMODE_A="OUTREG" if wide else "NOREG",
            p_REGMODE_B="OUTREG", p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_CSDECODE_A="0b000",
            p_CSDECODE_B="0b000", p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="AUTO", **initvals(bits, img),
            i_CLKA=ClockSignal(), i_CEA=Const(1), i_OCEA=Const(1), i_WEA=Const(1) if wide else we, i_RSTA=Const(0),
            i_CSA0=Const(0), i_CSA1=Const(0), i_CSA2=Const(0),
            i_CLKB=ClockSignal(), i_CEB=Const(1), i_OCEB=Const(1), i_WEB=Const(0), i_RSTB=ResetSignal(),
            i_CSB0=Const(0), i_CSB1=Const(0), i_CSB2=Const(0), **pins)
        return inst, do
