"""Engine: the whole network on chip. Pixels in, logits out; a sequencer walks the program's steps."""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C
from rootshift.sw.errors import ConfigError

from ..params import BIAS_BITS, M_BITS
from .conv_unit import ConvUnit, const_word_bits, hw_bias
from .desc import ConvDesc, QuantDesc, VecDesc, gap_shift
from .mult_setup import MultSetup
from .quant_step import QuantStep
from .vector_unit import VectorUnit

ENGINE_PROTOCOL_VERSION = 2
OP_CLEAR, OP_INFER, OP_READ_FINE, OP_READ_CODES, OP_STATUS = 0x0, 0x2, 0x3, 0x4, 0x7
MAGIC = 0x5245                    # "RE": the engine (the tile engine answers 0x5253)
FLAG_BAD_OPCODE, FLAG_M_OVERFLOW = 1, 4
KIND = {"input": 0, "quant": 1, "conv": 2, "linear": 2, "add_relu": 3, "avgpool": 3}

StepDesc = data.StructLayout({"kind": unsigned(2), "beta_slot": signed(8), "m_addr": unsigned(16), "cout": unsigned(16),
                              "conv": ConvDesc, "quant": QuantDesc, "vec": VecDesc})


def rtl_check(program):
    """Refuse, naming the step, what the RTL engine does not run yet (the reference executor runs it all)."""
    for s in program.steps:
        if s["kind"] == "maxpool":
            raise ConfigError(f"layer {s['name']}: maxpool is not in the RTL engine yet")
        if s["kind"] == "quant" and s["adapter"] and gap_shift(s["adapter"]["gap_n"]) is None:
            raise ConfigError(f"layer {s['name']}: the RTL GAP needs H*W a power of two, not {s['adapter']['gap_n']}")
        if s["kind"] == "avgpool" and gap_shift(s["n"]) is None:
            raise ConfigError(f"layer {s['name']}: the RTL average pool needs H*W a power of two, not {s['n']}")


def images(program):
    """Memory images of a program: descriptors, per-channel constants (``M_base``s and the bias with the
    rounding half folded in), adapter weights and biases."""
    a = program.params.array
    cw = a.n_acc * M_BITS + BIAS_BITS
    desc, chan, aw, ab = [], [], [], []
    for s in program.steps:
        d = {"kind": KIND[s["kind"]], "beta_slot": s.get("beta_slot", -1), "m_addr": s.get("m_addr", 0),
             "cout": s.get("cout", 0)}
        if s["kind"] in ("conv", "linear"):
            d["conv"] = s["desc"]
            for ch in range(s["cout"]):
                w = 0
                for i, mb in enumerate(s["m_base"]):
                    w |= (int(mb[ch]) & 0xFFFFFFFF) << (i * M_BITS)
                w |= (hw_bias(int(s["bias"][ch]), s["shift"]) & ((1 << BIAS_BITS) - 1)) << (a.n_acc * M_BITS)
                chan.append(w)
        elif s["kind"] == "quant":
            d["quant"] = s["desc"]
            ad = s["adapter"]
            if ad:
                if ad["hidden"]:
                    aw += [int(v) for v in ad["w1"].reshape(-1)]
                    ab += [int(v) for v in ad["b1"]]
                aw += [int(v) for v in ad["w2"].reshape(-1)]
                ab += [int(v) for v in ad["b2"]]
        elif s["kind"] in ("add_relu", "avgpool"):
            d["vec"] = s["desc"]
        desc.append(StepDesc.const(d).as_value().value)
    assert all(0 <= w < 1 << cw for w in chan)
    return desc, chan, aw or [0], ab or [0]


