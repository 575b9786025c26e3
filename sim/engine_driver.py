"""Host driver of the network engine's protocol (docs/engine.md, "Host protocol").

One driver for every place the engine runs: the Python device model (:mod:`rootshift.sim.engine_device`),
the cocotb stream bench (:mod:`rootshift.sim.engine_cocotb_bench`) and a board behind the framed serial
link (:mod:`rootshift.sim.transport`). The protocol logic is sans-IO: each operation is a generator that
yields :class:`~rootshift.sim.driver.Request` s (words to send, number of answer words) and decodes the
answers, so the driver never knows how words travel. A transport is anything with ``transact(request)``
(or a bare callable); when it is a coroutine function (cocotb) every operation returns an awaitable::

    drv = EngineDriver(program, EngineDevice(program))       # model: logits = drv.infer(px)
    drv = EngineDriver(program, SerialTransport(...))        # board
    drv = EngineDriver(program, port)                        # cocotb: logits = await drv.infer(px)

Answers are 32-bit words; the driver masks them to 32 bits and sign-extends what is signed (logits and
fine words), so the ports' signedness in Verilog or Amaranth does not matter.
"""

import inspect
from dataclasses import dataclass

import numpy as np

from rootshift.hw.engine import engine as E
from rootshift.hw.engine.compiler import input_codes
from rootshift.hw.engine.pixel_unpack import pack_image
from rootshift.sim.driver import Request, run_async, run_sync
from rootshift.sw.errors import ConfigError

FLAG_NAMES = {E.FLAG_BAD_OPCODE: "unknown opcode", E.FLAG_BAD_RANGE: "LOAD or READ address or length out of range",
              E.FLAG_M_OVERFLOW: "per-sample multiplier overflow",
              E.FLAG_NOT_LOADED: "INFER before a complete program load"}


def s32(words):
    """Unsigned (or already signed) 32-bit words -> signed int64."""
    w = np.asarray(words, np.int64) & 0xFFFFFFFF
    return np.where(w >> 31 & 1, w - (1 << 32), w)


@dataclass(frozen=True)
class EngineStatus:
    """The three ``STATUS`` words, decoded: magic, protocol version, error flags, cycles of the last
    image, clocks since the last ``CLEAR`` (or reset)."""

    magic: int
    version: int
    flags: int
    image_cycles: int
    total_cycles: int

    @classmethod
    def from_words(cls, words):
        w0, w1, w2 = (int(v) & 0xFFFFFFFF for v in words)
        return cls(w0 >> 16, (w0 >> 8) & 0xFF, w0 & 0xFF, w1, w2)

    @property
    def is_engine(self):
        return self.magic == E.MAGIC

    @property
    def errors(self):
        """The set flags, in words (an unnamed bit as ``flag bit N``)."""
        return [FLAG_NAMES.get(1 << b, f"flag bit {b}") for b in range(8) if self.flags >> b & 1]


class DeviceLink:
    """A transport over a device model with ``transact(words) -> answer words`` (sim/engine_device.py):
    checks that the model answers exactly the words the request expects, as a real link would."""

    def __init__(self, device):
        self.device = device

    def transact(self, request):
        out = self.device.transact(request.words)
        if len(out) != request.n_out:
            raise ConfigError(f"the engine answered {len(out)} words where the request expects {request.n_out} "
                              f"({request.info or 'no info'})")
        return out


