"""HostPort: the engine's side of host protocol v4 (docs/engine.md, "Host protocol v4")."""

from dataclasses import dataclass

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw.errors import ConfigError

from .pixel_unpack import PixelUnpacker, packed_words

# 5: the adapter weight memory (LOAD memory "aw") is cols * 16 bits, cols weights a word (the adapter's first
# layer cols hidden outputs at a time): a v4 bitstream's 16-bit memory would take the new layout wrong.
# 4: INFER carries the pixel codes packed, data_bits // abits per word (3: one word per code-bank word)
PROTOCOL_VERSION = 5
MAGIC = 0x5245                    # "RE": the network engine (the tile engine answers 0x5253)
OP_CLEAR, OP_LOAD, OP_INFER, OP_READ_FINE, OP_READ_CODES, OP_STATUS = 0x0, 0x1, 0x2, 0x3, 0x4, 0x7
FLAG_BAD_OPCODE = 1 << 0          # a command word with an unknown opcode (ignored)
FLAG_BAD_RANGE = 1 << 1           # LOAD: unknown memory, a word past its end, a partial last item; READ: n = 0 or past the end
FLAG_M_OVERFLOW = 1 << 2          # a per-sample multiplier overflowed 32 bits
FLAG_NOT_LOADED = 1 << 3          # INFER before every memory of the program was loaded (answered with zeros)
CHUNK = 32                        # LOAD data words carry 32 bits of a memory word each, low chunk first
LOAD_N_BITS, ADDR_BITS = 24, 24


