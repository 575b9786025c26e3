"""Accelerator: the PE array, its buffers, the requantizer and the stream-protocol controller."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .params import BIAS_BITS, M_BITS, OUT_BITS, PROTOCOL_VERSION, ArrayParams
from .pe import PE_LATENCY
from .pe_array import PEArray
from .requantizer import Requantizer


FSM_STATES = ("IDLE", "LOAD_ACT", "LOAD_WGT", "LOAD_REQ", "COMPUTE", "DRAIN", "REQUANT", "FLUSH", "READ", "STATUS")


class Accelerator(wiring.Component):
    """One tile engine: the host loads a tile's activations (rows x K), weight codes (cols x K) and
    per-column requantization constants, starts it, and reads rows x cols fine outputs back.

    Every command and data word arrives on ``i_stream``; answers leave on ``o_stream``
    (docs/hardware.md, "Protocol"; constants in :mod:`hw.protocol`). ``i_stream.ready`` is low while a
    tile runs, which is the only flow control the host needs. A command the protocol does not allow
(unknown, out of range, or out of sequence) sets a bit of ``STATUS``'s flags and is ignored, except a
``READ`` out of sequence, which is flagged and still answered: the host never waits for words that
never come (docs/hardware.md, "Flags"; proven in sim/formal/controller.py).

    Members
    -------
    i_stream : In(stream.Signature(data_bits))
    o_stream : Out(stream.Signature(32))
    busy : Out(1)
    """

    def __init__(self, params: ArrayParams):
        if not isinstance(params, ArrayParams):
            raise TypeError(f"params must be ArrayParams, not {params!r}")
        self.p = params
        super().__init__({
            "i_stream": In(stream.Signature(params.data_bits)),
            "o_stream": Out(stream.Signature(OUT_BITS)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n_out = p.rows * p.cols
        wpc = p.n_acc + 2  # words per column in LOAD_REQ
        req_bits = p.n_acc * M_BITS + BIAS_BITS

        m.submodules.act_mem = act_mem = Memory(shape=unsigned(p.rows * p.abits), depth=p.max_k, init=[])
        m.submodules.wgt_mem = wgt_mem = Memory(shape=unsigned(p.cols * p.wbits), depth=p.max_k, init=[])
        m.submodules.req_mem = req_mem = Memory(shape=unsigned(req_bits), depth=p.cols, init=[])
        m.submodules.out_mem = out_mem = Memory(shape=unsigned(OUT_BITS), depth=n_out, init=[])
        act_w, act_r = act_mem.write_port(), act_mem.read_port()
        wgt_w, wgt_r = wgt_mem.write_port(), wgt_mem.read_port()
        req_w, req_r = req_mem.write_port(), req_mem.read_port()
        out_w, out_r = out_mem.write_port(), out_mem.read_port()

        m.submodules.array = arr = PEArray(p)
        m.submodules.requant = rq = Requantizer(p.acc_bits, p.n_acc)

        ist, ost = self.i_stream, self.o_stream
        op, arg = ist.payload[28:32], ist.payload[0:28]
        # comparisons against a run-time length use ``length - 1``, registered when the command is
        # accepted, so every ``cnt == last`` is an equality (a LUT tree, no carry chain: issue 9)
        k_last = Signal(16)
        configured = Signal()
        # what has happened since the last good CONFIG (docs/hardware.md, "Flags"): the last LOAD_ACT and
        # LOAD_WGT each carried at least K words, a LOAD_REQ came, a START ran. START needs the first three
        # (else FLAG_NOT_LOADED), READ the last (else FLAG_STALE_READ)
        act_ok = Signal()
        wgt_ok = Signal()
        req_ok = Signal()
        out_ok = Signal()
        # a refused LOAD (n past the buffer) still takes its n words, writing none, so the words after it
        # are read as commands again (the host stays in step); a refused READ n > rows*cols still sends n
        # words, zeros past the buffer (the host never waits for words that never come)
        skip = Signal()
        shift = Signal(range(64))
        relu = Signal()
        n_last = Signal(16)
        wait = Signal(range(max(PE_LATENCY, Requantizer.LATENCY + 1) + 1))
        cnt = Signal(16)
        flags = Signal(8)
        cycles = Signal(32)
        busy_cycles = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)

        # compute pipeline: memory read (1 cycle), then the PEs (PE_LATENCY)
        issue_valid = Signal()
        m.d.comb += [act_r.addr.eq(cnt), wgt_r.addr.eq(cnt)]
        # issue_valid is registered alongside the read address, so it lines up with the read data
        m.d.comb += [arr.valid.eq(issue_valid), arr.a.eq(act_r.data), arr.w.eq(wgt_r.data)]

        # requantization pipeline: the read-out chain's head and the column constants are registered
        # (1 cycle), then the Requantizer. Each REQUANT cycle shifts the chain by one PE.
        col = Signal(16)   # 16 bits: a refused LOAD_REQ n > cols still counts its n columns of words
        rq_issue = Signal()
        idx_pipe = [Signal(range(n_out), name=f"idx_{i}") for i in range(Requantizer.LATENCY + 1)]
        m.d.comb += [arr.drain.eq(rq_issue), req_r.addr.eq(col)]
        acc0_r = Signal.like(arr.acc0)
        acc1_r = Signal.like(arr.acc1)
        v_r = Signal()
        m.d.sync += [acc0_r.eq(arr.acc0), acc1_r.eq(arr.acc1), v_r.eq(rq_issue), idx_pipe[0].eq(cnt)]
        for a, b in zip(idx_pipe, idx_pipe[1:]):
            m.d.sync += b.eq(a)
        ms = [req_r.data[i * M_BITS:(i + 1) * M_BITS] for i in range(p.n_acc)]
        m.d.comb += [rq.acc0.eq(acc0_r), rq.acc1.eq(acc1_r), rq.m0.eq(ms[0].as_signed()),
                     rq.bias.eq(req_r.data[p.n_acc * M_BITS:].as_signed()), rq.shift.eq(shift), rq.relu.eq(relu),
                     rq.i_valid.eq(v_r)]
        if p.n_acc == 2:
            m.d.comb += rq.m1.eq(ms[1].as_signed())
        m.d.comb += [out_w.addr.eq(idx_pipe[-1]), out_w.data.eq(rq.y.as_unsigned()), out_w.en.eq(rq.o_valid)]

        # LOAD_REQ assembly: words of one column, written when its last word arrives
        words = Array(Signal(32, name=f"req_word_{i}") for i in range(wpc - 1))
        widx = Signal(range(wpc))

        status = Array([P.MAGIC << 16 | PROTOCOL_VERSION << 8 | flags, cycles, busy_cycles])
        handshake_out = ost.valid & ost.ready

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += ist.ready.eq(1)
                with m.If(ist.valid):
                    m.d.sync += [cnt.eq(0), n_last.eq(arg[0:16] - 1), col.eq(0), widx.eq(0)]
                    with m.Switch(op):
                        with m.Case(P.OP_CLEAR):
                            m.d.sync += [flags.eq(0), cycles.eq(0), busy_cycles.eq(0)]
                        with m.Case(P.OP_CONFIG):
                            with m.If((arg[0:16] == 0) | (arg[0:16] > p.max_k) | (arg[16:22] == 0)):
                                m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                            with m.Else():
                                m.d.sync += [k_last.eq(arg[0:16] - 1), configured.eq(1), shift.eq(arg[16:22]),
                                             relu.eq(arg[22]), act_ok.eq(0), wgt_ok.eq(0), req_ok.eq(0), out_ok.eq(0)]
                        with m.Case(P.OP_LOAD_ACT, P.OP_LOAD_WGT):
                            m.d.sync += skip.eq(arg[0:16] > p.max_k)
                            with m.If(arg[0:16] > p.max_k):
                                m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                            with m.Else():
                                # n > K - 1, i.e. n >= K: the words a START will read are all this load's
                                with m.If(op == P.OP_LOAD_ACT):
                                    m.d.sync += act_ok.eq(arg[0:16] > k_last)
                                with m.Else():
                                    m.d.sync += wgt_ok.eq(arg[0:16] > k_last)
                            with m.If(arg[0:16] != 0):
                                with m.If(op == P.OP_LOAD_ACT):
                                    m.next = "LOAD_ACT"
                                with m.Else():
                                    m.next = "LOAD_WGT"
                        with m.Case(P.OP_LOAD_REQ):
                            m.d.sync += skip.eq(arg[0:16] > p.cols)
                            with m.If(arg[0:16] > p.cols):
                                m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                            with m.Elif(arg[0:16] != 0):
                                m.d.sync += req_ok.eq(1)
                            with m.If(arg[0:16] != 0):
                                m.next = "LOAD_REQ"
                        with m.Case(P.OP_START):
                            with m.If(~configured):
                                m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                            with m.Elif(~(act_ok & wgt_ok & req_ok)):
                                m.d.sync += flags.eq(flags | P.FLAG_NOT_LOADED)
                            with m.Else():
                                m.d.sync += out_ok.eq(1)
                                m.d.comb += arr.clear.eq(1)  # zero every accumulator before the first term
                                m.next = "COMPUTE"
                        with m.Case(P.OP_READ):
                            with m.If((arg[0:16] > n_out) | (arg[0:16] == 0)):
                                m.d.sync += flags.eq(flags | P.FLAG_BAD_ARG)
                            with m.If(arg[0:16] != 0):
                                # a READ of outputs no START computed since CONFIG, or past the buffer, is
                                # flagged but answered, so the host never waits for words that do not come
                                with m.If(~out_ok):
                                    m.d.sync += flags.eq(flags | P.FLAG_STALE_READ)
                                m.next = "READ"
                        with m.Case(P.OP_STATUS):
                            m.next = "STATUS"
                        with m.Default():
                            m.d.sync += flags.eq(flags | P.FLAG_BAD_OPCODE)
            for state, port in (("LOAD_ACT", act_w), ("LOAD_WGT", wgt_w)):
                with m.State(state):
                    m.d.comb += [ist.ready.eq(1), port.addr.eq(cnt), port.data.eq(ist.payload),
                                 port.en.eq(ist.valid & ~skip)]
                    with m.If(ist.valid):
                        m.d.sync += cnt.eq(cnt + 1)
                        with m.If(cnt == n_last):
                            m.next = "IDLE"
            with m.State("LOAD_REQ"):
                m.d.comb += ist.ready.eq(1)
                with m.If(ist.valid):
                    with m.If(widx == wpc - 1):
                        m.d.comb += [req_w.addr.eq(col), req_w.en.eq(~skip),
                                     req_w.data.eq(Cat(*[words[i] for i in range(wpc - 1)], ist.payload[0:32]))]
                        m.d.sync += [widx.eq(0), col.eq(col + 1)]
                        with m.If(col == n_last):
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [words[widx].eq(ist.payload[0:32]), widx.eq(widx + 1)]
            with m.State("COMPUTE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [issue_valid.eq(1), cnt.eq(cnt + 1),
                             busy_cycles.eq(busy_cycles + 1)]
                with m.If(cnt == k_last):
                    m.d.sync += wait.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                # the last k-slice needs the memory read cycle plus PE_LATENCY to reach the accumulators
                m.d.comb += self.busy.eq(1)
                m.d.sync += [issue_valid.eq(0), wait.eq(wait + 1), busy_cycles.eq(busy_cycles + 1)]
                with m.If(wait == PE_LATENCY):
                    m.d.sync += [cnt.eq(0), col.eq(0)]
                    m.next = "REQUANT"
            with m.State("REQUANT"):
                m.d.comb += [self.busy.eq(1), rq_issue.eq(1)]
                m.d.sync += [cnt.eq(cnt + 1), col.eq(col + 1), busy_cycles.eq(busy_cycles + 1)]
                with m.If(col == p.cols - 1):
                    m.d.sync += col.eq(0)
                with m.If(cnt == n_out - 1):
                    m.d.sync += wait.eq(0)
                    m.next = "FLUSH"
            with m.State("FLUSH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [wait.eq(wait + 1), busy_cycles.eq(busy_cycles + 1)]
                with m.If(wait == Requantizer.LATENCY + 1):
                    m.next = "IDLE"
            with m.State("READ"):
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(Mux(cnt >= n_out, 0, out_r.data)),
                             out_r.addr.eq(cnt + handshake_out)]
                with m.If(handshake_out):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == n_last):
                        m.next = "IDLE"
            with m.State("STATUS"):
                m.d.comb += [ost.valid.eq(1), ost.payload.eq(status[cnt[0:2]])]
                with m.If(handshake_out):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 2):
                        m.next = "IDLE"
        # the controller's state, for the formal proof's invariants (sim/formal/controller.py) only
        self._probe = dict({name: fsm.ongoing(name) for name in FSM_STATES}, cnt=cnt, n_last=n_last, k_last=k_last,
                           col=col, widx=widx, wait=wait, flags=flags, configured=configured, skip=skip, act_ok=act_ok,
                           wgt_ok=wgt_ok, req_ok=req_ok, out_ok=out_ok)
        return m
