"""SPRAM: a single-port RAM that is the iCE40 UP5K's ``SB_SPRAM256KA`` blocks in an iCE40 build and a
behavioural :class:`~amaranth.lib.memory.Memory` everywhere else (amaranth.sim, Verilator, ECP5)."""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

TILE_BITS = 16           # an SB_SPRAM256KA is 16,384 words of 16 bits, 256 Kbit
TILE_DEPTH = 1 << 14
UP5K_TILES = 4


def is_ice40(platform):
    """The seam: a platform whose ``family`` is iCE40 (amaranth-boards' ``LatticeICE40Platform``, or the
    bench's stand-in) gets the primitive; ``None`` (simulation, plain Verilog) and anything else the model."""
    return str(getattr(platform, "family", "")).lower() == "ice40"


def tiles(width, depth):
    """``(across, down)``: SB_SPRAM256KA blocks side by side (16 bits each) and stacked (16,384 words each)."""
    return -(-width // TILE_BITS), -(-depth // TILE_DEPTH)


class SPRAM(wiring.Component):
    """``depth`` words of ``width`` bits behind one address: a write or a read per cycle, the read data a
    cycle after its address (registered, as the primitive's ``DATAOUT``). There is no init: an SPRAM
    powers up with undefined contents, so the engine's program is ``LOAD`` ed into it (docs/engine.md,
    "Host protocol v4").

    ``wen`` has a bit per 16-bit slice (``MASKWREN`` granularity of the primitive is finer; slices are what
    the engine's 32-bit ``LOAD`` chunks need). On iCE40 (:func:`is_ice40`) the memory is
    ``tiles(width, depth)`` ``SB_SPRAM256KA`` blocks: the address's low 14 bits go to every block, the high
    bits select a row of blocks (``CHIPSELECT``) and, a cycle later, the read data. Elsewhere it is an
    Amaranth ``Memory`` with the same ports and timing (what the simulations run).

    Members
    -------
    addr : In(range(depth))
    wdata : In(width)
    wen : In(ceil(width / 16))      -- write the 16-bit slices whose bit is set (reads otherwise)
    rdata : Out(width)              -- the word at the address of the previous cycle
    """

    def __init__(self, width, depth):
        for name, v in (("width", width), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TypeError(f"SPRAM {name} must be a positive integer, not {v!r}")
        self.width, self.depth = width, depth
        self.slices = -(-width // TILE_BITS)
        super().__init__({"addr": In(range(max(2, depth))), "wdata": In(width), "wen": In(self.slices),
                          "rdata": Out(width)})

    def elaborate(self, platform):
        m = Module()
        if is_ice40(platform):
            self._primitive(m)
        else:
            self._model(m)
        return m

    def _model(self, m):
        m.submodules.mem = mem = Memory(shape=self.slices * TILE_BITS, depth=max(2, self.depth), init=[])
        wr, rd = mem.write_port(granularity=TILE_BITS), mem.read_port(transparent_for=())
        m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.wdata), wr.en.eq(self.wen),
                     rd.addr.eq(self.addr), rd.en.eq(1), self.rdata.eq(rd.data)]

    def _primitive(self, m):
        across, down = tiles(self.width, self.depth)
        low = self.addr[:14]
        high = self.addr[14:] if down > 1 else Const(0, 1)
        high_d = Signal.like(high)
        m.d.sync += high_d.eq(high)
        wdata = Cat(self.wdata, Const(0, across * TILE_BITS - self.width))
        rows = []
        for b in range(down):
            sel = high == b
            outs = []
            for t in range(across):
                o = Signal(TILE_BITS, name=f"spram_{b}_{t}")
                m.submodules[f"spram_{b}_{t}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=low, i_DATAIN=wdata[t * TILE_BITS:(t + 1) * TILE_BITS], i_MASKWREN=Const(0xF, 4),
                    i_WREN=self.wen[t] & sel, i_CHIPSELECT=sel, i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0,
                    i_POWEROFF=1, o_DATAOUT=o)
                outs.append(o)
            rows.append(Cat(*outs))
        rdata = rows[0]
        for b in range(1, down):
            rdata = Mux(high_d == b, rows[b], rdata)
        m.d.comb += self.rdata.eq(rdata[:self.width])
