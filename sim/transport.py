"""Transports for the sans-IO host driver (sim/driver.py): ``transact(request) -> answer words``.

* :class:`ModelTransport`: the Python device model (sim/model.py), no link at all;
* :class:`SerialTransport`: a board on a serial port (pyserial), through the checked frames of
  hw/board/framing.py, stop-and-wait (docs/boards.md, "Flow control");
* :class:`FramedDevice`: the board's side of the same link in Python (a device model behind the
  deframer/framer rules), to test the serial transport on a pseudo-terminal without a board.

Every link failure raises :class:`LinkError`, whose ``kind`` and message name what happened (a bad
CRC either way, a dropped byte, a timeout) and which request it was.
"""

import os
import select
import threading
import time

from rootshift.hw.board import framing as F
from rootshift.sw.errors import ConfigError, RootshiftError


class LinkError(RootshiftError):
    """The link to the board failed. ``kind`` is one of: ``device:bad_crc``, ``device:short``,
    ``device:bad_sync``, ``device:too_long``, ``device:line`` (the board reported it), ``timeout``,
    ``answer_sync``, ``answer_crc``, ``answer_length``, ``short_answer`` (the host saw it)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


DEVICE_KINDS = {F.ERR_BAD_CRC: "device:bad_crc", F.ERR_SHORT: "device:short", F.ERR_BAD_SYNC: "device:bad_sync",
                F.ERR_TOO_LONG: "device:too_long", F.ERR_LINE: "device:line"}


def _where(request):
    info = getattr(request, "info", None) or {}
    parts = [f"{k} {info[k]}" for k in ("image", "layer", "tile") if k in info]
    return f" ({', '.join(parts)})" if parts else ""


class ModelTransport:
    """The simulator transport: words go straight to a :class:`~rootshift.sim.model.DeviceModel`."""

    def __init__(self, model):
        self.model = model

    def transact(self, request):
        return self.model.transact(request.words, request.n_out)

    def close(self):
        pass


class FramedLink:
    """Stop-and-wait framing over a byte channel with ``write(bytes)``, ``read(n, timeout) -> bytes`` and
    ``flush_input()``. A request longer than ``max_words`` goes out as several frames; only the last one
    carries ``n_out`` (the engine answers only at the end of a request: READ / STATUS come last)."""

    def __init__(self, channel, data_bits, max_words, timeout=2.0, quiet=0.1):
        if max_words < 1:
            raise ConfigError(f"max_words must be at least 1, not {max_words}")
        self.ch = channel
        self.word_bytes = F.word_bytes(data_bits)
        self.max_words = max_words
        self.timeout = timeout
        self.quiet = quiet           # longer than the board's link timeout: it has sent its error answer
        self.frames = 0
        self.bytes_out = self.bytes_in = 0     # on the wire, framing included (link time = 10 bits each / baud)

    def transact(self, request):
        words = list(request.words)
        chunks = [words[i:i + self.max_words] for i in range(0, len(words), self.max_words)]
        answer = []
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            answer = self._frame(chunk, request.n_out if last else 0, request)
        return answer

    def _frame(self, words, n_out, request):
        self.frames += 1
        frame = F.encode_request(words, n_out, self.word_bytes)
        self.bytes_out += len(frame)
        self.bytes_in += F.ANSWER_HEADER + F.ANSWER_WORD_BYTES * n_out + F.CRC_BYTES
        self.ch.write(frame)
        try:
            return self._answer(n_out, request)
        except LinkError:
            self._resync()
            raise

    def _read(self, n, what, request):
        data = self.ch.read(n, self.timeout)
        if len(data) < n:
            if not data and what == "header":
                raise LinkError("timeout", f"timeout: no answer from the board within {self.timeout:g} s "
                                           f"(is it programmed, on this port, at this baud rate?){_where(request)}")
            raise LinkError("short_answer", f"short answer: {len(data)} of {n} {what} bytes arrived within "
                                            f"{self.timeout:g} s (a byte from the board was dropped){_where(request)}")
        return data

    def _answer(self, n_out, request):
        head = self._read(F.ANSWER_HEADER, "header", request)
        if head[0] != F.SYNC_ANSWER:
            raise LinkError("answer_sync", f"bad answer sync byte {head[0]:#04x} (expected {F.SYNC_ANSWER:#04x}): "
                                           f"a byte from the board was corrupted or dropped{_where(request)}")
        status, n = head[1], head[2] | head[3] << 8
        if status != F.OK:
            crc = self._read(F.CRC_BYTES, "CRC", request)
            if n != 0 or F.crc16(head[1:]) != crc[0] | crc[1] << 8:
                raise LinkError("answer_crc", f"bad answer CRC: a byte from the board was corrupted{_where(request)}")
            name = F.ERROR_NAMES.get(status, f"unknown error code {status}")
            raise LinkError(DEVICE_KINDS.get(status, "device:unknown"),
                            f"the board rejected the request: {name}{_where(request)}")
        if n != n_out:
            raise LinkError("answer_length", f"the board answered {n} words where {n_out} were expected "
                                             f"(corrupted answer header){_where(request)}")
        body = self._read(n * F.ANSWER_WORD_BYTES + F.CRC_BYTES, "answer", request)
        crc = body[-2] | body[-1] << 8
        if F.crc16(head[1:] + body[:-2]) != crc:
            raise LinkError("answer_crc", f"bad answer CRC: a byte from the board was corrupted{_where(request)}")
        return [int.from_bytes(body[i:i + 4], "little") for i in range(0, n * 4, 4)]

    def _resync(self):
        """After an error: wait until the line is quiet, drop whatever arrived, and reset the engine (a
        request split over frames may have lost a frame after the engine took the first ones). The
        original error is raised whatever happens here."""
        self.ch.flush_input(quiet=self.quiet)
        self.ch.write(F.encode_reset())
        head = self.ch.read(F.ANSWER_HEADER + F.CRC_BYTES, self.timeout)
        if head != F.encode_answer(F.OK):
            self.ch.flush_input(quiet=self.quiet)


class SerialChannel:
    """A byte channel on a pyserial port (or any pyserial URL, e.g. ``loop://``)."""

    def __init__(self, port, baud):
        import serial

        try:
            self.port = serial.serial_for_url(port, baudrate=baud, timeout=0, write_timeout=10)
        except (serial.SerialException, OSError) as e:
            raise ConfigError(f"cannot open serial port {port!r}: {e} (is the board plugged in? on Linux the "
                              f"user needs the 'dialout' group; see docs/boards.md)") from None

    def write(self, data):
        self.port.write(data)
        self.port.flush()

    def read(self, n, timeout):
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.port.timeout = left
            buf += self.port.read(n - len(buf))
        return bytes(buf)

    def flush_input(self, quiet):
        self.port.timeout = quiet
        while self.port.read(4096):
            pass
        self.port.reset_input_buffer()

    def close(self):
        self.port.close()


class SerialTransport(FramedLink):
    """A board on ``port`` at ``baud``; ``data_bits`` and ``max_words`` come from the board's build
    (its engine's input width and its request buffer, hw/board/boards.py)."""

    def __init__(self, port, baud, data_bits, max_words, timeout=2.0, quiet=0.1):
        super().__init__(SerialChannel(port, baud), data_bits, max_words, timeout, quiet)

    def close(self):
        self.ch.close()


class FramedDevice:
    """The board's side of the link in Python: the deframer's rules (hw/board/deframer.py) in front of a
    device model. ``serve(fd)`` answers requests on a file descriptor until ``stop()``; errors are answered
    once the line has been quiet for ``quiet`` seconds, like the gateware's timeout."""

    def __init__(self, model, data_bits, max_words, quiet=0.05):
        self.model, self.word_bytes, self.max_words, self.quiet = model, F.word_bytes(data_bits), max_words, quiet
        self.errors = []
        self._pending = []
        self._stop = threading.Event()

    def stop(self):
        self._stop.set()

    def _read(self, fd, n, timeout):
        buf = bytearray()
        while len(buf) < n and not self._stop.is_set():
            r, _, _ = select.select([fd], [], [], timeout)
            if not r:
                break
            try:
                chunk = os.read(fd, n - len(buf))
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def _error(self, fd, code):
        while self._read(fd, 4096, self.quiet):          # swallow the rest of the broken frame
            pass
        self.errors.append(code)
        self._send(fd, F.encode_answer(code))

    def serve(self, fd):
        while not self._stop.is_set():
            sync = self._read(fd, 1, 0.02)
            if not sync:
                continue
            if sync[0] != F.SYNC_REQUEST:
                self._error(fd, F.ERR_BAD_SYNC)
                continue
            head = self._read(fd, 4, self.quiet)
            if len(head) < 4:
                self._error(fd, F.ERR_SHORT)
                continue
            n_words, n_out = head[0] | head[1] << 8, head[2] | head[3] << 8
            if n_words > self.max_words:
                self._error(fd, F.ERR_TOO_LONG)
                continue
            rest = self._read(fd, n_words * self.word_bytes + F.CRC_BYTES, self.quiet)
            if len(rest) < n_words * self.word_bytes + F.CRC_BYTES:
                self._error(fd, F.ERR_SHORT)
                continue
            if F.crc16(head + rest[:-2]) != (rest[-2] | rest[-1] << 8):
                self._error(fd, F.ERR_BAD_CRC)
                continue
            if n_words == 0:                        # reset: the engine forgets a half-received command
                self.reset()
                self._send(fd, F.encode_answer(F.OK))
                continue
            wb = self.word_bytes
            words = [int.from_bytes(rest[i * wb:(i + 1) * wb], "little") for i in range(n_words)]
            answer = self._run(words, n_out)
            if answer is not None:                  # the gateware would hang: the host times out
                self._send(fd, F.encode_answer(F.OK, answer))

    def _send(self, fd, data):
        os.write(fd, data)

    def reset(self):
        """A reset frame: the engine forgets a half-received command."""
        self._pending = []

    def _run(self, words, n_out):
        """Run every complete command so far (a command's data may continue in the next frame)."""
        pending = self._pending + words
        n = _complete_prefix(pending, self.model.p)
        self._pending = pending[n:]
        try:
            return self.model.transact(pending[:n], n_out)
        except AssertionError:                      # n_out does not match what the commands answer
            return None


def _complete_prefix(words, p):
    """How many leading words form whole commands of the tile protocol (docs/hardware.md)."""
    from rootshift.hw import protocol as P

    i = 0
    while i < len(words):
        op, n = (words[i] >> 28) & 0xF, words[i] & 0xFFFF
        size = 1
        if op in (P.OP_LOAD_ACT, P.OP_LOAD_WGT) and n <= p.max_k:
            size += n
        elif op == P.OP_LOAD_REQ and n <= p.cols:
            size += n * (p.n_acc + 2)
        if i + size > len(words):
            break
        i += size
    return i


class EngineFramedDevice(FramedDevice):
    """The board's side of the link with the network engine's device model
    (:class:`~rootshift.sim.engine_device.EngineDevice`, protocol v2) behind it: a command whose words
    continue in the next frame waits for them, and the engine's answer words queue up in order, as on
    the engine's output stream, until a frame's ``n_out`` takes them (so the logits of one ``INFER`` may
    leave with the next frame's answer: the overlapped run of sim/board.py). A frame asking for more
    words than are queued would stall the gateware: the model sends nothing and the host times out."""

    def __init__(self, device, data_bits, max_words, quiet=0.05):
        super().__init__(device, data_bits, max_words, quiet)
        self._queued = []

    def _run(self, words, n_out):
        pending = self._pending + words
        n = self.model.complete_prefix(pending)
        self._pending = pending[n:]
        self._queued += self.model.transact(pending[:n])
        if len(self._queued) < n_out:
            return None
        answer, self._queued = self._queued[:n_out], self._queued[n_out:]
        return answer

    def reset(self):
        """A reset frame resets the engine: a half-received command, unsent answers and the counters go."""
        self._pending, self._queued = [], []
        self.model.reset()

