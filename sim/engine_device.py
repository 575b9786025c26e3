"""A Python model of the engine at the protocol level (protocol v2, docs/engine.md).

It answers the words the RTL ``Engine`` answers, from the reference executor (bit-exact with the golden
model) and the cycle model (exact for the RTL), so a host driver can be developed and a co-simulation
mismatch split into "driver" or "RTL" without a simulator. ``STATUS``'s third word (every clock since
``CLEAR``) depends on the host's timing and is modelled as the sum of the images' cycles only.
"""

import numpy as np

from rootshift.hw.engine import engine as E
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.reference import FLAG_M_OVERFLOW, ReferenceEngine
from rootshift.sw.errors import ConfigError


class EngineDevice:
    """Members: ``program``; ``flags``; ``img_cycles``; ``total``; ``ref`` (the executor and its memories)."""

    def __init__(self, program):
        self.program = program
        self.ref = ReferenceEngine(program)
        self.flags = self.img_cycles = self.total = 0
        self.lanes = program.params.lanes
        self.pix = program.tensors[program.steps[0]["out"]]
        self.cycles = cycle_report(program)["cycles_per_image"]

    def _pixels(self, words):
        a = self.program.params.array
        c, h, w = self.pix["shape"]
        out = np.zeros((c, h, w), np.int64)
        it = iter(words)
        for y in range(h):
            for x in range(w):
                for g in range(self.pix["groups"]):
                    word = next(it)
                    for j in range(min(self.lanes, c - g * self.lanes)):
                        out[g * self.lanes + j, y, x] = (word >> (a.abits * j)) & ((1 << a.abits) - 1)
        return out

    def command_words(self, words, i=0):
        """How many words the command at ``words[i]`` takes (itself and its data words)."""
        op = (words[i] >> 28) & 0xF
        if op == E.OP_INFER:
            return 1 + self.pix["words"]
        if op in (E.OP_READ_FINE, E.OP_READ_CODES):
            return 2
        return 1

    def complete_prefix(self, words):
        """How many leading ``words`` form whole commands (a board's link may split a command's data
        over several frames: the rest waits for the next frame)."""
        i = 0
        while i < len(words):
            size = self.command_words(words, i)
            if i + size > len(words):
                break
            i += size
        return i

    def transact(self, words):
        """Feed input-stream words; returns every output-stream word they cause."""
        words, out = list(words), []
        while words:
            w = words.pop(0)
            op, arg = (w >> 28) & 0xF, w & 0x0FFFFFFF
            if op == E.OP_CLEAR:
                self.flags = self.img_cycles = self.total = 0
            elif op == E.OP_INFER:
                n = self.pix["words"]
                px, words = self._pixels(words[:n]), words[n:]
                try:
                    logits = self.ref.run(px)
                except ConfigError:
                    self.flags |= FLAG_M_OVERFLOW
                    logits = np.zeros(self.program.tensors[self.program.output]["shape"][0], np.int64)
                self.img_cycles = self.cycles
                self.total += self.cycles
                out += [int(v) & 0xFFFFFFFF for v in logits]
            elif op in (E.OP_READ_FINE, E.OP_READ_CODES):
                n, addr, words = arg & 0xFFFF, words[0] & 0xFFFF, words[1:]
                mem = self.ref.fine if op == E.OP_READ_FINE else self.ref.codes
                for row in mem[addr:addr + n]:
                    out += [int(v) & 0xFFFFFFFF for v in row]
            elif op == E.OP_STATUS:
                out += [E.MAGIC << 16 | E.ENGINE_PROTOCOL_VERSION << 8 | self.flags, self.img_cycles, self.total]
            else:
                self.flags |= E.FLAG_BAD_OPCODE
        return out
