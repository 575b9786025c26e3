"""Formal harness: the ``Accelerator``'s stream-protocol controller against the protocol of docs/hardware.md.

Every input-stream word sequence from reset (legal and illegal commands, data words, any
``valid``/``ready`` timing), of any length: k-induction. A reference protocol parser in the harness,
written from the docs' command and flag tables, tracks which words are commands and which data, the
answers owed and the error flags the docs prescribe; the design is checked against it every cycle.
Invariants that tie the controller's state to the parser's make the induction close at k = 1, so
the proof is unbounded, and cheap enough to run at the shipped size. The mutants (planted reference
bugs) are found by BMC from reset, at the depth of the shortest command sequence that shows each.
"""

from amaranth.hdl import Assert, Assume, Elaboratable, Fragment, Module, Signal

from rootshift.hw import protocol as P
from rootshift.hw.accelerator import FSM_STATES, Accelerator
from rootshift.hw.params import PROTOCOL_VERSION, ArrayParams
from rootshift.hw.pe import PE_LATENCY
from rootshift.hw.requantizer import Requantizer


def stall_bound(p):
    """Most consecutive cycles a tile keeps the device neither ready for input nor offering output, exactly:
    ``K`` MAC cycles, 1 + ``PE_LATENCY`` to drain the PEs, one requantization per PE, ``LATENCY`` + 2 to
    flush the requantizer, and the first cycle back in ``IDLE`` (docs/hardware.md, "Protocol": ``START``).
    Exact: the k-induction's invariants pin every busy cycle of a tile to it."""
    return p.max_k + PE_LATENCY + p.rows * p.cols + Requantizer.LATENCY + 3