class EngineDriver:
    """Drives one engine built for ``program`` (a :class:`~rootshift.hw.engine.program.Program`) through
    ``transport``.

    Members
    -------
    program : the compiled program (tensor placements, the input and output tensors, the array)
    transact : the transport's ``transact(request) -> words`` (blocking or a coroutine function)
    asynchronous : whether operations return awaitables (the transport is a coroutine function)
    lanes, abits : words carry ``lanes`` channels; code lanes are ``abits`` wide
    port : the engine's :class:`~rootshift.hw.engine.host_port.PortConfig` (``port.pix_words``: the stream
        words of one ``INFER``'s pixels, ``port.data_bits``: the input stream's width)
    words : ``{"fine": n, "codes": n}``, the words of each activation memory the program uses
    """

    def __init__(self, program, transport, asynchronous=None):
        from rootshift.hw.engine.program import Program

        if not isinstance(program, Program):
            raise ConfigError(f"program must be a compiled Program (hw.engine.compiler.compile_model), not {program!r}")
        self.program = program
        if _is_device_model(transport):
            transport = DeviceLink(transport)
        fn = transport.transact if hasattr(transport, "transact") else transport
        if not callable(fn):
            raise ConfigError(f"transport must have transact(request) or be callable, not {transport!r}")
        self.transact = fn
        self.asynchronous = inspect.iscoroutinefunction(fn) if asynchronous is None else bool(asynchronous)
        a = program.params.array
        self.lanes, self.abits = program.params.lanes, a.abits
        self.pixels_tensor = program.tensors[program.steps[0]["out"]]
        self.port = E.port_config(program)
        self.classes = program.tensors[program.output]["shape"][0]
        self.words = {k: max((t["addr"] + t["words"] for t in program.tensors.values() if t["kind"] == k), default=0)
                      for k in ("fine", "codes")}

    # -- running an operation on the transport ------------------------------------------------------
    def _run(self, gen):
        return run_async(gen, self.transact) if self.asynchronous else run_sync(gen, self.transact)

    # -- encoding -----------------------------------------------------------------------------------
    def pixel_words(self, pixels):
        """The ``INFER`` payload of one image (C, H, W), host protocol v4: the codes in (y, x, c) order,
        ``data_bits // abits`` per word, code ``i`` of a word at bits ``[i*abits +: abits]``, the last word
        zero-padded (``self.port.pix_words`` words; docs/engine.md, "Host protocol v4")."""
        t, ab = self.pixels_tensor, self.abits
        c, h, w = t["shape"]
        px = np.asarray(pixels, np.int64)
        if px.size != c * h * w and self.program.steps[0].get("expand", 1) > 1 and px.size % (h * w) == 0:
            px = input_codes(self.program, px.reshape(-1, h, w))   # a shift2 array's stem reads bit planes
        if px.size != c * h * w:
            raise ConfigError(f"pixels must have shape {[c, h, w]} (the program's input), not {list(px.shape)}")
        px = px.reshape(c, h, w)
        if px.min(initial=0) < 0 or px.max(initial=0) >= 1 << ab:
            raise ConfigError(f"pixel codes must be in 0..{(1 << ab) - 1} ({ab}-bit codes), "
                              f"not {int(px.min())}..{int(px.max())}")
        return pack_image(px, ab, self.port.data_bits)

    # -- the operations, sans-IO --------------------------------------------------------------------
    def infer_gen(self, pixels, info=None):
        words = yield Request([E.OP_INFER << 28] + self.pixel_words(pixels), self.classes, dict(info or {}))
        return s32(words)

    def read_words_gen(self, kind, addr, n, info=None):
        if kind not in ("fine", "codes"):
            raise ConfigError(f"memory must be 'fine' or 'codes', not {kind!r}")
        if not 1 <= n < 1 << 16 or not 0 <= addr < 1 << 16:
            raise ConfigError(f"a {kind} read needs 1 <= n < 65536 words at an address < 65536, not n={n} at {addr}")
        op = E.OP_READ_FINE if kind == "fine" else E.OP_READ_CODES
        words = yield Request([op << 28 | n, addr], n * self.lanes, {"read": kind, **(info or {})})
        w = s32(words) if kind == "fine" else np.asarray(words, np.int64) & 0xFFFFFFFF
        return w.reshape(n, self.lanes)

    def read_tensor_gen(self, name):
        t = self._tensor(name)
        words = yield from self.read_words_gen(t["kind"], t["addr"], t["words"], {"layer": name})
        return self.tensor_from_words(name, words, base=t["addr"])

    def status_gen(self):
        return EngineStatus.from_words((yield Request([E.OP_STATUS << 28], 3, {"status": True})))

    def clear_gen(self):
        yield Request([E.OP_CLEAR << 28], 0, {"clear": True})

    def load_words(self, program=None):
        """The ``LOAD`` commands that write ``program``'s memories (default: the driver's program), one
        list of words per memory: ``LOAD m, n`` (``OP_LOAD << 28 | m << 24 | n``), the address 0, then every
        item as ``ceil(width / 32)`` 32-bit chunks, low first (docs/engine.md, "Host protocol v4")."""
        program = program or self.program
        mine, theirs = self.port, E.port_config(program)
        if theirs != mine:
            diff = [f"{k} {getattr(theirs, k)} vs {getattr(mine, k)}" for k in theirs.__dataclass_fields__
                    if getattr(theirs, k) != getattr(mine, k)]
            raise ConfigError("the program's plan differs from the engine's (LOAD replaces contents, not the "
                              f"plan): {'; '.join(diff)}")
        out = []
        for m, (lm, img) in enumerate(E.load_images(program)):
            data = [item >> (E.CHUNK * k) & 0xFFFFFFFF for item in img for k in range(lm.chunks)]
            out.append([E.OP_LOAD << 28 | m << 24 | len(data), 0] + data)
        return out

    def load_program_gen(self, program=None):
        names = [lm.name for lm in E.port_config(self.program).mems]
        for words in self.load_words(program):
            yield Request(words, 0, {"load": names[(words[0] >> 24) & 0xF]})

    # -- the operations ------------------------------------------------------------------------------
    def infer(self, pixels):
        """One image's pixel codes (C, H, W) in, its logits out (``classes`` signed int64)."""
        return self._run(self.infer_gen(pixels))

    def read_words(self, kind, addr, n):
        """``n`` words of the ``fine`` or ``codes`` memory from ``addr``: (n, lanes) int64 (fine signed,
        codes as stored)."""
        return self._run(self.read_words_gen(kind, addr, n))

    def read_memory(self, kind):
        """Every word of a memory the program uses (the debug read of all layers at once)."""
        return self.read_words(kind, 0, self.words[kind])

    def read_tensor(self, name):
        """A program tensor (C, H, W) as it sits in the engine now (compile with ``debug`` to keep all)."""
        return self._run(self.read_tensor_gen(name))

    def read_fine(self, name):
        """A fine tensor (32-bit values) by name; refuses a code tensor."""
        self._tensor(name, "fine")
        return self.read_tensor(name)

    def read_codes(self, name):
        """A code tensor by name; refuses a fine tensor."""
        self._tensor(name, "codes")
        return self.read_tensor(name)

    def load_program(self, program=None):
        """Write every memory of ``program`` (default: the driver's) with ``LOAD``; needed before ``INFER`` on
        an engine built with ``baked=False``. ``program`` may be another compile of the same plan. Nothing
        is answered: :meth:`status` shows ``FLAG_BAD_RANGE`` if a memory did not take its image."""
        return self._run(self.load_program_gen(program))

    def status(self):
        """:class:`EngineStatus` (magic, version, flags, cycles of the last image, total cycles)."""
        return self._run(self.status_gen())

    def clear(self):
        """Flags and cycle counters to 0 (no answer)."""
        return self._run(self.clear_gen())

    def probe(self):
        """``STATUS``, refusing a device that is not this protocol's engine (another bitstream, the tile
        engine, another protocol version) with a message naming what answered."""
        if self.asynchronous:
            return self._probe_async()
        return self._check_probe(self.status())

    async def _probe_async(self):
        return self._check_probe(await self.status())

    @staticmethod
    def _check_probe(st):
        if not st.is_engine or st.version != E.ENGINE_PROTOCOL_VERSION:
            word = st.magic << 16 | st.version << 8 | st.flags
            raise ConfigError(f"the device answered STATUS {word:#010x}, not a rootshift network engine of protocol "
                              f"version {E.ENGINE_PROTOCOL_VERSION} (magic {E.MAGIC:#06x}): build and flash the "
                              "engine's bitstream first")
        return st

    # -- decoding ----------------------------------------------------------------------------------
    def _tensor(self, name, kind=None):
        t = self.program.tensors.get(name)
        if t is None:
            raise ConfigError(f"the program has no tensor {name!r} (it has {', '.join(sorted(self.program.tensors))})")
        if kind is not None and t["kind"] != kind:
            raise ConfigError(f"tensor {name!r} holds {t['kind']}, not {kind}: use read_{t['kind']}")
        return t

    def tensor_from_words(self, name, words, base=0):
        """A tensor (C, H, W) decoded from memory words (N, lanes) that start at address ``base``."""
        t = self._tensor(name)
        c, h, w = t["shape"]
        block = np.asarray(words)[t["addr"] - base:t["addr"] - base + t["words"]]
        return block.reshape(h, w, t["groups"] * self.lanes)[:, :, :c].transpose(2, 0, 1)


def _is_device_model(obj):
    from rootshift.sim.engine_device import EngineDevice

    return isinstance(obj, EngineDevice)
