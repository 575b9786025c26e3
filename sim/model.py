"""A pure-Python model of the accelerator at the protocol level, built from the contract's functions.

It answers the same words the RTL answers (docs/hardware.md, "Protocol"), so the host driver can be
tested without a simulator, and a co-simulation mismatch can be split into "driver" or "RTL".
Cycle counts follow the controller's FSM: one cycle per accepted word, and :func:`tile_cycles` per tile.
"""

import numpy as np

from rootshift.hw import protocol as P
from rootshift.hw.params import ArrayParams
from rootshift.hw.pe import PE_LATENCY
from rootshift.hw.requantizer import Requantizer
from rootshift.sw import contract as C


def tile_cycles(params: ArrayParams, k):
    """Busy cycles of one ``START``: K MAC cycles, 1 + ``PE_LATENCY`` to drain the PE pipeline, one per PE
    on the read-out chain, ``Requantizer.LATENCY`` + 2 to flush the requantizer into the output buffer."""
    return k + 1 + PE_LATENCY + params.rows * params.cols + Requantizer.LATENCY + 2


def _lanes(word, lanes, bits):
    return [(word >> (i * bits)) & ((1 << bits) - 1) for i in range(lanes)]


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


class DeviceModel:
    def __init__(self, params: ArrayParams):
        self.p = params
        p = params
        self.act = np.zeros((p.max_k, p.rows), np.int64)
        self.wgt = np.zeros((p.max_k, p.cols), np.int64)
        self.req = [[0] * (p.n_acc + 1) for _ in range(p.cols)]
        self.out = np.zeros(p.rows * p.cols, np.int64)
        self.k = self.shift = 0
        self.relu = False
        self.flags = 0
        self.cycles = self.busy = 0
        # since the last good CONFIG: the last LOAD_ACT / LOAD_WGT held >= K words, a LOAD_REQ came, a START
        # ran (the controller's act_ok, wgt_ok, req_ok, out_ok; docs/hardware.md, "Flags")
        self.act_ok = self.wgt_ok = self.req_ok = self.out_ok = False

    def transact(self, words, n_out):
        it = iter(words)
        answer = []
        p = self.p
        for w in it:
            self.cycles += 1
            op, arg = (w >> 28) & 0xF, w & 0x0FFFFFFF
            n = arg & 0xFFFF
            if op == P.OP_CLEAR:
                self.flags, self.cycles, self.busy = 0, 0, 0
            elif op == P.OP_CONFIG:
                k, s = arg & 0xFFFF, (arg >> 16) & 0x3F
                if k == 0 or k > p.max_k or s == 0:
                    self.flags |= P.FLAG_BAD_ARG
                else:
                    self.k, self.shift, self.relu = k, s, bool((arg >> 22) & 1)
                    self.act_ok = self.wgt_ok = self.req_ok = self.out_ok = False
            elif op in (P.OP_LOAD_ACT, P.OP_LOAD_WGT):
                lanes, bits, mem = (p.rows, p.abits, self.act) if op == P.OP_LOAD_ACT else (p.cols, p.wbits, self.wgt)
                if n > p.max_k:   # refused: its n words are taken and dropped, so the host stays in step
                    self.flags |= P.FLAG_BAD_ARG
                    for _ in range(n):
                        next(it)
                    self.cycles += n
                    continue
                if op == P.OP_LOAD_ACT:
                    self.act_ok = n >= self.k
                else:
                    self.wgt_ok = n >= self.k
                for i in range(n):
                    mem[i] = _lanes(next(it), lanes, bits)
                    self.cycles += 1
            elif op == P.OP_LOAD_REQ:
                if n > p.cols:
                    self.flags |= P.FLAG_BAD_ARG
                    for _ in range(n * (p.n_acc + 2)):
                        next(it)
                    self.cycles += n * (p.n_acc + 2)
                    continue
                self.req_ok = self.req_ok or n > 0
                for c in range(n):
                    ws = [next(it) for _ in range(p.n_acc + 2)]
                    self.cycles += p.n_acc + 2
                    self.req[c] = [_signed(x, 32) for x in ws[:p.n_acc]] + [_signed(ws[-2] | (ws[-1] << 32), 64)]
            elif op == P.OP_START:
                if self.k == 0:
                    self.flags |= P.FLAG_BAD_ARG
                    continue
                if not (self.act_ok and self.wgt_ok and self.req_ok):
                    self.flags |= P.FLAG_NOT_LOADED
                    continue
                self.out_ok = True
                self._compute()
                t = tile_cycles(p, self.k)
                self.cycles += t
                self.busy += t
            elif op == P.OP_READ:
                if n == 0 or n > p.rows * p.cols:
                    self.flags |= P.FLAG_BAD_ARG
                if n == 0:
                    continue
                if not self.out_ok:
                    self.flags |= P.FLAG_STALE_READ   # flagged, and answered all the same
                # n words, always: zeros past the buffer (flagged above), so the host never waits for ever
                answer += [int(v) & 0xFFFFFFFF for v in self.out[:n]] + [0] * max(0, n - p.rows * p.cols)
                self.cycles += n
            elif op == P.OP_STATUS:
                answer += [P.status_word0(self.flags), self.cycles & 0xFFFFFFFF, self.busy & 0xFFFFFFFF]
                self.cycles += 3
            else:
                self.flags |= P.FLAG_BAD_OPCODE
        if len(answer) != n_out:
            raise AssertionError(f"device model answered {len(answer)} words, the request expected {n_out}")
        return answer

    def _compute(self):
        p = self.p
        a = self.act[:self.k].T                       # (rows, K)
        w = self.wgt[:self.k].T                       # (cols, K)
        if p.pe == "mult":
            terms = {"acc": np.where(w >> (p.wbits - 1) & 1, w - (1 << p.wbits), w)}
        else:
            terms = C.weight_terms(w, p.format, p.pe)
        accs = C.accumulate(a, terms, p.pe, p.abits, p.act_exponent)
        keys = ["even", "odd"] if p.pe == "dual" else ["acc"]
        mults = [np.array([self.req[c][i] for c in range(p.cols)]) for i in range(p.n_acc)]
        bias = [self.req[c][-1] for c in range(p.cols)]
        # the Requantizer literally: floor((sum acc*M + B') >> S) with B' = B + 2^(S-1) as loaded, in exact
        # integers (the hardware's sum is 66 bits wide; int64 could wrap where the RTL does not)
        lo = 0 if self.relu else C.FINE_MIN
        total = sum(accs[k].astype(object) * np.array(m, dtype=object) for k, m in zip(keys, mults)) + np.array(bias, dtype=object)
        y = np.array([[min(max(int(v) >> self.shift, lo), C.FINE_MAX) for v in row] for row in total], np.int64)
        self.out = y.reshape(-1)
