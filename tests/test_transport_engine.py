"""`rootshift run` on the network engine without a board: EngineDriver over SerialTransport on a
pseudo-terminal pair (os.openpty), the Python engine model behind the board's framing rules on the
other end (sim/transport.py EngineFramedDevice): logits equal the golden model's, with and without the
overlapped transfer; a corrupted or dropped byte is a named LinkError and the link recovers; a wrong
device or a wrong logit is reported, never passed."""

import json
import os
import subprocess
import threading

import numpy as np
import pytest

from rootshift.hw.board.boards import get_board
from rootshift.hw.engine import engine as E
from rootshift.sim.board import REPORT, engine_program, run_board
from rootshift.sim.engine_device import EngineDevice
from rootshift.sim.engine_driver import EngineDriver
from rootshift.sim.transport import EngineFramedDevice, LinkError, SerialTransport
from rootshift.sw import golden, rsq
from rootshift.sw.data import load_dataset
from rootshift.sw.errors import ConfigError

BOARD = get_board("ulx3s-85f")
MAX_WORDS = 8           # an INFER (17 words, protocol v4) spans three frames, as with a small request buffer


@pytest.fixture(scope="module")
def program(exported):
    return engine_program(rsq.load(exported), BOARD, 4, 4)


class Pty:
    """A device thread on the master side of a pty; the host opens the slave side by name."""

    def __init__(self, device):
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        self.device = device
        self.thread = threading.Thread(target=device.serve, args=(self.master,), daemon=True)
        self.thread.start()

    def close(self):
        self.device.stop()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty(program):
    p = Pty(EngineFramedDevice(EngineDevice(program), 32, MAX_WORDS, quiet=0.05))
    yield p
    p.close()


def _pixels(n):
    ds = load_dataset("digits", 8)
    px, _ = ds.test.batch(range(n))
    return px.numpy().astype(np.int64)


def test_engine_driver_over_a_pty_equals_the_golden_model(exported, program, pty):
    im = rsq.load(exported)
    px = _pixels(3)
    host = SerialTransport(pty.name, 3_000_000, 32, MAX_WORDS, timeout=1.0, quiet=0.2)
    try:
        drv = EngineDriver(program, host)
        assert drv.probe().version == E.ENGINE_PROTOCOL_VERSION
        logits = np.stack([drv.infer(p) for p in px])
        st = drv.status()
    finally:
        host.close()
    assert (logits == golden.run(im, px)).all()
    assert st.flags == 0 and st.image_cycles == EngineDevice(program).cycles
    assert host.frames > 3 * 3 and pty.device.errors == []


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped", "stop-and-wait"])
def test_run_board_on_the_engine_path(exported, program, overlap):
    p = Pty(EngineFramedDevice(EngineDevice(program), 32, BOARD.buffer_bytes // 4, quiet=0.05))
    try:
        rep = run_board(exported, port=p.name, images=5, board="ulx3s-85f", rows=4, cols=4, overlap=overlap)
    finally:
        p.close()
    for key in ("images", "mismatches", "accuracy", "images_per_s", "link_s_per_image", "device_cycles_per_image",
                "board", "fmax_mhz"):
        assert key in rep, key
    assert rep["images"] == 5 and rep["mismatches"] == 0 and rep["engine"] == "network"
    assert rep["overlap"] is overlap and rep["board"] == "ulx3s-85f"
    assert rep["device_cycles_per_image"] == EngineDevice(program).cycles
    # host protocol v4: INFER + 16 packed pixel words of 4 bytes + 7 framing bytes out, 10 logits + 6 framing
    # bytes back, per image (v3 sent 65 words: 313 bytes); over the 5 images also the probe and the final
    # STATUS (11 bytes out, 3 words + 6 back each) and the CLEAR (11 out, 6 back)
    per_image = (17 * 4 + 7) + (10 * 4 + 6) + (2 * (11 + 18) + 11 + 6) / 5
    assert rep["link_s_per_image"] * 3e6 / 10 == pytest.approx(per_image, rel=0.02)


FAULTS = [("corrupt", 30, "device:bad_crc"), ("drop", 30, "device:short")]


@pytest.mark.parametrize("kind, at, name", FAULTS, ids=[f[2] for f in FAULTS])
def test_a_bad_byte_on_the_line_is_named_and_the_link_recovers(exported, program, pty, kind, at, name):
    im = rsq.load(exported)
    px = _pixels(2)
    host = SerialTransport(pty.name, 3_000_000, 32, MAX_WORDS, timeout=1.0, quiet=0.2)
    write, count = host.ch.write, [0]

    def faulty(data):
        data = bytearray(data)
        if count[0] == 1:                      # the INFER's second frame: the engine took the first
            if kind == "corrupt":
                data[at] ^= 0x80
            else:
                del data[at]
        count[0] += 1
        write(bytes(data))
    host.ch.write = faulty
    try:
        drv = EngineDriver(program, host)
        with pytest.raises(LinkError) as e:
            drv.infer(px[0])
        assert e.value.kind == name and ("corrupted" in str(e.value) or "dropped" in str(e.value))
        logits = np.stack([drv.infer(p) for p in px])     # the reset frame put the engine back to IDLE
    finally:
        host.close()
    assert (logits == golden.run(im, px)).all()


class WrongLogit(EngineDevice):
    """An engine whose first logit of every image is one off."""

    def transact(self, words):
        from rootshift.hw.engine import engine as E

        out = super().transact(words)
        if words and (words[0] >> 28) == E.OP_INFER:
            out[0] = (out[0] + 1) & 0xFFFFFFFF
        return out


def test_run_counts_a_wrong_logit_and_the_cli_exits_nonzero(exported, program, tmp_path, cli):
    (tmp_path / REPORT).write_text(json.dumps({"board": "ulx3s-85f", "engine": "network", "rows": 4, "cols": 4,
                                               "baud": 3_000_000, "fmax_mhz": 41.0}))
    p = Pty(EngineFramedDevice(WrongLogit(program), 32, BOARD.buffer_bytes // 4, quiet=0.05))
    try:
        rep = run_board(exported, port=p.name, images=3, build_dir=tmp_path)
        assert rep["mismatches"] == 3 and rep["fmax_mhz"] == 41.0
        r = subprocess.run([*cli, "run", str(exported), "--port", p.name, "--images", "2", "--build", str(tmp_path),
                            "--json"], capture_output=True, text=True, timeout=120)
    finally:
        p.close()
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["mismatches"] == 2


def test_run_refuses_a_build_of_another_program(exported, tmp_path):
    (tmp_path / REPORT).write_text(json.dumps({"board": "ulx3s-85f", "engine": "network", "rows": 4, "cols": 4,
                                               "program_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="holds another program"):
        run_board(exported, port="/dev/null", images=1, build_dir=tmp_path)
