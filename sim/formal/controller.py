"""Formal harness: the ``Accelerator``'s stream-protocol controller against the protocol of docs/hardware.md.

Bounded model checking from reset over every input-stream word sequence (legal and illegal commands,
data words, any ``valid``/``ready`` timing). A reference protocol parser in the harness, written from
the docs' command table, tracks which words are commands and which data, the answers owed and the
error flags the docs prescribe; the design is checked against it every cycle.
"""

from amaranth.hdl import Assert, Elaboratable, Module, Signal

from rootshift.hw import protocol as P
from rootshift.hw.accelerator import Accelerator
from rootshift.hw.params import PROTOCOL_VERSION, ArrayParams
from rootshift.hw.pe import PE_LATENCY
from rootshift.hw.requantizer import Requantizer


def stall_bound(p):
    """Most consecutive cycles a tile may keep the device neither ready for input nor offering output:
    ``K`` MAC cycles, the PE pipeline, one requantization per PE and the requantizer's pipeline, plus
    a few cycles of control (docs/hardware.md, "Protocol": ``START``)."""
    return p.max_k + PE_LATENCY + p.rows * p.cols + Requantizer.LATENCY + 4


class ControllerHarness(Elaboratable):
    """Free ``valid``, ``payload`` (host to device) and ``o_ready`` every cycle. Asserted:

    * **no spurious answer**: ``o_stream.valid`` only while the reference owes words (``READ n``: ``n``,
      ``STATUS``: 3), and the device takes no input word while it owes an answer;
    * **no deadlock**: the device is never, for more than :func:`stall_bound` cycles in a row, neither
      ready for input nor offering output (so every command is taken and every answer offered);
    * **error flags**: the first ``STATUS`` word equals ``MAGIC|version|flags`` with the flags the
      docs prescribe for the commands so far (bit 0: unknown opcode; bit 1: an argument out of range
      or ``START`` before a good ``CONFIG``; cleared by ``CLEAR``).

    ``mutant``: ``"status"`` expects two ``STATUS`` words instead of three; ``"req"`` expects one word per
    ``LOAD_REQ`` column instead of ``n_acc + 2``.
    """

    def __init__(self, params, mutant=None):
        if mutant not in (None, "status", "req"):
            raise ValueError(f"unknown controller mutant {mutant!r}")
        self.p, self.mutant = params, mutant
        self.valid = Signal()
        self.payload = Signal(params.data_bits)
        self.o_ready = Signal()
        # the datapath is cut free: the PE array's and the requantizer's outputs become arbitrary values
        # every cycle, so the controller is proven for any datapath (and the BMC stays small)
        self.yosys_pre = ("hierarchy -top top", "cutpoint top.dut.array top.dut.requant")

    def ports(self):
        return [self.valid, self.payload, self.o_ready]

    def elaborate(self, platform):
        m = Module()
        p = self.p
        m.submodules.dut = dut = Accelerator(p)
        ist, ost = dut.i_stream, dut.o_stream
        m.d.comb += [ist.valid.eq(self.valid), ist.payload.eq(self.payload), ost.ready.eq(self.o_ready)]
        take_in = ist.valid & ist.ready
        take_out = ost.valid & ost.ready

        n_out = p.rows * p.cols
        wpc = 1 if self.mutant == "req" else p.n_acc + 2
        n_status = 2 if self.mutant == "status" else 3
        word = self.payload[:32]
        op, n, shift = word[28:32], word[0:16], word[16:22]

        data_left = Signal(range(max(p.max_k, p.cols * (p.n_acc + 2)) + 1))
        owed = Signal(range(max(n_out, 3) + 1))
        status_idx = Signal(2)
        answering_status = Signal()
        flags = Signal(8)
        configured = Signal()

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
                            m.d.sync += configured.eq(1)
                    with m.Case(P.OP_LOAD_ACT, P.OP_LOAD_WGT):
                        with m.If(n > p.max_k):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.Else():
                            m.d.sync += data_left.eq(n)
                    with m.Case(P.OP_LOAD_REQ):
                        with m.If(n > p.cols):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.Else():
                            m.d.sync += data_left.eq(n * wpc)
                    with m.Case(P.OP_START):
                        with m.If(~configured):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                    with m.Case(P.OP_READ):
                        with m.If((n == 0) | (n > n_out)):
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                        with m.Else():
                            m.d.sync += [owed.eq(n), answering_status.eq(0)]
                    with m.Case(P.OP_STATUS):
                        m.d.sync += [owed.eq(n_status), answering_status.eq(1), status_idx.eq(0)]
                    with m.Default():
                        m.d.sync += flags.eq(flags | P.FLAG_BAD_OPCODE)
        with m.If(take_out & (owed != 0)):
            m.d.sync += [owed.eq(owed - 1), status_idx.eq(status_idx + 1)]

        stall = Signal(range(stall_bound(p) + 2))
        with m.If(ist.ready | ost.valid):
            m.d.sync += stall.eq(0)
        with m.Elif(stall <= stall_bound(p)):
            m.d.sync += stall.eq(stall + 1)

        status0 = (P.MAGIC << 16) | (PROTOCOL_VERSION << 8)
        m.d.comb += [
            Assert(~ost.valid | (owed != 0), "an answer word only when one is owed"),
            Assert(~ist.ready | (owed == 0), "no input taken while an answer is owed"),
            Assert(stall <= stall_bound(p), "never stalled longer than one tile"),
            Assert(~(take_out & answering_status & (status_idx == 0)) | (ost.payload == (status0 | flags)),
                   "STATUS reports the flags the protocol prescribes"),
        ]
        return m


def small_params(pe="dual"):
    """The smallest array the generator builds (2x2, K <= 2, 3-bit weight and 2-bit activation codes): the controller's logic is
    the same at every size, and it keeps the BMC short."""
    base = "2" if pe == "shift" else "sqrt2"
    return ArrayParams(wbits=3, abits=2, base=base, pe=pe, rows=2, cols=2, max_k=2)


def proofs():
    from .proofs import Mutant, Proof

    out = []
    for pe, depth, fast, tag in (("dual", 10, True, ""), ("shift", 10, False, ""), ("dual", 14, False, "_d14")):
        p = small_params(pe)
        out.append(Proof(
            f"controller_{pe}{tag}",
            f"Accelerator controller ({pe}, {p.rows}x{p.cols}, max_k {p.max_k}, datapath cut free), every input word "
            f"sequence for {depth} cycles from reset: answers only when owed and before the next command, never "
            f"stalled over {stall_bound(p)} cycles, STATUS flags exactly as docs/hardware.md prescribes",
            lambda p=p: ControllerHarness(p), "bmc", depth,
            (Mutant("status", "reference expects 2 STATUS words, not 3", lambda p=p: ControllerHarness(p, "status"),
                    "bmc", 8),
             Mutant("req", "reference expects 1 word per LOAD_REQ column, not n_acc + 2",
                    lambda p=p: ControllerHarness(p, "req"), "bmc", 8)),
            fast=fast))
    return out