class ControllerHarness(Elaboratable):
    """Free ``valid``, ``payload`` (host to device) and ``o_ready`` every cycle. Asserted:

    * **answered, exactly**: ``o_stream.valid`` only while the reference owes words (``READ n``: ``n``, also
      when ``n`` is past the buffer; ``STATUS``: 3), and the device takes no input word while it owes an
      answer; a refused ``LOAD`` still takes its data words (the reference counts them as data);
    * **no deadlock**: the device is never, for more than :func:`stall_bound` cycles in a row, neither
      ready for input nor offering output (so every command is taken and every answer offered);
    * **error flags**: the first ``STATUS`` word equals ``MAGIC|version|flags`` with the flags the
      docs prescribe (docs/hardware.md, "Flags": bit 0 unknown opcode; bit 1 an argument out of range or
      ``START`` before a good ``CONFIG``; bit 2 ``START`` before ``K`` activation and weight words and a
      ``LOAD_REQ`` since ``CONFIG``; bit 3 ``READ`` before a ``START`` since ``CONFIG``; cleared by ``CLEAR``).

    ``invariants``: also assert how the controller's state (``Accelerator._probe``) matches the reference
    parser's in every cycle (which words are data, answers owed, flags, cycles of a tile so far). They
    are what makes the k-induction close: with them the properties hold for every sequence length.

    ``mutant`` (each must give a counterexample): ``"status"`` expects two ``STATUS`` words instead of
    three; ``"req"`` expects one word per ``LOAD_REQ`` column instead of ``n_acc + 2``; ``"stale"`` forgets
    ``FLAG_STALE_READ``; ``"loaded"`` lets ``START`` run without a ``LOAD_REQ``; ``"short"`` takes ``K - 1``
    loaded words as enough; ``"stall"`` forgets a tile's busy time (expects the device back within 2 cycles).
    """

    MUTANTS = (None, "status", "req", "stale", "loaded", "short", "stall")

    def __init__(self, params, mutant=None, invariants=False):
        if mutant not in self.MUTANTS:
            raise ValueError(f"unknown controller mutant {mutant!r}")
        self.p, self.mutant, self.invariants = params, mutant, invariants
        self.valid = Signal()
        self.payload = Signal(params.data_bits)
        self.o_ready = Signal()
        # the datapath and the buffers are cut free: the PE array's, the requantizer's and the memories'
        # outputs become arbitrary values every cycle, so the controller is proven for any datapath and
        # buffer contents (no property reads them), and the solver's problem stays small
        self.yosys_pre = ("hierarchy -top top",
                          "cutpoint top.dut.array top.dut.requant top.dut.act_mem top.dut.wgt_mem top.dut.req_mem "
                          "top.dut.out_mem")

    def ports(self):
        return [self.valid, self.payload, self.o_ready]

    def elaborate(self, platform):
        m = Module()
        p, mu = self.p, self.mutant
        dut = Accelerator(p)
        m.submodules.dut = Fragment.get(dut, platform)   # elaborated here, so its ``_probe`` exists below
        ist, ost = dut.i_stream, dut.o_stream
        m.d.comb += [ist.valid.eq(self.valid), ist.payload.eq(self.payload), ost.ready.eq(self.o_ready)]
        take_in = ist.valid & ist.ready
        take_out = ost.valid & ost.ready

        n_out = p.rows * p.cols
        wpc = 1 if mu == "req" else p.n_acc + 2
        n_status = 2 if mu == "status" else 3
        bound = 2 if mu == "stall" else stall_bound(p)
        word = self.payload[:32]
        op, n, shift = word[28:32], word[0:16], word[16:22]

        data_left = Signal(range(0xFFFF * (p.n_acc + 2) + 1))   # a refused LOAD still takes its n words
        owed = Signal(16)                                           # a READ is answered, n words, always
        status_idx = Signal(2)
        answering_status = Signal()
        flags = Signal(8)
        configured = Signal()
        k = Signal(range(p.max_k + 1))                          # K of the last good CONFIG
        act_ok, wgt_ok, req_ok, out_ok = Signal(), Signal(), Signal(), Signal()
        enough = (n + 1 >= k) if mu == "short" else (n >= k)
        loaded = (act_ok & wgt_ok) if mu == "loaded" else (act_ok & wgt_ok & req_ok)

        with m.If(take_in):
            with m.If(data_left != 0):
                m.d.sync += data_left.eq(data_left - 1)
            with m.Else():
                with m.Switch(op):
                    with m.Case(P.OP_CLEAR):
                        m.d.sync += flags.eq(0)
                    with m.Case(P.OP_CONFIG):
                        with m.If((n == 0) | (n > p.max_k) | (shift == 0)):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.Else():
                            m.d.sync += [configured.eq(1), k.eq(n), act_ok.eq(0), wgt_ok.eq(0), req_ok.eq(0),
                                         out_ok.eq(0)]
                    with m.Case(P.OP_LOAD_ACT, P.OP_LOAD_WGT):
                        m.d.sync += data_left.eq(n)
                        with m.If(n > p.max_k):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.Else():
                            with m.If(op == P.OP_LOAD_ACT):
                                m.d.sync += act_ok.eq(enough)
                            with m.Else():
                                m.d.sync += wgt_ok.eq(enough)
                    with m.Case(P.OP_LOAD_REQ):
                        m.d.sync += data_left.eq(n * wpc)
                        with m.If(n > p.cols):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.Elif(n != 0):
                            m.d.sync += req_ok.eq(1)
                    with m.Case(P.OP_START):
                        with m.If(~configured):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.Elif(~loaded):
                            m.d.sync += flags.eq(flags | P.FLAG_NOT_LOADED)
                        with m.Else():
                            m.d.sync += out_ok.eq(1)
                    with m.Case(P.OP_READ):
                        with m.If((n == 0) | (n > n_out)):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.If(n != 0):
                            m.d.sync += [owed.eq(n), answering_status.eq(0)]
                            with m.If(~out_ok & (mu != "stale")):
                                m.d.sync += flags.eq(flags | P.FLAG_STALE_READ)
                    with m.Case(P.OP_STATUS):
                        m.d.sync += [owed.eq(n_status), answering_status.eq(1), status_idx.eq(0)]
                    with m.Default():
                        m.d.sync += flags.eq(flags | P.FLAG_BAD_OPCODE)
        with m.If(take_out & (owed != 0)):
            m.d.sync += [owed.eq(owed - 1), status_idx.eq(status_idx + 1)]

        stall = Signal(range(stall_bound(p) + 2))
        with m.If(ist.ready | ost.valid):
            m.d.sync += stall.eq(0)
        with m.Elif(stall <= bound):
            m.d.sync += stall.eq(stall + 1)

        if mu is not None:
            # a mutant needs one counterexample, and commands with n < 8 show every one: the solver then
            # searches a small space (an assumption can only hide counterexamples, never make one)
            m.d.comb += Assume(~(take_in & (data_left == 0)) | (n < 8))

        status0 = (P.MAGIC << 16) | (PROTOCOL_VERSION << 8)
        m.d.comb += [
            Assert(~ost.valid | (owed != 0), "an answer word only when one is owed"),
            Assert(~ist.ready | (owed == 0), "no input taken while an answer is owed"),
            Assert(stall <= bound, "never stalled longer than one tile"),
            Assert(~(take_out & answering_status & (status_idx == 0)) | (ost.payload == (status0 | flags)),
                   "STATUS reports the flags the protocol prescribes"),
        ]
        if self.invariants:
            self._invariants(m, dut._probe, data_left, owed, status_idx, answering_status, flags, configured, k,
                             (act_ok, wgt_ok, req_ok, out_ok), stall, wpc)
        return m

    def _invariants(self, m, s, data_left, owed, status_idx, answering, flags, configured, k, oks, stall, wpc):
        """The controller's state as a function of the reference's: inductive, so k-induction closes."""
        p = self.p
        n_out = p.rows * p.cols
        busy0 = s["k_last"] + 1                 # stall count when DRAIN starts (K MAC cycles)
        busy1 = busy0 + PE_LATENCY + 1          # ... when REQUANT starts
        busy2 = busy1 + n_out                   # ... when FLUSH starts
        moving = s["LOAD_ACT"] | s["LOAD_WGT"] | s["LOAD_REQ"] | s["READ"] | s["STATUS"]
        m.d.comb += [
            Assert(sum(s[name] for name in FSM_STATES) == 1, "inv: one FSM state"),
            Assert((s["flags"] == flags) & (s["configured"] == configured), "inv: flags, configured"),
            Assert(~configured | (s["k_last"] + 1 == k) & (k != 0), "inv: K"),
            Assert(s["k_last"] < p.max_k, "inv: K range"),
            # before the first good CONFIG the load bits are never read (START is refused), so only then
            Assert(~configured | (s["act_ok"] == oks[0]) & (s["wgt_ok"] == oks[1]), "inv: K words loaded since CONFIG"),
            Assert((s["req_ok"] == oks[2]) & (s["out_ok"] == oks[3]), "inv: LOAD_REQ and START since CONFIG"),
            Assert(~s["IDLE"] | (data_left == 0) & (owed == 0), "inv: IDLE owes nothing"),
            Assert(~(s["LOAD_ACT"] | s["LOAD_WGT"]) | (s["cnt"] <= s["n_last"])
                   & (s["skip"] == (s["n_last"] >= p.max_k)) & (data_left == s["n_last"] - s["cnt"] + 1) & (owed == 0),
                   "inv: LOAD_ACT/WGT words left"),
            Assert(~s["LOAD_REQ"] | (s["col"] <= s["n_last"]) & (s["skip"] == (s["n_last"] >= p.cols))
                   & (s["widx"] < wpc) & (data_left == (s["n_last"] - s["col"]) * wpc + wpc - s["widx"]) & (owed == 0),
                   "inv: LOAD_REQ words left"),
            Assert(~s["READ"] | (s["cnt"] <= s["n_last"]) & (s["n_last"] != 0xFFFF) & (data_left == 0)
                   & (owed == s["n_last"] - s["cnt"] + 1) & ~answering, "inv: READ words owed"),
            Assert(~s["STATUS"] | (s["cnt"] <= 2) & (data_left == 0) & (owed == 3 - s["cnt"]) & answering
                   & (status_idx == s["cnt"]), "inv: STATUS words owed"),
            Assert(~moving | (stall == 0), "inv: no stall while loading or answering"),
            Assert(~s["COMPUTE"] | (s["cnt"] <= s["k_last"]) & (stall == s["cnt"]) & (data_left == 0) & (owed == 0),
                   "inv: COMPUTE"),
            Assert(~s["DRAIN"] | (s["wait"] <= PE_LATENCY) & (stall == busy0 + s["wait"]) & (data_left == 0)
                   & (owed == 0), "inv: DRAIN"),
            Assert(~s["REQUANT"] | (s["cnt"] < n_out) & (stall == busy1 + s["cnt"]) & (data_left == 0) & (owed == 0),
                   "inv: REQUANT"),
            Assert(~s["FLUSH"] | (s["wait"] <= Requantizer.LATENCY + 1) & (stall == busy2 + s["wait"])
                   & (data_left == 0) & (owed == 0), "inv: FLUSH"),
        ]


