"""A Python model of the engine at the protocol level (host protocol v4, docs/engine.md).

It answers the words the RTL ``Engine`` answers, flags included, from the reference executor
(bit-exact with the golden model) and the cycle model (exact for the RTL), so a host driver can be
developed and a co-simulation mismatch split into "driver" or "RTL" without a simulator. It models the
loaded memories word for word (``LOAD`` chunks, ranges, which memories are complete), the code banks'
pixel words as the ``PixelUnpacker`` writes them from the packed ``INFER`` words (padding ignored), and the
debug reads' range checks. Two things are not modelled and say so:

* ``STATUS``'s third word (every clock since ``CLEAR``) depends on the host's timing; it is modelled as
  the sum of the images' cycles;
* an ``INFER`` after ``LOAD`` s that left another program in the memories: the model runs only its own
  program and refuses (ConfigError, naming the memory and item) rather than guess;
* a per-sample multiplier overflow: the flag is modelled, the logits (the golden model refuses such a
  sample) are answered as zeros where the RTL computes with a wrapped multiplier.
"""

import numpy as np

from rootshift.hw.engine import engine as E
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.host_port import CHUNK, LOAD_N_BITS
from rootshift.hw.engine.pixel_unpack import unpack_words
from rootshift.hw.engine.reference import ReferenceEngine
from rootshift.sw.errors import ConfigError

_M32 = 0xFFFFFFFF