@dataclass(frozen=True)
class LoadMem:
    """A memory the host loads: ``width`` bits per item, ``depth`` items, ``need`` items the program uses
    (a ``LOAD`` from address 0 that writes item ``need - 1`` makes it loaded)."""

    name: str
    width: int
    depth: int
    need: int

    @property
    def chunks(self):
        return -(-self.width // CHUNK)


@dataclass(frozen=True)
class PortConfig:
    """What the host port knows of the program it was built for (all of it from the plan)."""

    data_bits: int          # input stream width
    lanes: int
    abits: int
    pix_addr: int           # the pixel tensor's first word in the code banks
    pix_channels: int       # C: the input tensor's channels (a shift2 stem's bit planes included)
    pix_positions: int      # H*W
    pix_groups: int         # the tensor's words per position, ceil(C / lanes)
    out_addr: int           # the logits tensor's first fine word
    classes: int
    fine_depth: int
    code_depth: int
    mems: tuple             # LoadMem, in LOAD memory-id order
    baked: bool = True      # memories start with the program (inits): INFER needs no LOAD

    def __post_init__(self):
        for name in ("lanes", "abits", "pix_channels", "pix_positions", "pix_groups", "classes", "fine_depth",
                     "code_depth"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, not {v!r}")
        if self.data_bits < max(32, self.lanes * self.abits):
            raise ConfigError(f"data_bits must be at least max(32, lanes*abits) = {max(32, self.lanes * self.abits)}, "
                              f"not {self.data_bits}")
        if self.pix_groups != -(-self.pix_channels // self.lanes):
            raise ConfigError(f"the pixel tensor's {self.pix_channels} channels take ceil({self.pix_channels} / "
                              f"{self.lanes} lanes) = {-(-self.pix_channels // self.lanes)} words per position, "
                              f"not pix_groups {self.pix_groups}")
        if not 1 <= len(self.mems) <= 15:
            raise ConfigError(f"the port loads 1..15 memories, not {len(self.mems)}")
        for mem in self.mems:
            if not 1 <= mem.need <= mem.depth < 1 << ADDR_BITS:
                raise ConfigError(f"memory {mem.name}: need 1 <= need <= depth < 2^{ADDR_BITS}, not need {mem.need}, "
                                  f"depth {mem.depth}")
        if self.pix_addr + self.pix_bank_words > self.code_depth or self.out_addr + -(-self.classes // self.lanes) > self.fine_depth:
            raise ConfigError("the pixel or logits tensor lies outside its memory")

    @property
    def pix_codes(self):
        """Codes in one image's ``INFER`` payload: ``C * H * W``."""
        return self.pix_channels * self.pix_positions

    @property
    def pix_words(self):
        """Stream words of one image's ``INFER`` payload (packed, :func:`packed_words`)."""
        return packed_words(self.pix_codes, self.abits, self.data_bits)

    @property
    def pix_bank_words(self):
        """Code-bank words the pixel tensor fills: ``H * W * groups``."""
        return self.pix_positions * self.pix_groups


class HostPort(wiring.Component):
    """Decodes the host's command words and answers them; the :class:`Sequencer` runs the image.

    ``IDLE`` takes a command word ``opcode << 28 | arg``:

    * ``CLEAR``: flags and counters to 0;
    * ``LOAD m, n`` (``arg = m << 24 | n``): an address word, then ``n`` data words. Memory ``m``'s items
      are ``ceil(width / 32)`` 32-bit chunks, low first; chunk ``k`` of item ``addr + i`` is written as it
      arrives (``ld_*``). Items past the memory's end are dropped (``FLAG_BAD_RANGE``);
    * ``INFER``: ``pix_words`` stream words of packed pixel codes, which a :class:`PixelUnpacker` writes
      into the code banks (``pix_*``) at one code per cycle; with the last code ``seq_start``; at
      ``seq_done`` the logits (``classes`` words from the fine memory). Before a complete load the pixels
      are still taken and ``classes`` zero words answered (``FLAG_NOT_LOADED``);
    * ``READ_FINE n`` / ``READ_CODES n``: an address word, then ``n * lanes`` words (``n = 0`` or past the
      end: zeros and ``FLAG_BAD_RANGE``; ``n = 0`` answers nothing);
    * ``STATUS``: ``MAGIC << 16 | 4 << 8 | flags``, cycles of the last image, clocks since ``CLEAR``;
    * anything else: ``FLAG_BAD_OPCODE``.

    Every command is answered with exactly the words its row in docs/engine.md promises, so the host
    never waits for a word that does not come (sim/formal/engine_port.py proves it).

    Members
    -------
    i_stream : In(stream.Signature(data_bits)); o_stream : Out(stream.Signature(32))
    seq_start : Out(1); seq_done, seq_busy : In(1)      -- the :class:`Sequencer`
    overflow : In(1)                                     -- :class:`MultSetup`'s multiplier overflow
    pix_addr : Out(16); pix_data : Out(lanes * abits); pix_en : Out(1)   -- code bank writes (the unpacker's)
    rd_addr : Out(16); fine_data : In(32 * lanes); code_data : In(lanes * abits)  -- debug / logits reads
    ld_sel : Out(4); ld_addr : Out(24); ld_chunk : Out(range(max chunks)); ld_data : Out(32); ld_en : Out(1)
    loaded : Out(len(mems))                              -- which memories hold a whole program image
    flags : Out(8); state_idle : Out(1)                  -- for STATUS and the formal harness

    ``registered_reads``: ``fine_data``/``code_data`` come from
    :class:`~rootshift.hw.engine.bram_outreg.RegisteredMemory` s (the word two cycles after ``rd_addr``),
    whose output register is then the port's read register; the words and cycles are the same.
    """

    def __init__(self, cfg, registered_reads=False):
        if not isinstance(cfg, PortConfig):
            raise ConfigError(f"cfg must be a PortConfig, not {cfg!r}")
        if not isinstance(registered_reads, bool):
            raise TypeError(f"registered_reads must be True or False, not {registered_reads!r}")
        self.cfg, self.registered_reads = cfg, registered_reads
        self.max_chunks = max(m.chunks for m in cfg.mems)
        super().__init__({
            "i_stream": In(stream.Signature(cfg.data_bits)), "o_stream": Out(stream.Signature(32)),
            "seq_start": Out(1), "seq_done": In(1), "seq_busy": In(1), "overflow": In(1),
            "pix_addr": Out(16), "pix_data": Out(cfg.lanes * cfg.abits), "pix_en": Out(1),
            "rd_addr": Out(16), "fine_data": In(32 * cfg.lanes), "code_data": In(cfg.lanes * cfg.abits),
            "ld_sel": Out(4), "ld_addr": Out(ADDR_BITS), "ld_chunk": Out(range(max(2, self.max_chunks))),
            "ld_data": Out(CHUNK), "ld_en": Out(1),
            "loaded": Out(len(cfg.mems), init=(1 << len(cfg.mems)) - 1 if cfg.baked else 0),
            "flags": Out(8), "state_idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        L = cfg.lanes
        ist, ost = self.i_stream, self.o_stream
        m.submodules.unpack = unp = PixelUnpacker(cfg.data_bits, cfg.abits, L, cfg.pix_channels, cfg.pix_positions)
        op, arg = ist.payload[28:32], ist.payload[0:28]
        flags = self.flags
        cycles, total, img_cycles = Signal(32, name="cycles"), Signal(32, name="total"), Signal(32, name="img_cycles")
        cnt, n = Signal(LOAD_N_BITS, name="cnt"), Signal(LOAD_N_BITS, name="n")
        lane, addr = Signal(range(max(2, L)), name="lane"), Signal(16, name="addr")
        code_sel, rd_ok = Signal(name="code_sel"), Signal(name="rd_ok")
        sel, from0 = Signal(4, name="sel"), Signal(name="from0")
        m.d.sync += total.eq(total + 1)
        with m.If(self.seq_busy):
            m.d.sync += cycles.eq(cycles + 1)
        # every flag update ORs into fl: an overflow in the same cycle as a command's flag is kept
        fl = Signal(8)
        m.d.comb += fl.eq(flags | Mux(self.overflow, FLAG_M_OVERFLOW, 0))
        m.d.sync += flags.eq(fl)
        m.d.comb += [unp.i_stream.payload.eq(ist.payload), self.pix_addr.eq(cfg.pix_addr + unp.w_addr),
                     self.pix_data.eq(unp.w_data), self.pix_en.eq(unp.w_en),
                     self.rd_addr.eq(addr), self.ld_sel.eq(sel), self.ld_data.eq(ist.payload[:CHUNK])]
        # the read words registered before the lane multiplexer (block RAM outputs): a read takes two cycles
        fine_q = Signal.like(self.fine_data)
        code_q = Signal.like(self.code_data)
        dom = m.d.comb if self.registered_reads else m.d.sync
        dom += [fine_q.eq(self.fine_data), code_q.eq(self.code_data)]
        word_lanes = Array(fine_q[32 * c:32 * (c + 1)] for c in range(L))
        code_lanes = Array(code_q[cfg.abits * c:cfg.abits * (c + 1)] for c in range(L))
        n_mems = len(cfg.mems)
        # per-memory constants, indexed by the LOAD's memory id (an unknown id: depth 0, one chunk)
        depth = Array([Const(mem.depth, ADDR_BITS + 1) for mem in cfg.mems] + [Const(0, ADDR_BITS + 1)] * (16 - n_mems))
        cw = range(max(2, self.max_chunks))
        last = Array([Const(mem.chunks - 1, cw) for mem in cfg.mems] + [Const(0, cw)] * (16 - n_mems))
        need = Array([Const(mem.need - 1, ADDR_BITS) for mem in cfg.mems] + [Const(0, ADDR_BITS)] * (16 - n_mems))
        chunk = self.ld_chunk
        item_ok = self.ld_addr < depth[sel]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [ist.ready.eq(1), self.state_idle.eq(1)]
                with m.If(ist.valid):
                    m.d.sync += [cnt.eq(0), n.eq(arg[0:16]), lane.eq(0)]
                    with m.Switch(op):
                        with m.Case(OP_CLEAR):
                            m.d.sync += [flags.eq(0), total.eq(0), img_cycles.eq(0)]
                        with m.Case(OP_LOAD):
                            m.d.sync += [n.eq(arg[0:LOAD_N_BITS]), sel.eq(arg[24:28])]
                            m.next = "LOAD_ADDR"
                        with m.Case(OP_INFER):
                            m.d.sync += cycles.eq(0)
                            m.next = "PIXELS"
                        with m.Case(OP_READ_FINE, OP_READ_CODES):
                            m.d.sync += code_sel.eq(op == OP_READ_CODES)
                            m.next = "READ_ADDR"
                        with m.Case(OP_STATUS):
                            m.next = "STATUS"
                        with m.Default():
                            m.d.sync += flags.eq(fl | FLAG_BAD_OPCODE)
            with m.State("PIXELS"):      # the unpacker takes the words and writes the banks
                m.d.comb += [unp.i_stream.valid.eq(ist.valid), ist.ready.eq(unp.i_stream.ready)]
                with m.If(unp.done):
                    with m.If(self.loaded.all()):
                        m.d.comb += self.seq_start.eq(1)
                        # the logits word is read while the network runs: its last write comes
                        # before seq_done, so the registered word is ready in LOGITS, no wait
                        m.d.sync += addr.eq(cfg.out_addr)
                        m.next = "RUN"
                    with m.Else():
                        m.d.sync += flags.eq(fl | FLAG_NOT_LOADED)
                        m.next = "REFUSE"
            with m.State("RUN"):
                with m.If(self.seq_done):
                    m.d.sync += [addr.eq(cfg.out_addr), lane.eq(0), cnt.eq(0)]
                    m.next = "LOGITS_READ"
            with m.State("REFUSE"):         # a refused INFER: as many zero words as logits
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(0)]
                with m.If(ost.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == cfg.classes - 1):
                        m.next = "IDLE"
            with m.State("LOGITS_WAIT"):    # a further logits word: its address is on the read port
                m.next = "LOGITS_READ"
            with m.State("LOGITS_READ"):    # the word is on the read port; registered at the end
                m.d.sync += img_cycles.eq(cycles)
                m.next = "LOGITS"
            with m.State("LOGITS"):       # word addr is on the read port; send lanes < classes
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(word_lanes[lane])]
                with m.If(ost.ready):
                    m.d.sync += [lane.eq(lane + 1), cnt.eq(cnt + 1)]
                    with m.If(cnt == cfg.classes - 1):
                        m.next = "IDLE"
                    with m.Elif(lane == L - 1):
                        m.d.sync += [lane.eq(0), addr.eq(addr + 1)]
                        m.next = "LOGITS_WAIT"
            with m.State("READ_ADDR"):
                m.d.comb += ist.ready.eq(1)
                with m.If(ist.valid):
                    a = ist.payload[0:16]
                    m.d.sync += [addr.eq(a), rd_ok.eq(a + n[:16] <= Mux(code_sel, cfg.code_depth, cfg.fine_depth))]
                    with m.If(n[:16] == 0):
                        m.d.sync += flags.eq(fl | FLAG_BAD_RANGE)
                        m.next = "IDLE"
                    with m.Else():
                        with m.If(a + n[:16] > Mux(code_sel, cfg.code_depth, cfg.fine_depth)):
                            m.d.sync += flags.eq(fl | FLAG_BAD_RANGE)
                        m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.next = "READ_WAIT2"
            with m.State("READ_WAIT2"):
                m.next = "READ"
            with m.State("READ"):          # n words, each as lanes 32-bit answers (codes zero-extended)
                word = Mux(code_sel, code_lanes[lane], word_lanes[lane])
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(Mux(rd_ok, word, 0))]
                with m.If(ost.ready):
                    m.d.sync += lane.eq(lane + 1)
                    with m.If(lane == L - 1):
                        m.d.sync += [lane.eq(0), addr.eq(addr + 1), cnt.eq(cnt + 1)]
                        with m.If(cnt == n - 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "READ_WAIT"
            with m.State("LOAD_ADDR"):
                m.d.comb += ist.ready.eq(1)
                with m.If(ist.valid):
                    m.d.sync += [self.ld_addr.eq(ist.payload[0:ADDR_BITS]), chunk.eq(0),
                                 from0.eq(ist.payload[0:ADDR_BITS] == 0)]
                    with m.If(n == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "LOAD_DATA"
            with m.State("LOAD_DATA"):
                m.d.comb += ist.ready.eq(1)
                with m.If(ist.valid):
                    m.d.comb += self.ld_en.eq(item_ok)
                    m.d.sync += [cnt.eq(cnt + 1), chunk.eq(chunk + 1)]
                    with m.If(~item_ok):
                        m.d.sync += flags.eq(fl | FLAG_BAD_RANGE)
                    with m.If(chunk == last[sel]):
                        m.d.sync += [chunk.eq(0), self.ld_addr.eq(self.ld_addr + 1)]
                        with m.If(from0 & item_ok & (self.ld_addr == need[sel])):
                            for i in range(n_mems):
                                with m.If(sel == i):
                                    m.d.sync += self.loaded[i].eq(1)
                    with m.If(cnt == n - 1):
                        with m.If(chunk != last[sel]):       # the last item is incomplete
                            m.d.sync += flags.eq(fl | FLAG_BAD_RANGE)
                        m.next = "IDLE"
            with m.State("STATUS"):
                status = Array([Const(MAGIC << 16 | PROTOCOL_VERSION << 8, 32) | flags, img_cycles, total])
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(status[cnt[:2]])]
                with m.If(ost.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 2):
                        m.next = "IDLE"
        return m