def small_params(pe="dual"):
    """The smallest array the generator builds (2x2, K <= 2, 3-bit weight and 2-bit activation codes): the
    controller's logic is the same at every size, and the mutants' counterexamples stay short."""
    base = "2" if pe == "shift" else "sqrt2"
    return ArrayParams(wbits=3, abits=2, base=base, pe=pe, rows=2, cols=2, max_k=2)


def shipped_params():
    """The configuration that runs the digits ResNet-8 (docs/hardware.md, "Baseline"): W8A8 dual, 8x8, max_k 576."""
    return ArrayParams(wbits=8, abits=8, base="sqrt2", pe="dual", rows=8, cols=8, max_k=576)


# (mutant, what it plants, BMC depth that reaches its counterexample: the shortest command sequence that
# shows it, e.g. "short": CONFIG K=2, LOAD_ACT 1 + 1 word, LOAD_WGT 2 + 2, LOAD_REQ 1 + n_acc+2, START, STATUS)
_MUTANTS = {
    "status": ("reference expects 2 STATUS words, not 3", 8),
    "req": ("reference expects 1 word per LOAD_REQ column, not n_acc + 2", 8),
    "stale": ("reference forgets FLAG_STALE_READ (READ before START)", 6),
    "loaded": ("reference lets START run without LOAD_REQ", 10),
    "short": ("reference takes K - 1 loaded words as enough", 14),
    "stall": ("reference forgets a tile's busy time: expects the device back 2 cycles after START", 15),
}


