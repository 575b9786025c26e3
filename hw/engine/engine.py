"""Engine: the whole network on chip. Pixels in, logits out; a sequencer walks the program's steps."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rootshift.sw.errors import ConfigError

from ..params import BIAS_BITS, M_BITS
from .conv_unit import ConvUnit, const_word_bits, hw_bias
from .desc import ConvDesc, PoolDesc, QuantDesc, VecDesc, check_pool, gap_shift, tile_gap
from .host_port import (CHUNK, FLAG_BAD_OPCODE, FLAG_BAD_RANGE, FLAG_M_OVERFLOW, FLAG_NOT_LOADED, MAGIC,  # noqa: F401
                        OP_CLEAR, OP_INFER, OP_LOAD, OP_READ_CODES, OP_READ_FINE, OP_STATUS, PROTOCOL_VERSION,
                        HostPort, LoadMem, PortConfig)
from .bram_outreg import RegisteredMemory
from .mult_setup import MultSetup
from .adapter import adapter_weight_words
from .quant_step import QuantStep, schemes_for
from .desc_fetch import DescFetch, times_const
from .sequencer import Sequencer
from .spram import SPRAM
from .max_pool import MaxPoolUnit
from .vector_unit import VectorUnit

# host protocol v4 (docs/engine.md, "Host protocol v4"): the constants live with the HostPort
ENGINE_PROTOCOL_VERSION = PROTOCOL_VERSION
KIND = {"input": 0, "quant": 1, "conv": 2, "linear": 2, "add_relu": 3, "avgpool": 3, "maxpool": 4}

# one descriptor per step; a step is one kind, so its conv, quant and vector fields share bits (a union:
# 658 bits instead of their 1,281 side by side, fewer block RAMs and DescFetch words)
StepDesc = data.StructLayout({"kind": unsigned(3), "beta_slot": signed(8), "m_addr": unsigned(16), "cout": unsigned(16),
                              "u": data.UnionLayout({"conv": ConvDesc, "quant": QuantDesc, "vec": VecDesc,
                                                     "pool": PoolDesc})})


def rtl_check(program):
    """Refuse, naming the step, what the RTL engine does not run yet (the reference executor runs it all),
    and a descriptor field that its bits cannot hold (``StepDesc.const`` would truncate it silently)."""
    layouts = {"quant": QuantDesc, "conv": ConvDesc, "linear": ConvDesc, "add_relu": VecDesc, "avgpool": VecDesc,
               "maxpool": PoolDesc}
    for s in program.steps:
        if s["kind"] == "maxpool":
            try:
                check_pool(s)
            except ValueError as e:
                raise ConfigError(f"layer {s['name']}: {e}") from None
        if s["kind"] in layouts:
            _check_fields(s, layouts[s["kind"]])
        if s["kind"] in ("conv", "linear"):
            _check_tiles(s, program.params.drain_cycles)
        # a GAP or pool over H*W not a power of two runs through the GapDivider (desc gap_div / div)
        if s["kind"] == "quant" and s["adapter"]:
            _check_count(s, s["adapter"]["gap_n"], s["desc"], "gap_shift", "gap_div")
        if s["kind"] == "avgpool":
            _check_count(s, s["n"], s["desc"], "shift", "div")


def _check_fields(step, layout):
    for name, value in step["desc"].items():
        shape = Shape.cast(layout[name].shape)
        lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
        if not lo <= int(value) <= hi:
            raise ConfigError(f"layer {step['name']}: descriptor field {name!r} is {int(value)}, the engine's "
                              f"{shape.width}-bit field holds {lo}..{hi}")


def _check_tiles(step, drain):
    """A tile's bubble is at least what the ConvUnit's timing needs (``desc.tile_gap``): with fewer cycles
    the next tile would clear the accumulators before this one's capture, or overwrite its output address,
    and its words would be wrong with no flag (a hand-made or edited program; the compiler writes these)."""
    d = step["desc"]
    if int(d["k_eff"]) != step["k_eff"]:
        raise ConfigError(f"layer {step['name']}: descriptor field 'k_eff' is {int(d['k_eff'])}, the layer's "
                          f"k-slices per tile are {step['k_eff']}")
    need = tile_gap(step["k_eff"], drain)
    if int(d["gap"]) < need:
        raise ConfigError(f"layer {step['name']}: descriptor field 'gap' is {int(d['gap'])}, a tile of "
                          f"{step['k_eff']} k-slices with a {drain}-cycle drain needs {need} (desc.tile_gap)")


def _check_count(step, n, desc, shift_field, div_field):
    """The descriptor divides by ``n`` as the contract does: ``positions == n``, and a rounding shift by
    ``log2(n)`` or the divider (a program whose descriptor says otherwise would compute a wrong mean)."""
    sh = gap_shift(n)
    want = {"positions": n, shift_field: sh or 0, div_field: int(sh is None)}
    got = {k: desc.get(k) for k in want}
    if got != want:
        raise ConfigError(f"layer {step['name']}: the descriptor's average over H*W = {n} is {got}, not {want} "
                          f"(a program from an older compiler: compile it again)")


def images(program):
    """Memory images of a program: descriptors, per-channel constants (``M_base``s and the bias with the
    rounding half folded in), adapter weight words (``lanes`` weights each) and biases."""
    a = program.params.array
    cw = a.n_acc * M_BITS + BIAS_BITS
    desc, chan, aw, ab = [], [], [], []
    for s in program.steps:
        d = {"kind": KIND[s["kind"]], "beta_slot": s.get("beta_slot", -1), "m_addr": s.get("m_addr", 0),
             "cout": s.get("cout", 0)}
        if s["kind"] in ("conv", "linear"):
            d["u"] = {"conv": s["desc"]}
            for ch in range(s["cout"]):
                w = 0
                for i, mb in enumerate(s["m_base"]):
                    w |= (int(mb[ch]) & 0xFFFFFFFF) << (i * M_BITS)
                w |= (hw_bias(int(s["bias"][ch]), s["shift"]) & ((1 << BIAS_BITS) - 1)) << (a.n_acc * M_BITS)
                chan.append(w)
        elif s["kind"] == "quant":
            d["u"] = {"quant": s["desc"]}
            ad = s["adapter"]
            if ad:      # weights: lanes per word (adapter_weight_words); biases B1, B2
                aw += adapter_weight_words(ad["w1"] if ad["hidden"] else None, ad["w2"], program.params.lanes)
                if ad["hidden"]:
                    ab += [int(v) for v in ad["b1"]]
                ab += [int(v) for v in ad["b2"]]
        elif s["kind"] in ("add_relu", "avgpool"):
            d["u"] = {"vec": s["desc"]}
        elif s["kind"] == "maxpool":
            d["u"] = {"pool": s["desc"]}
        desc.append(StepDesc.const(d).as_value().value)
    assert all(0 <= w < 1 << cw for w in chan)
    return desc, chan, aw or [0], ab or [0]


def _padded(width):
    """Memory width: wider than one LOAD chunk -> a whole number of chunks (a write port of 32-bit granularity)."""
    return width if width <= CHUNK else -(-width // CHUNK) * CHUNK


def desc_words():
    """32-bit words per descriptor (``desc_fetch="serial"``)."""
    return _padded(StepDesc.size) // CHUNK


def load_images(program):
    """The memories ``LOAD`` writes, in memory-id order (docs/engine.md, "Host protocol v4"): ``[(LoadMem,
    items)]`` with every item as an unsigned ``width``-bit integer (two's complement for signed memories).
    The same images are the memory inits of a ``baked`` engine."""
    a = program.params.array
    desc, chan, aw, ab = images(program)
    wl = program.weight_lanes({"wgt_addr": 0, "wgt_words": len(program.weights) // program.wgt_word_bytes})
    wgt = [sum(int(v) << (a.wbits * c) for c, v in enumerate(row)) for row in wl] or [0]
    out = []
    for name, width, img in (("desc", StepDesc.size, desc), ("wgt", a.cols * a.wbits, wgt),
                             ("chan", a.n_acc * M_BITS + BIAS_BITS, chan or [0]), ("aw", 16 * program.params.lanes, aw),
                             ("ab", 64, ab)):
        mask = (1 << width) - 1
        out.append((LoadMem(name, width, max(2, len(img)), len(img)), [int(v) & mask for v in img]))
    return out


def memory_words(program, kind):
    """Depth of the ``fine`` memory or of each code bank (the words the plan uses, at least 2)."""
    return max(2, max((t["addr"] + t["words"] for t in program.tensors.values() if t["kind"] == kind), default=0))


def port_config(program, baked=True):
    """The :class:`PortConfig` of an engine built for ``program``."""
    a = program.params.array
    pix = program.tensors[next(s["out"] for s in program.steps if s["kind"] == "input")]
    out = program.tensors[program.output]
    c, h, w = pix["shape"]
    return PortConfig(data_bits=max(32, a.cols * a.abits), lanes=a.cols, abits=a.abits, pix_addr=pix["addr"],
                      pix_channels=c, pix_positions=h * w, pix_groups=pix["groups"], out_addr=out["addr"],
                      classes=out["shape"][0],
                      fine_depth=memory_words(program, "fine"), code_depth=memory_words(program, "codes"),
                      mems=tuple(mem for mem, _ in load_images(program)), baked=bool(baked))


class Engine(wiring.Component):
    """Runs a compiled :class:`~rootshift.hw.engine.program.Program` with no host involvement between the
    pixels and the logits (docs/engine.md, "Engine"): a :class:`HostPort` speaks host protocol v4, a
    :class:`Sequencer` walks the steps: ``quant`` (:class:`QuantStep`, beta into its slot),
    ``conv``/``linear`` (:class:`MultSetup` for the sample's multipliers, then :class:`ConvUnit`),
    ``add_relu``/``avgpool`` (:class:`VectorUnit`); the logits leave on ``o_stream``.

    ``baked``: the program's memories (descriptors, weights, per-channel and adapter constants) start
    with the program as memory inits; ``baked=False`` builds them empty (so they can be SPRAM, which has
    no init) and the host must ``LOAD`` every one before ``INFER``. Either way the engine is elaborated
    for ``program``'s plan (memory depths, step count, input and output tensors); ``LOAD`` can replace
    the contents with another program of the same plan.

    Members
    -------
    i_stream : In(stream.Signature(max(32, cols * abits)))
    o_stream : Out(stream.Signature(32))
    busy : Out(1)
    """

    def __init__(self, program, baked=True):
        from .program import Program

        if not isinstance(program, Program):
            raise TypeError(f"program must be a compiled Program (hw.engine.compiler.compile_model), not {program!r}")
        if not isinstance(baked, bool):
            raise TypeError(f"baked must be True or False, not {baked!r}")
        rtl_check(program)
        if baked and program.params.weight_memory == "spram":
            raise ConfigError("weight_memory 'spram' has no init (SB_SPRAM256KA): build the engine with baked=False "
                              "and LOAD the program")
        self.prog, self.baked = program, baked
        # the words an INFER answers (the logits): the board core buffers that many (hw/board/core.py)
        self.answer_words = program.tensors[program.output]["shape"][0]
        a = program.params.array
        self.a = a
        self.data_bits = max(32, a.cols * a.abits)
        super().__init__({"i_stream": In(stream.Signature(self.data_bits)), "o_stream": Out(stream.Signature(32)),
                          "busy": Out(1)})
        self.pc = Signal(16)                       # the step being run (for debugging and test benches)

    def registered_reads(self):
        """Whether the block RAMs that units read into registers (code banks, weights, requantization words,
        per-channel constants, the fine memory, bank 0's debug copy) are :class:`RegisteredMemory` s (the
        block RAM's output register on ECP5): the ECP5 configuration (``cycles.registered_reads``)."""
        from .cycles import registered_reads

        return registered_reads(self.prog.params)

    def elaborate(self, platform):
        m = Module()
        prog, a = self.prog, self.a
        L = a.cols
        reg = self.registered_reads()
        mem = {}
        for lm, img in load_images(prog):          # the memories LOAD writes
            init = img if self.baked else []
            if lm.name == "wgt" and prog.params.weight_memory == "spram":
                m.submodules.wgt = mem["wgt"] = SPRAM(_padded(lm.width), lm.depth)
                continue
            if lm.name == "desc" and prog.params.desc_fetch == "serial":     # 32-bit words, DescFetch
                W = desc_words()
                init = [(v >> (CHUNK * k)) & 0xFFFFFFFF for v in img for k in range(W)] if self.baked else []
                m.submodules.desc = mem["desc"] = Memory(shape=CHUNK, depth=max(2, lm.depth * W), init=init)
                continue
            width = _padded(lm.width)
            # read into a register: on ECP5 the block RAM's own output register
            if lm.name == "desc" or (lm.name in ("wgt", "chan", "aw", "ab") and reg):
                mem[lm.name] = RegisteredMemory(width, lm.depth, init=init,
                                                granularity=CHUNK if width > CHUNK else None)
            else:
                mem[lm.name] = Memory(shape=width, depth=lm.depth, init=init)
            m.submodules[lm.name] = mem[lm.name]
        n_rq = max(2, sum(s["tiles_c"] for s in prog.steps if s["kind"] in ("conv", "linear")))
        m.submodules.rq = mem["rq"] = (RegisteredMemory(const_word_bits(a), n_rq) if reg else
                                       Memory(shape=const_word_bits(a), depth=n_rq, init=[]))
        fine = memory_words(prog, "fine")
        if reg:       # two read ports: two copies, written alike (a DP16KD's second port is its write port)
            m.submodules.fine = mem["fine"] = RegisteredMemory(32 * L, fine)
            m.submodules.fine_b = mem["fine_b"] = RegisteredMemory(32 * L, fine)
        else:
            m.submodules.fine = mem["fine"] = Memory(shape=32 * L, depth=fine, init=[])
        banks = []
        codes = memory_words(prog, "codes")
        for r in range(a.rows):
            m.submodules[f"bank{r}"] = bank = (RegisteredMemory(L * a.abits, codes) if reg else
                                                Memory(shape=L * a.abits, depth=codes, init=[]))
            banks.append(bank)
        if reg:       # the HostPort's debug read of bank 0: a copy, written as every bank
            m.submodules.bank_dbg = mem["bank_dbg"] = RegisteredMemory(L * a.abits, codes)
        max_ch = max([s["desc"]["channels"] for s in prog.steps if s["kind"] == "quant"] + [4])
        slots = max(1, sum(1 for s in prog.steps if s["kind"] == "quant" and s["adapter"]))
        m.submodules.port = port = HostPort(port_config(prog, self.baked), registered_reads=reg)
        m.submodules.seq = seq = Sequencer(len(prog.steps), slots, fetch_wait=True)
        m.submodules.conv = conv = ConvUnit(a, prog.params.drain, registered_reads=reg)
        m.submodules.setup = setup = MultSetup(a, registered_reads=reg)
        m.submodules.quant = quant = QuantStep(L, a.abits, max_ch, schemes_for(a), registered_reads=reg)
        m.submodules.vec = vec = VectorUnit(L, registered_reads=reg)
        self.units = {"port": port, "seq": seq, "conv": conv, "setup": setup, "quant": quant, "vec": vec}
        if any(s["kind"] == "maxpool" for s in prog.steps):   # only a program with a max pool pays its LUTs
            m.submodules.pool = self.units["pool"] = MaxPoolUnit(L, registered_reads=reg)
        wiring.connect(m, wiring.flipped(self.i_stream), port.i_stream)
        wiring.connect(m, wiring.flipped(self.o_stream), port.o_stream)
        self._wire(m, mem, banks, port, seq, conv, setup, quant, vec)
        return m

    def _load_ports(self, m, mem, port, unit_addr):
        """One write port per loaded memory, fed by the HostPort's LOAD chunks. The weight memory's read
        and write ports share one address (``unit_addr`` except while loading), so it can be a
        single-port SPRAM. A :class:`RegisteredMemory` (the ECP5 configuration) has its own read address
        and takes the LOAD write a cycle later, from registers: the chunk's address, data and enables reach
        every block RAM of the memory from flip-flops (no unit reads a memory while it is loaded)."""
        for i, (lm, _) in enumerate(load_images(self.prog)):
            width = _padded(lm.width)
            sel = port.ld_en & (port.ld_sel == i)
            if lm.name == "desc" and self.prog.params.desc_fetch == "serial":   # chunk k of item a: word a*W + k
                wp = mem["desc"].write_port()
                m.d.comb += [wp.addr.eq(times_const(port.ld_addr, desc_words()) + port.ld_chunk),
                             wp.data.eq(port.ld_data), wp.en.eq(sel)]
                continue
            if isinstance(mem[lm.name], SPRAM):     # one port: the LOAD's address while loading, else the unit's
                ram = mem[lm.name]
                chunk_en = (Const(1, max(1, width // CHUNK)) << port.ld_chunk)
                m.d.comb += [unit_addr.eq(Mux(sel, port.ld_addr, self.units["conv"].wgt_addr)), ram.addr.eq(unit_addr),
                             ram.wdata.eq(Cat([port.ld_data] * max(1, width // CHUNK))),
                             ram.wen.eq(Mux(sel, Cat(*[chunk_en[s * 16 // CHUNK] for s in range(ram.slices)]), 0))]
                continue
            if isinstance(mem[lm.name], RegisteredMemory):
                ram = mem[lm.name]
                wp = SimpleNamespace(addr=Signal.like(ram.waddr, name=f"{lm.name}_ld_addr"),
                                     data=Signal.like(ram.wdata, name=f"{lm.name}_ld_data"),
                                     en=Signal.like(ram.wen, name=f"{lm.name}_ld_en"))
                m.d.sync += [ram.waddr.eq(wp.addr), ram.wdata.eq(wp.data), ram.wen.eq(wp.en)]
            elif width > CHUNK:
                wp = mem[lm.name].write_port(granularity=CHUNK)
            else:
                wp = mem[lm.name].write_port()
            if width > CHUNK:
                m.d.comb += [wp.data.eq(Cat([port.ld_data] * (width // CHUNK))),
                             wp.en.eq(Mux(sel, Const(1, width // CHUNK) << port.ld_chunk, 0))]
            else:
                m.d.comb += [wp.data.eq(port.ld_data), wp.en.eq(sel)]
            if lm.name == "wgt" and not isinstance(mem[lm.name], RegisteredMemory):
                m.d.comb += unit_addr.eq(Mux(sel, port.ld_addr, self.units["conv"].wgt_addr))
                m.d.comb += wp.addr.eq(unit_addr)
            else:
                m.d.comb += wp.addr.eq(port.ld_addr)

    def _wire(self, m, mem, banks, port, seq, conv, setup, quant, vec):
        a = self.a
        L = a.cols
        if self.prog.params.desc_fetch == "serial":
            desc_rd = mem["desc"].read_port()
            m.submodules.fetch = fetch = DescFetch(desc_words(), mem["desc"].depth)
            m.d.comb += [desc_rd.addr.eq(fetch.rd_addr), fetch.rd_data.eq(desc_rd.data), fetch.pc.eq(seq.pc),
                         fetch.run.eq(seq.fetching), seq.desc_ready.eq(fetch.ready)]
            d = data.View(StepDesc, fetch.desc[:StepDesc.size])
        else:
            # the read is registered before any unit sees it (a block RAM's output is too slow to feed the
            # units' adders and compares): FETCH lasts two cycles, the read and the register
            # (RegisteredMemory: on ECP5 the block RAMs' output register is that register; in the ECP5
            # configuration the word is registered once more in the fabric, as it fans out to every unit:
            # FETCH three cycles, cycles.DESC_OUTREG)
            rdata = mem["desc"].rdata[:StepDesc.size]
            if self.registered_reads():
                desc_q = Signal(StepDesc.size)
                f1 = Signal()
                fetched = Signal()
                m.d.sync += [desc_q.eq(rdata), f1.eq(seq.fetching & ~f1 & ~fetched), fetched.eq(f1)]
                rdata = desc_q
            else:
                fetched = Signal()
                m.d.sync += fetched.eq(seq.fetching & ~fetched)
            m.d.comb += [mem["desc"].raddr.eq(seq.pc), seq.desc_ready.eq(fetched)]
            d = data.View(StepDesc, rdata)
        m.d.comb += [self.pc.eq(seq.pc), self.busy.eq(seq.busy)]
        pool = self.units.get("pool")
        m.d.comb += [conv.desc.eq(d.u.conv), quant.desc.eq(d.u.quant), vec.desc.eq(d.u.vec)]
        if pool is not None:
            m.d.comb += [pool.desc.eq(d.u.pool), pool.start.eq(seq.pool_start), seq.pool_done.eq(pool.done)]
        # the sequencer: step kinds, unit handshakes, betas
        m.d.comb += [seq.start.eq(port.seq_start), port.seq_done.eq(seq.done), port.seq_busy.eq(seq.busy),
                     seq.kind.eq(d.kind), seq.beta_slot.eq(d.beta_slot),
                     quant.start.eq(seq.quant_start), setup.start.eq(seq.setup_start), conv.start.eq(seq.conv_start),
                     vec.start.eq(seq.vec_start), seq.quant_done.eq(quant.done), seq.setup_done.eq(setup.done),
                     seq.conv_done.eq(conv.done), seq.vec_done.eq(vec.done), seq.quant_beta.eq(quant.beta),
                     setup.beta.eq(seq.setup_beta), port.overflow.eq(setup.overflow)]
        m.d.comb += [setup.m_addr.eq(d.m_addr), setup.c_addr.eq(d.u.conv.c_addr), setup.tiles_c.eq(d.u.conv.tiles_c),
                     setup.cout.eq(d.cout)]
        # ConvUnit: code banks (written by the host's pixels or the QuantStep), weights, requantization words
        for r, bank in enumerate(banks + ([mem["bank_dbg"]] if "bank_dbg" in mem else [])):
            rd, w = bank.read_port(), bank.write_port()
            if r < len(banks):
                m.d.comb += [rd.addr.eq(conv.code_addr[r]), conv.code_data[r].eq(rd.data)]
            m.d.comb += [w.addr.eq(Mux(port.pix_en, port.pix_addr, quant.code_addr)),
                         w.data.eq(Mux(port.pix_en, port.pix_data, quant.code_data)),
                         w.en.eq(port.pix_en | quant.code_en)]
        debug_code_rd = mem.get("bank_dbg", banks[0]).read_port()
        m.d.comb += [debug_code_rd.addr.eq(port.rd_addr), port.code_data.eq(debug_code_rd.data)]
        wgt_addr = Signal.like(conv.wgt_addr)
        if isinstance(mem["wgt"], SPRAM):
            m.d.comb += conv.wgt_data.eq(mem["wgt"].rdata)
        else:       # a RegisteredMemory reads at the unit's own (registered) address
            wrd = mem["wgt"].read_port()
            rd_addr = conv.wgt_addr if isinstance(mem["wgt"], RegisteredMemory) else wgt_addr
            m.d.comb += [wrd.addr.eq(rd_addr), conv.wgt_data.eq(wrd.data)]
        self._load_ports(m, mem, port, wgt_addr)
        rq_rd, rq_wr = mem["rq"].read_port(), mem["rq"].write_port()
        m.d.comb += [rq_rd.addr.eq(conv.const_addr), conv.const_data.eq(rq_rd.data),
                     rq_wr.addr.eq(setup.rq_addr), rq_wr.data.eq(setup.rq_data), rq_wr.en.eq(setup.rq_en)]
        ch_rd = mem["chan"].read_port()
        m.d.comb += [ch_rd.addr.eq(setup.ch_addr), setup.ch_data.eq(ch_rd.data)]
        # QuantStep: adapter constants (stored unsigned, two's complement; a weight word is L lanes, split
        # by the AdapterUnit)
        for name, addr, dat in (("aw", quant.w_addr, quant.w_data), ("ab", quant.b_addr, quant.b_data)):
            rd = mem[name].read_port()
            m.d.comb += [rd.addr.eq(addr), dat.eq(rd.data if name == "aw" else rd.data.as_signed())]
        # fine memory: port A (QuantStep, VectorUnit a, debug/logits), port B (VectorUnit b), one write
        fa, fw = mem["fine"].read_port(), mem["fine"].write_port()
        if "fine_b" in mem:
            fb, fw_b = mem["fine_b"].read_port(), mem["fine_b"].write_port()
        else:
            fb, fw_b = mem["fine"].read_port(), None
        for c in range(L):
            m.d.comb += [quant.fine_data[c].eq(fa.data[32 * c:32 * (c + 1)].as_signed()),
                         vec.a_data[c].eq(fa.data[32 * c:32 * (c + 1)].as_signed()),
                         vec.b_data[c].eq(fb.data[32 * c:32 * (c + 1)].as_signed())]
            if pool is not None:
                m.d.comb += pool.rd_data[c].eq(fa.data[32 * c:32 * (c + 1)].as_signed())
        idle_addr = port.rd_addr if pool is None else Mux(pool.busy, pool.rd_addr, port.rd_addr)
        m.d.comb += [fa.addr.eq(Mux(quant.busy, quant.fine_addr, Mux(vec.busy, vec.a_addr, idle_addr))),
                     port.fine_data.eq(fa.data), fb.addr.eq(vec.b_addr)]
        # the fine memory's writers, by priority: the ConvUnit, the MaxPoolUnit (if built), the VectorUnit
        w_addr, w_data, w_en = vec.out_addr, vec.out_data, conv.out_en | vec.out_en
        for unit in ([pool] if pool is not None else []) + [conv]:
            w_addr, w_data = Mux(unit.out_en, unit.out_addr, w_addr), Mux(unit.out_en, unit.out_data, w_data)
        if pool is not None:
            w_en = w_en | pool.out_en
        for w in (fw, fw_b) if fw_b is not None else (fw,):
            m.d.comb += [w.addr.eq(w_addr), w.data.eq(w_data), w.en.eq(w_en)]
