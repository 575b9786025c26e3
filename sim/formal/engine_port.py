"""Formal harness: the network engine's :class:`~rootshift.hw.engine.host_port.HostPort` against host
protocol v4 (docs/engine.md, "Host protocol v4").

Bounded model checking from reset over every input-stream word sequence (legal and illegal commands,
data words, any ``valid`` timing), any ``o_stream.ready`` that is never low for more than
:data:`READY_GAP` cycles in a row (a fair host), and an abstract sequencer: ``seq_done`` is free but only
while an image runs (after the port's ``seq_start``), and comes at the latest :data:`SEQ_BOUND` cycles
after the start. The memory data (``fine_data``, ``code_data``), ``seq_busy`` and ``overflow`` are free
inputs. A reference protocol parser in the harness, written from the docs' command table, tracks which
words are commands and which data, the answers owed, which memories are loaded and the flags the docs
prescribe; the port is checked against it every cycle. The reference unpacks ``INFER``'s packed pixel
codes by index arithmetic (code ``i`` is bits ``[(i % per)*abits +: abits]`` of word ``i // per``, the
words it has seen kept whole), not by the port's shift register.
"""

from amaranth.hdl import Assert, Assume, Cat, Const, Elaboratable, Module, Mux, Signal

from rootshift.hw.engine.host_port import (FLAG_BAD_OPCODE, FLAG_BAD_RANGE, FLAG_M_OVERFLOW, FLAG_NOT_LOADED,
                                           MAGIC, OP_CLEAR, OP_INFER, OP_LOAD, OP_READ_CODES, OP_READ_FINE,
                                           OP_STATUS, PROTOCOL_VERSION, HostPort, LoadMem, PortConfig)

READY_GAP = 2          # o_stream.ready is low for at most this many cycles in a row
SEQ_BOUND = 3          # the abstract sequencer's done comes within this many cycles of its start
MUTANTS = ("status", "range", "loaded", "refuse", "reach", "pack")


def small_config(baked=False):
    """A port as small as the protocol allows, with every case in it: 3 lanes of 16-bit codes (3 a
    48-bit stream word), 4 pixel channels at 1 position (4 codes in 2 words: the stream stalls while a
    word's other codes are unpacked, the last word is padded, the second channel group has two unused
    lanes, which must be 0 after the first group filled them: 2 lanes could not show a lane left
    uncleared), 4 classes (the logits span two fine words), memories of 4 words, and two loadable
    memories: one of 40-bit items (two chunks each, so partial items exist; the program uses 1 of 3) and
    one of 16-bit items (the program uses 2 of 2). ``baked``: the memories start loaded. The depth
    reaches one image: the unpacker's address back at 0 for the next image is checked by simulation
    (tests/test_pixel_unpack.py)."""
    return PortConfig(data_bits=48, lanes=3, abits=16, pix_addr=1, pix_channels=4, pix_positions=1, pix_groups=2,
                      out_addr=1, classes=4, fine_depth=4, code_depth=4,
                      mems=(LoadMem("a", 40, 3, 1), LoadMem("b", 16, 2, 2)), baked=baked)


def tiny_config(baked=False):
    """The smallest port in which a whole session fits a short BMC: two loadable memories of one item
    each (one of two chunks), one pixel code (one word), 2 classes in one fine word."""
    return PortConfig(data_bits=32, lanes=2, abits=2, pix_addr=0, pix_channels=1, pix_positions=1, pix_groups=1,
                      out_addr=1, classes=2, fine_depth=2, code_depth=2,
                      mems=(LoadMem("a", 40, 2, 1), LoadMem("b", 16, 2, 1)), baked=baked)


def stall_bound():
    """Most consecutive cycles the port may be neither ready for input nor offering output: the
    sequencer's run, the read latency and a few cycles of control."""
    return SEQ_BOUND + 4