def proofs():
    from .proofs import Mutant, Proof

    def mutant(p, name):
        what, depth = _MUTANTS[name]
        # a deep counterexample: skip the shallower steps (the free host can idle first, so one that
        # appears earlier also appears at the last steps)
        return Mutant(name, what, lambda: ControllerHarness(p, name), "bmc", depth, skip=depth - 2 if depth > 10 else 0)

    out = []
    for tag, p, names, fast in (("dual", small_params("dual"), ("status", "req", "stale", "loaded"), True),
                                ("shift", small_params("shift"), ("short", "stall"), True),
                                ("dual_8x8", shipped_params(), ("stale",), True)):
        out.append(Proof(
            f"controller_{tag}",
            f"Accelerator controller ({p.pe}, {p.rows}x{p.cols}, max_k {p.max_k}, datapath and buffers cut free), "
            f"every input word sequence of any length from reset: every answer owed is offered and only then "
            f"(READ n: n words, STATUS: 3), no input taken while owing one, never stalled over {stall_bound(p)} cycles "
            f"(one tile), STATUS flags exactly as docs/hardware.md prescribes for every illegal command",
            lambda p=p: ControllerHarness(p, invariants=True), "prove", 1,
            tuple(mutant(p, name) for name in names), fast=fast))
    return out