class Engine(wiring.Component):
    """Runs a compiled :class:`~rootshift.hw.engine.program.Program` (baked into memory inits) with no
    host involvement between the pixels and the logits (docs/engine.md, "Engine"):

    ``INFER`` -> the pixel words go straight into every code bank -> for each step: ``quant``
    (:class:`QuantStep`, beta into its slot), ``conv``/``linear`` (:class:`MultSetup` for the sample's
    multipliers, then :class:`ConvUnit`), ``add_relu``/``avgpool`` (:class:`VectorUnit`) -> the logits
    leave on ``o_stream``, one 32-bit word per class. ``READ_FINE n`` / ``READ_CODES n`` then an address
    word: the debug read of any buffer (compile with ``debug`` to keep every layer). ``STATUS``:
    ``MAGIC << 16 | version << 8 | flags``, cycles of the last image, total cycles.

    Members
    -------
    i_stream : In(stream.Signature(max(32, cols * abits)))
    o_stream : Out(stream.Signature(32))
    busy : Out(1)
    """

    def __init__(self, program):
        from .program import Program

        if not isinstance(program, Program):
            raise TypeError(f"program must be a compiled Program (hw.engine.compiler.compile_model), not {program!r}")
        rtl_check(program)
        self.prog = program
        a = program.params.array
        self.a = a
        self.data_bits = max(32, a.cols * a.abits)
        super().__init__({"i_stream": In(stream.Signature(self.data_bits)), "o_stream": Out(stream.Signature(32)),
                          "busy": Out(1)})
        self.pc = Signal(16)                       # the step being run (for debugging and test benches)

    def _words(self, kind):
        return max(2, max((t["addr"] + t["words"] for t in self.prog.tensors.values() if t["kind"] == kind), default=0))

    def elaborate(self, platform):
        m = Module()
        prog, a = self.prog, self.a
        L = a.cols
        desc_img, chan_img, aw_img, ab_img = images(prog)
        wl = prog.weight_lanes({"wgt_addr": 0, "wgt_words": len(prog.weights) // prog.wgt_word_bytes})
        wgt_img = [sum(int(v) << (a.wbits * c) for c, v in enumerate(row)) for row in wl] or [0]
        mem = {}
        m.submodules.desc = mem["desc"] = Memory(shape=StepDesc.size, depth=max(2, len(desc_img)), init=desc_img)
        m.submodules.wgt = mem["wgt"] = Memory(shape=L * a.wbits, depth=max(2, len(wgt_img)), init=wgt_img)
        n_rq = max(2, sum(s["tiles_c"] for s in prog.steps if s["kind"] in ("conv", "linear")))
        m.submodules.rq = mem["rq"] = Memory(shape=const_word_bits(a), depth=n_rq, init=[])
        m.submodules.chan = mem["chan"] = Memory(shape=a.n_acc * M_BITS + BIAS_BITS, depth=max(2, len(chan_img)),
                                                 init=chan_img)
        m.submodules.aw = mem["aw"] = Memory(shape=signed(16), depth=max(2, len(aw_img)), init=aw_img)
        m.submodules.ab = mem["ab"] = Memory(shape=signed(64), depth=max(2, len(ab_img)), init=ab_img)
        m.submodules.fine = mem["fine"] = Memory(shape=32 * L, depth=self._words("fine"), init=[])
        banks = []
        for r in range(a.rows):
            m.submodules[f"bank{r}"] = bank = Memory(shape=L * a.abits, depth=self._words("codes"), init=[])
            banks.append(bank)
        max_ch = max([s["desc"]["channels"] for s in prog.steps if s["kind"] == "quant"] + [4])
        m.submodules.conv = conv = ConvUnit(a)
        m.submodules.setup = setup = MultSetup(a)
        m.submodules.quant = quant = QuantStep(L, a.abits, max_ch)
        m.submodules.vec = vec = VectorUnit(L)
        self.units = {"conv": conv, "setup": setup, "quant": quant, "vec": vec}
        self._wire(m, mem, banks, conv, setup, quant, vec)
        return m

    def _wire(self, m, mem, banks, conv, setup, quant, vec):
        prog, a = self.prog, self.a
        L = a.cols
        desc_rd = mem["desc"].read_port()
        d = data.View(StepDesc, desc_rd.data)
        pc = self.pc
        m.d.comb += desc_rd.addr.eq(pc)
        m.d.comb += [conv.desc.eq(d.conv), quant.desc.eq(d.quant), vec.desc.eq(d.vec)]
        # ConvUnit: code banks, weights, requantization words
        code_w = []
        for r, bank in enumerate(banks):
            rd = bank.read_port()
            m.d.comb += [rd.addr.eq(conv.code_addr[r]), conv.code_data[r].eq(rd.data)]
            code_w.append(bank.write_port())
        debug_code_rd = banks[0].read_port()
        wrd = mem["wgt"].read_port()
        m.d.comb += [wrd.addr.eq(conv.wgt_addr), conv.wgt_data.eq(wrd.data)]
        rq_rd, rq_wr = mem["rq"].read_port(), mem["rq"].write_port()
        m.d.comb += [rq_rd.addr.eq(conv.const_addr), conv.const_data.eq(rq_rd.data),
                     rq_wr.addr.eq(setup.rq_addr), rq_wr.data.eq(setup.rq_data), rq_wr.en.eq(setup.rq_en)]
        ch_rd = mem["chan"].read_port()
        m.d.comb += [ch_rd.addr.eq(setup.ch_addr), setup.ch_data.eq(ch_rd.data)]
        # QuantStep: adapter constants
        for name, addr, dat in (("aw", quant.w_addr, quant.w_data), ("ab", quant.b_addr, quant.b_data)):
            rd = mem[name].read_port()
            m.d.comb += [rd.addr.eq(addr), dat.eq(rd.data)]
        # fine memory: port A (QuantStep, VectorUnit a, debug/logits), port B (VectorUnit b), one write
        fa, fb, fw = mem["fine"].read_port(), mem["fine"].read_port(), mem["fine"].write_port()
        for c in range(L):
            m.d.comb += [quant.fine_data[c].eq(fa.data[32 * c:32 * (c + 1)].as_signed()),
                         vec.a_data[c].eq(fa.data[32 * c:32 * (c + 1)].as_signed()),
                         vec.b_data[c].eq(fb.data[32 * c:32 * (c + 1)].as_signed())]
        m.d.comb += fb.addr.eq(vec.b_addr)
        m.d.comb += [fw.addr.eq(Mux(conv.out_en, conv.out_addr, vec.out_addr)),
                     fw.data.eq(Mux(conv.out_en, conv.out_data, vec.out_data)), fw.en.eq(conv.out_en | vec.out_en)]
        self._control(m, d, pc, code_w, debug_code_rd, fa, conv, setup, quant, vec)

    def _control(self, m, d, pc, code_w, debug_code_rd, fa, conv, setup, quant, vec):
        prog, a = self.prog, self.a
        L = a.cols
        ist, ost = self.i_stream, self.o_stream
        op, arg = ist.payload[28:32], ist.payload[0:28]
        n_steps = len(prog.steps)
        slots = max(1, sum(1 for s in prog.steps if s["kind"] == "quant" and s["adapter"]))
        beta = Array(Signal(63, name=f"beta{i}") for i in range(slots))
        flags, cycles, total, img_cycles = Signal(8), Signal(32), Signal(32), Signal(32)
        m.d.sync += total.eq(total + 1)
        cnt, n, lane, addr = Signal(24), Signal(24), Signal(range(max(2, L))), Signal(16)
        pix = prog.tensors[next(s["out"] for s in prog.steps if s["kind"] == "input")]
        out = prog.tensors[prog.output]
        classes = out["shape"][0]
        code_sel = Signal()   # debug read of the code banks instead of the fine memory
        # code bank writes: the pixels (host) or the QuantStep
        host_w = Signal()
        for w in code_w:
            m.d.comb += [w.addr.eq(Mux(host_w, pix["addr"] + cnt, quant.code_addr)),
                         w.data.eq(Mux(host_w, ist.payload[:L * a.abits], quant.code_data)),
                         w.en.eq((host_w & ist.valid) | quant.code_en)]
        m.d.comb += [fa.addr.eq(Mux(quant.busy, quant.fine_addr, Mux(vec.busy, vec.a_addr, addr))),
                     debug_code_rd.addr.eq(addr)]
        m.d.comb += [setup.m_addr.eq(d.m_addr), setup.c_addr.eq(d.conv.c_addr), setup.tiles_c.eq(d.conv.tiles_c),
                     setup.cout.eq(d.cout),
                     setup.beta.eq(Mux(d.beta_slot < 0, 1 << C.FINE_FRAC, beta[d.beta_slot[:max(1, (slots - 1).bit_length())]]))]
        with m.If(setup.overflow):
            m.d.sync += flags.eq(flags | FLAG_M_OVERFLOW)
        busy_state = Signal()
        m.d.comb += self.busy.eq(busy_state)
        with m.If(busy_state):
            m.d.sync += cycles.eq(cycles + 1)
        word_lanes = Array(fa.data[32 * c:32 * (c + 1)] for c in range(L))
        code_lanes = Array(debug_code_rd.data[a.abits * c:a.abits * (c + 1)] for c in range(L))
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += ist.ready.eq(1)
                with m.If(ist.valid):
                    m.d.sync += [cnt.eq(0), n.eq(arg[0:16]), lane.eq(0)]
                    with m.Switch(op):
                        with m.Case(OP_CLEAR):
                            m.d.sync += [flags.eq(0), total.eq(0), img_cycles.eq(0)]
                        with m.Case(OP_INFER):
                            m.d.sync += cycles.eq(0)
                            m.next = "PIXELS"
                        with m.Case(OP_READ_FINE, OP_READ_CODES):
                            m.d.sync += code_sel.eq(op == OP_READ_CODES)
                            m.next = "READ_ADDR"
                        with m.Case(OP_STATUS):
                            m.next = "STATUS"
                        with m.Default():
                            m.d.sync += flags.eq(flags | FLAG_BAD_OPCODE)
            with m.State("PIXELS"):
                m.d.comb += [ist.ready.eq(1), host_w.eq(1)]
                with m.If(ist.valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == pix["words"] - 1):
                        m.d.sync += pc.eq(0)
                        m.next = "FETCH"
            with m.State("FETCH"):          # the descriptor memory answers next cycle
                m.d.comb += busy_state.eq(1)
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += busy_state.eq(1)
                with m.Switch(d.kind):
                    with m.Case(0):
                        m.next = "NEXT"
                    with m.Case(1):
                        m.d.comb += quant.start.eq(1)
                        m.next = "QUANT"
                    with m.Case(2):
                        m.d.comb += setup.start.eq(1)
                        m.next = "SETUP"
                    with m.Case(3):
                        m.d.comb += vec.start.eq(1)
                        m.next = "VEC"
            with m.State("QUANT"):
                m.d.comb += busy_state.eq(1)
                with m.If(quant.done):
                    with m.If(d.beta_slot >= 0):
                        m.d.sync += beta[d.beta_slot[:max(1, (slots - 1).bit_length())]].eq(quant.beta)
                    m.next = "NEXT"
            with m.State("SETUP"):
                m.d.comb += busy_state.eq(1)
                with m.If(setup.done):
                    m.d.comb += conv.start.eq(1)
                    m.next = "CONV"
            with m.State("CONV"):
                m.d.comb += busy_state.eq(1)
                with m.If(conv.done):
                    m.next = "NEXT"
            with m.State("VEC"):
                m.d.comb += busy_state.eq(1)
                with m.If(vec.done):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += busy_state.eq(1)
                m.d.sync += pc.eq(pc + 1)
                with m.If(pc == n_steps - 1):
                    m.d.sync += [addr.eq(out["addr"]), lane.eq(0), cnt.eq(0)]
                    m.next = "LOGITS_READ"
                with m.Else():
                    m.next = "FETCH"
            with m.State("LOGITS_READ"):
                m.d.sync += img_cycles.eq(cycles)
                m.next = "LOGITS"
            with m.State("LOGITS"):       # word addr is on the read port; send lanes < classes
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(word_lanes[lane])]
                with m.If(ost.ready):
                    m.d.sync += [lane.eq(lane + 1), cnt.eq(cnt + 1)]
                    with m.If(cnt == classes - 1):
                        m.next = "IDLE"
                    with m.Elif(lane == L - 1):
                        m.d.sync += [lane.eq(0), addr.eq(addr + 1)]
                        m.next = "LOGITS_READ"
            with m.State("READ_ADDR"):
                m.d.comb += ist.ready.eq(1)
                with m.If(ist.valid):
                    m.d.sync += addr.eq(ist.payload[0:16])
                    m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.next = "READ"
            with m.State("READ"):          # n words, each as lanes 32-bit answers (codes zero-extended)
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(Mux(code_sel, code_lanes[lane], word_lanes[lane]))]
                with m.If(ost.ready):
                    m.d.sync += lane.eq(lane + 1)
                    with m.If(lane == L - 1):
                        m.d.sync += [lane.eq(0), addr.eq(addr + 1), cnt.eq(cnt + 1)]
                        with m.If(cnt == n - 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "READ_WAIT"
            with m.State("STATUS"):
                status = Array([Const(MAGIC << 16 | ENGINE_PROTOCOL_VERSION << 8, 32) | flags, img_cycles, total])
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(status[cnt[:2]])]
                with m.If(ost.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 2):
                        m.next = "IDLE"