class EnginePortHarness(Elaboratable):
    """Free ``valid``, ``payload``, ``o_ready`` (fair), ``seq_done`` (abstract sequencer), ``seq_busy``,
    ``overflow``, ``fine_data``, ``code_data``. Asserted every cycle:

    * **answers**: ``o_stream.valid`` only while the reference owes words (``INFER``: ``classes`` after
      the image, ``READ n``: ``n * lanes``, ``STATUS``: 3), no input taken while words are owed, and the
      words a refused ``INFER`` or an out-of-range ``READ`` owes are 0;
    * **no deadlock**: never more than :func:`stall_bound` cycles neither ready nor offering output, and
      the port is in ``IDLE`` whenever the reference is between commands (no word owed either way, no
      image running);
    * **side effects**: ``seq_start`` exactly when the reference starts an image (the last pixel code with
      every memory loaded); one pixel code per cycle, the stream stalled (``ready`` 0) exactly while a
      taken word has codes left; pixel writes (``pix_en``, address, the bank word: the group's codes in
      their lanes, unused lanes 0) and LOAD writes (``ld_en``, memory, address, chunk, data) exactly the
      words the reference writes;
    * **flags**: ``flags`` equals the reference's every cycle (unknown opcode; LOAD to an unknown memory,
      past the end or with a partial last item, READ of 0 words or past the end; INFER before a whole
      load; the overflow input; cleared by ``CLEAR``), and the first ``STATUS`` word is
      ``MAGIC << 16 | 4 << 8 | flags``.

    ``mutant`` (a planted bug in the reference, which the proof must catch): ``"status"`` 2 STATUS words;
    ``"range"`` no flag for a READ past the end; ``"loaded"`` a LOAD that does not start at address 0
    also completes a memory; ``"refuse"`` a refused INFER answers one word fewer; ``"reach"`` claims no
    image ever completes (its counterexample shows the depth reaches a whole image's logits); ``"pack"``
    takes a word's codes high first.
    """

    def __init__(self, cfg=None, mutant=None):
        if mutant not in (None, *MUTANTS):
            raise ValueError(f"unknown engine port mutant {mutant!r}")
        self.cfg, self.mutant = cfg or small_config(), mutant
        c = self.cfg
        self.valid, self.payload, self.o_ready = Signal(), Signal(c.data_bits), Signal()
        self.seq_done, self.seq_busy, self.overflow = Signal(), Signal(), Signal()
        self.fine_data, self.code_data = Signal(32 * c.lanes), Signal(c.lanes * c.abits)
        # the port's 32-bit cycle counters reach the host only as STATUS words 1 and 2, which no property
        # reads: cut them free (arbitrary every cycle), which keeps the BMC small and proves no less
        self.yosys_pre = ("hierarchy -top top", "cutpoint top.dut/w:cycles top.dut/w:total top.dut/w:img_cycles")

    def ports(self):
        return [self.valid, self.payload, self.o_ready, self.seq_done, self.seq_busy, self.overflow,
                self.fine_data, self.code_data]

    def elaborate(self, platform):
        m = Module()
        c, mu = self.cfg, self.mutant
        m.submodules.dut = dut = HostPort(c)
        ist, ost = dut.i_stream, dut.o_stream
        m.d.comb += [ist.valid.eq(self.valid), ist.payload.eq(self.payload), ost.ready.eq(self.o_ready),
                     dut.seq_done.eq(self.seq_done), dut.seq_busy.eq(self.seq_busy), dut.overflow.eq(self.overflow),
                     dut.fine_data.eq(self.fine_data), dut.code_data.eq(self.code_data)]
        take_in, take_out = ist.valid & ist.ready, ost.valid & ost.ready
        word = self.payload[:32]
        op, arg = word[28:32], word[:28]
        n_mems = len(c.mems)

        # -- the reference parser ------------------------------------------------------------------
        CMD, PIX, RADDR, LADDR, LDATA = range(5)
        phase = Signal(range(5))
        left = Signal(24)                          # data words still to come in this phase
        owed = Signal(range(max(3, c.classes) + 1 + 2 * c.lanes * 0xFFFF))
        zeros = Signal()                           # the owed words must be 0
        st_idx, answering_status, answering_logits = Signal(2), Signal(), Signal()
        flags = Signal(8)
        loaded = Signal(n_mems, init=(1 << n_mems) - 1 if c.baked else 0)
        running, run_cnt = Signal(), Signal(range(SEQ_BOUND + 2))
        rd_code, rd_n = Signal(), Signal(16)
        sel, lad, chunk, from0 = Signal(4), Signal(24), Signal(2), Signal()
        # the pixel phase: code ci next, a taken word with codes left (held), the words taken so far
        per, n_codes, L, ab = c.data_bits // c.abits, c.pix_codes, c.lanes, c.abits
        ci, held, wi = Signal(range(n_codes + 1)), Signal(), Signal(range(c.pix_words + 1))
        pw = [Signal(c.data_bits, name=f"pw{k}") for k in range(c.pix_words)]
        n_status = 2 if mu == "status" else 3
        n_refuse = c.classes - 1 if mu == "refuse" else c.classes

        depth = {i: mem.depth for i, mem in enumerate(c.mems)}
        chunks = {i: mem.chunks for i, mem in enumerate(c.mems)}
        exp_start, exp_pix, exp_ld = Signal(), Signal(), Signal()

        with m.If(self.overflow):
            m.d.sync += flags.eq(flags | FLAG_M_OVERFLOW)     # overridden below where a command sets a flag
        fl_next = Signal(8)
        m.d.comb += fl_next.eq(flags | Mux(self.overflow, FLAG_M_OVERFLOW, 0))

        with m.If(take_in):
            with m.Switch(phase):
                with m.Case(CMD):
                    with m.Switch(op):
                        with m.Case(OP_CLEAR):
                            m.d.sync += flags.eq(0)
                        with m.Case(OP_INFER):
                            m.d.sync += [phase.eq(PIX), ci.eq(0), held.eq(0), wi.eq(0)]
                        with m.Case(OP_READ_FINE, OP_READ_CODES):
                            m.d.sync += [phase.eq(RADDR), rd_code.eq(op == OP_READ_CODES), rd_n.eq(arg[:16])]
                        with m.Case(OP_LOAD):
                            m.d.sync += [phase.eq(LADDR), sel.eq(arg[24:28]), left.eq(arg[:24])]
                        with m.Case(OP_STATUS):
                            m.d.sync += [owed.eq(n_status), answering_status.eq(1), st_idx.eq(0), zeros.eq(0),
                                         answering_logits.eq(0)]
                        with m.Default():
                            m.d.sync += flags.eq(fl_next | FLAG_BAD_OPCODE)
                with m.Case(PIX):
                    for k in range(c.pix_words):
                        with m.If(wi == k):
                            m.d.sync += pw[k].eq(self.payload)
                    m.d.sync += wi.eq(wi + 1)
                with m.Case(RADDR):
                    a = word[:16]
                    end = a + rd_n
                    lim = Signal(17)
                    m.d.comb += lim.eq(Mux(rd_code, c.code_depth, c.fine_depth))
                    m.d.sync += phase.eq(CMD)
                    with m.If(rd_n == 0):
                        m.d.sync += flags.eq(fl_next | FLAG_BAD_RANGE)
                    with m.Else():
                        m.d.sync += [owed.eq(rd_n * c.lanes), answering_status.eq(0), zeros.eq(end > lim),
                                     answering_logits.eq(0)]
                        if mu != "range":
                            with m.If(end > lim):
                                m.d.sync += flags.eq(fl_next | FLAG_BAD_RANGE)
                with m.Case(LADDR):
                    m.d.sync += [lad.eq(word[:24]), chunk.eq(0), from0.eq(word[:24] == 0)]
                    m.d.sync += phase.eq(Mux(left == 0, CMD, LDATA))
                with m.Case(LDATA):
                    ok, last_chunk, need_hit = Signal(), Signal(), Signal()
                    for i in range(n_mems):
                        with m.If(sel == i):
                            m.d.comb += [ok.eq(lad < depth[i]), last_chunk.eq(chunk == chunks[i] - 1),
                                         need_hit.eq(lad == c.mems[i].need - 1)]
                    with m.If(sel >= n_mems):
                        m.d.comb += [ok.eq(0), last_chunk.eq(1)]
                    m.d.comb += exp_ld.eq(ok)
                    fl = Signal(8)
                    m.d.comb += fl.eq(fl_next | Mux(~ok | ((left == 1) & ~last_chunk), FLAG_BAD_RANGE, 0))
                    m.d.sync += [flags.eq(fl), left.eq(left - 1), chunk.eq(chunk + 1)]
                    with m.If(last_chunk):
                        m.d.sync += [chunk.eq(0), lad.eq(lad + 1)]
                        done_ok = ok & need_hit & (from0 if mu != "loaded" else 1)
                        for i in range(n_mems):
                            with m.If(done_ok & (sel == i)):
                                m.d.sync += loaded[i].eq(1)
                    with m.If(left == 1):
                        m.d.sync += phase.eq(CMD)
        # the pixel phase: one code per cycle, from the word taken now or the one held
        in_pix = phase == PIX
        exp_addr, exp_data = Signal(16), Signal(L * ab)

        def pix_word(k):       # pixel word k as the reference sees it this cycle
            return Mux(take_in & (wi == k), self.payload, pw[k])

        def code(i):
            k = per - 1 - i % per if mu == "pack" else i % per
            return pix_word(i // per)[k * ab:(k + 1) * ab]

        with m.If(in_pix & (held | take_in)):
            m.d.sync += ci.eq(ci + 1)
            with m.Switch(ci):
                for i in range(n_codes):
                    with m.Case(i):
                        p, ch = divmod(i, c.pix_channels)
                        g, j = divmod(ch, L)
                        if j == L - 1 or ch == c.pix_channels - 1:      # the group's last code: its bank word
                            lanes = [code(p * c.pix_channels + g * L + k) if g * L + k < c.pix_channels
                                     else Const(0, ab) for k in range(L)]
                            m.d.comb += [exp_pix.eq(1), exp_addr.eq(c.pix_addr + p * c.pix_groups + g),
                                         exp_data.eq(Cat(*lanes))]
                        word_done = i % per == per - 1 or i == n_codes - 1
                        m.d.sync += held.eq(0 if word_done else 1)
                        if i == n_codes - 1:
                            m.d.sync += phase.eq(CMD)
                            with m.If(loaded == (1 << n_mems) - 1):
                                m.d.comb += exp_start.eq(1)
                                m.d.sync += [running.eq(1), run_cnt.eq(0)]
                            with m.Else():
                                m.d.sync += [flags.eq(fl_next | FLAG_NOT_LOADED), owed.eq(n_refuse), zeros.eq(1),
                                             answering_status.eq(0), answering_logits.eq(0)]
        with m.If(take_out & (owed != 0)):
            m.d.sync += [owed.eq(owed - 1), st_idx.eq(st_idx + 1)]
        # the abstract sequencer: done only while running, at the latest SEQ_BOUND cycles after the start
        with m.If(running):
            m.d.sync += run_cnt.eq(run_cnt + 1)
            with m.If(self.seq_done):
                m.d.sync += [running.eq(0), owed.eq(c.classes), zeros.eq(0), answering_status.eq(0),
                             answering_logits.eq(1)]
        m.d.comb += [Assume(~self.seq_done | running), Assume(~running | (run_cnt < SEQ_BOUND) | self.seq_done)]
        # a fair host: o_stream.ready is never low for more than READY_GAP cycles
        low = Signal(range(READY_GAP + 2))
        m.d.sync += low.eq(Mux(self.o_ready, 0, low + 1))
        m.d.comb += Assume(self.o_ready | (low < READY_GAP))

        stall = Signal(range(stall_bound() + 2))
        with m.If(ist.ready | ost.valid):
            m.d.sync += stall.eq(0)
        with m.Elif(stall <= stall_bound()):
            m.d.sync += stall.eq(stall + 1)

        between = (phase == CMD) & (owed == 0) & ~running
        status0 = (MAGIC << 16) | (PROTOCOL_VERSION << 8)
        m.d.comb += [
            Assert(~ost.valid | (owed != 0), "an answer word only when one is owed"),
            Assert(~ist.ready | (owed == 0), "no input taken while an answer is owed"),
            Assert(~(take_out & zeros) | (ost.payload == 0), "refused and out-of-range answers are 0"),
            Assert(stall <= stall_bound(), "never stalled longer than the sequencer's run"),
            Assert(~between | dut.state_idle, "back in IDLE between commands"),
            Assert(dut.seq_start == exp_start, "the image starts exactly after the last pixel of a loaded engine"),
            Assert(~in_pix | (ist.ready == ~held), "a word taken exactly when the last one's codes are used"),
            Assert(dut.pix_en == exp_pix, "a bank word written exactly with its group's last code"),
            Assert(~exp_pix | (dut.pix_addr == exp_addr), "pixel bank word address"),
            Assert(~exp_pix | (dut.pix_data == exp_data), "pixel bank word: the group's codes, unused lanes 0"),
            Assert(dut.ld_en == exp_ld, "LOAD writes exactly the in-range words"),
            Assert(~exp_ld | ((dut.ld_sel == sel) & (dut.ld_addr == lad) & (dut.ld_chunk == chunk) &
                              (dut.ld_data == word)), "LOAD writes the word to its memory, item and chunk"),
            Assert(dut.flags == flags, "flags exactly as the protocol prescribes"),
            Assert(dut.loaded == loaded, "a memory is loaded exactly when a LOAD from 0 wrote its last item"),
            Assert(~(take_out & answering_status & (st_idx == 0)) | (ost.payload == (status0 | flags)),
                   "STATUS reports the magic, the protocol version and the flags"),
        ]
        if mu == "reach":     # not a bug: a witness that the depth reaches an image's last logit word
            m.d.comb += Assert(~(take_out & answering_logits & (owed == 1)), "no image ever completes")
        return m


def proofs():
    """The port's proofs: the fast ones (``make test``) cover every single command and its answer from
    reset; the session proof (``make formal``) a whole session on the tiny port: LOADs of both memories,
    then an image and its logits (its ``reach`` check shows the depth gets there)."""
    from .proofs import Mutant, Proof

    def mutants(cfg, depth, loaded=True):
        out = [Mutant("status", "reference expects 2 STATUS words, not 3", lambda: EnginePortHarness(cfg, "status"),
                      "bmc", 6),
               Mutant("range", "reference sets no flag for a READ past the end", lambda: EnginePortHarness(cfg, "range"),
                      "bmc", 6)]
        if cfg.data_bits // cfg.abits > 1 and cfg.pix_codes > 1:
            out.append(Mutant("pack", "reference takes a pixel word's codes high first",
                              lambda: EnginePortHarness(cfg, "pack"), "bmc", 6))
        if not cfg.baked:
            if loaded:
                out.append(Mutant("loaded", "reference lets a LOAD that does not start at 0 complete a memory",
                                  lambda: EnginePortHarness(cfg, "loaded"), "bmc", 6))
            out.append(Mutant("refuse", "reference expects classes - 1 words from a refused INFER",
                              lambda: EnginePortHarness(cfg, "refuse"), "bmc", 9))
        if depth >= 13:
            out.append(Mutant("reach", "claims no image completes: the counterexample is LOADs of both memories, "
                                       "an image and its last logit within the depth",
                              lambda: EnginePortHarness(cfg, "reach"), "bmc", depth))
        return tuple(out)

    def what(cfg):
        return (f"{cfg.lanes} lanes of {cfg.abits}-bit codes, {cfg.pix_codes} pixel code(s) in {cfg.pix_words} "
                f"word(s), {cfg.classes} classes, memories of "
                f"{cfg.fine_depth} words, two loadable memories of 2- and 1-chunk items, "
                f"{'baked' if cfg.baked else 'baked=False'}")

    out = []
    for tag, cfg, depth, fast, loaded in (("", small_config(False), 7, True, True),
                                          ("_baked", small_config(True), 7, True, True),
                                          ("_session", tiny_config(False), 13, False, False)):
        out.append(Proof(
            f"engine_port{tag}",
            f"Network engine HostPort (protocol v4; {what(cfg)}), every input word sequence for {depth} cycles from "
            f"reset with a fair o_stream.ready (low <= {READY_GAP} cycles) and a sequencer done within {SEQ_BOUND} "
            f"cycles: answers only and exactly as owed (zeros where refused), back in IDLE between commands, never "
            f"stalled over {stall_bound()} cycles, pixel and LOAD writes as taken, flags (unknown opcode, bad range, "
            "INFER before a whole load, overflow) and the loaded memories exactly as prescribed",
            lambda cfg=cfg: EnginePortHarness(cfg), "bmc", depth, mutants(cfg, depth, loaded), fast=fast))
    return out


PROOFS = proofs()