class EngineDevice:
    """Members: ``program``; ``baked``; ``flags``; ``img_cycles``; ``total``; ``ref`` (the executor and
    its fine / code memories, padded to the RTL's depths); ``mems`` (the loaded memories' items, in
    memory-id order) and ``loaded`` (which of them hold a whole image)."""

    def __init__(self, program, baked=True):
        self.program, self.baked = program, bool(baked)
        self.ref = ReferenceEngine(program)
        self.depth = {k: E.memory_words(program, k) for k in ("fine", "codes")}
        for k in ("fine", "codes"):
            mem = getattr(self.ref, k)
            setattr(self.ref, k, np.concatenate([mem, np.zeros((self.depth[k] - len(mem), mem.shape[1]), np.int64)]))
        self.layout = E.load_images(program)
        self.mems = [list(img) + [0] * (lm.depth - len(img)) if baked else [0] * lm.depth for lm, img in self.layout]
        self.loaded = [self.baked] * len(self.layout)
        self.flags = self.img_cycles = self.total = 0
        a = program.params.array
        self.lanes, self.abits = program.params.lanes, a.abits
        self.pix = program.tensors[program.steps[0]["out"]]
        self.port = E.port_config(program, baked)
        self.classes = program.tensors[program.output]["shape"][0]
        self.cycles = cycle_report(program)["cycles_per_image"]

    def reset(self):
        """The engine's reset (a board's link reset): flags, counters and which memories are loaded go back
        to their power-up values; the memories keep their contents (an unbaked engine must be loaded again)."""
        self.flags = self.img_cycles = self.total = 0
        self.loaded = [self.baked] * len(self.layout)

    # -- framing ------------------------------------------------------------------------------------
    def command_words(self, words, i=0):
        """How many words the command at ``words[i]`` takes (itself and its data words)."""
        op, arg = (words[i] >> 28) & 0xF, words[i] & 0x0FFFFFFF
        if op == E.OP_INFER:
            return 1 + self.port.pix_words
        if op in (E.OP_READ_FINE, E.OP_READ_CODES):
            return 2
        if op == E.OP_LOAD:
            return 2 + (arg & ((1 << LOAD_N_BITS) - 1))
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

    # -- the commands ---------------------------------------------------------------------------------
    def transact(self, words):
        """Feed input-stream words (whole commands); returns every output-stream word they cause."""
        words, out, i = [int(w) for w in words], [], 0
        while i < len(words):
            size = self.command_words(words, i)
            if i + size > len(words):
                raise ConfigError(f"the words end inside a command ({words[i]:#010x} needs {size} words, "
                                  f"{len(words) - i} sent): the engine would wait for the rest")
            out += self._command(words[i], words[i + 1:i + size])
            i += size
        return out

    def _command(self, w, data):
        op, arg = (w >> 28) & 0xF, w & 0x0FFFFFFF
        if op == E.OP_CLEAR:
            self.flags = self.img_cycles = self.total = 0
        elif op == E.OP_INFER:
            return self._infer(data)
        elif op in (E.OP_READ_FINE, E.OP_READ_CODES):
            return self._read("fine" if op == E.OP_READ_FINE else "codes", arg & 0xFFFF, data[0] & 0xFFFF)
        elif op == E.OP_LOAD:
            self._load(arg >> 24 & 0xF, data[0] & ((1 << 24) - 1), data[1:])
        elif op == E.OP_STATUS:
            return [E.MAGIC << 16 | E.ENGINE_PROTOCOL_VERSION << 8 | self.flags, self.img_cycles, self.total & _M32]
        else:
            self.flags |= E.FLAG_BAD_OPCODE
        return []

    def _infer(self, data):
        t, L, ab, pc = self.pix, self.lanes, self.abits, self.port
        # the PixelUnpacker's bank words, every lane (unused lanes 0, the padding ignored)
        bank = unpack_words(data, ab, pc.data_bits, L, pc.pix_channels, pc.pix_positions)
        for k, word in enumerate(bank):
            self.ref.codes[t["addr"] + k] = [(word >> (ab * j)) & ((1 << ab) - 1) for j in range(L)]
        if not all(self.loaded):
            self.flags |= E.FLAG_NOT_LOADED
            return [0] * self.classes
        self._check_own_program()
        self.ref.beta = {}
        try:
            for step in self.program.steps:
                if step["kind"] != "input":   # the pixels are already in the banks
                    self.ref.step(step)
            logits = self.ref.read(self.program.output).reshape(-1)
        except ConfigError:
            self.flags |= E.FLAG_M_OVERFLOW
            logits = np.zeros(self.classes, np.int64)
        self.img_cycles = self.cycles
        self.total += self.cycles
        return [int(v) & _M32 for v in logits]

    def _check_own_program(self):
        for (lm, img), items in zip(self.layout, self.mems):
            mask = (1 << lm.width) - 1
            for k, v in enumerate(img):
                if items[k] & mask != v:
                    raise ConfigError(f"the device model runs only its own program: memory {lm.name} item {k} holds "
                                      f"{items[k] & mask:#x}, the program's is {v:#x}")

    def _read(self, kind, n, addr):
        if n == 0:
            self.flags |= E.FLAG_BAD_RANGE
            return []
        mem = getattr(self.ref, kind)
        if addr + n > self.depth[kind]:
            self.flags |= E.FLAG_BAD_RANGE
            return [0] * (n * self.lanes)
        return [int(v) & _M32 for row in mem[addr:addr + n] for v in row]

    def _load(self, sel, addr, data):
        lm = self.layout[sel][0] if sel < len(self.layout) else None
        chunks, depth = (lm.chunks, lm.depth) if lm else (1, 0)
        from0, chunk = addr == 0, 0
        for w in data:
            ok = addr < depth
            if ok:
                items = self.mems[sel]
                items[addr] = items[addr] & ~(_M32 << (CHUNK * chunk)) | (w & _M32) << (CHUNK * chunk)
            else:
                self.flags |= E.FLAG_BAD_RANGE
            if chunk == chunks - 1:
                if from0 and ok and addr == lm.need - 1:
                    self.loaded[sel] = True
                chunk, addr = 0, addr + 1
            else:
                chunk += 1
        if chunk != 0:                        # the last item is incomplete
            self.flags |= E.FLAG_BAD_RANGE
