"""SerialTransport over a pseudo-terminal pair, with the Python device (FramedDevice + DeviceModel) on the
other end: exact answers, and corrupted or dropped bytes in either direction raise a named LinkError."""

import os
import threading

import numpy as np
import pytest

from rootshift.hw import protocol as P
from rootshift.hw.params import ArrayParams
from rootshift.sim.driver import Request, run_sync
from rootshift.sim.model import DeviceModel
from rootshift.sim.transport import FramedDevice, ModelTransport, SerialTransport, LinkError

PARAMS = ArrayParams(wbits=4, abits=8, rows=4, cols=2, max_k=32, max_shift=3)   # 32-bit words
MAX_WORDS = 16


def tile(rng, k=20):
    a = rng.integers(0, 256, (PARAMS.rows, k))
    w = rng.choice(PARAMS.format.all_codes(), (PARAMS.cols, k))
    mults = [rng.integers(-2**20, 2**20, PARAMS.cols) for _ in range(2)]
    bias = rng.integers(-2**30, 2**30, PARAMS.cols)
    return P.tile_words(PARAMS, a, w, mults, bias, shift=14, relu=True)


class FaultyDevice(FramedDevice):
    """Corrupts or drops one byte of the n-th answer it sends."""

    def __init__(self, *a, fault=None, **kw):
        super().__init__(*a, **kw)
        self.fault, self.sent = fault or {}, 0

    def _send(self, fd, data):
        kind, at = self.fault.get(self.sent, (None, None))
        data = bytearray(data)
        if kind == "corrupt":
            data[at] ^= 0x04
        elif kind == "drop":
            del data[at]
        self.sent += 1
        os.write(fd, bytes(data))


@pytest.fixture
def link(request):
    fault = getattr(request, "param", None) or {}
    master, slave = os.openpty()
    device = FaultyDevice(DeviceModel(PARAMS), PARAMS.data_bits, MAX_WORDS, quiet=0.05, fault=fault.get("answer"))
    thread = threading.Thread(target=device.serve, args=(master,), daemon=True)
    thread.start()
    host = SerialTransport(os.ttyname(slave), 3_000_000, PARAMS.data_bits, MAX_WORDS, timeout=1.0, quiet=0.2)
    if "request" in fault:
        write, plan, count = host.ch.write, fault["request"], [0]

        def faulty_write(data):
            kind, at = plan.get(count[0], (None, None))
            data = bytearray(data)
            if kind == "corrupt":
                data[at] ^= 0x80
            elif kind == "drop":
                del data[at]
            count[0] += 1
            write(bytes(data))
        host.ch.write = faulty_write
    yield host, device
    device.stop()
    thread.join(2)
    host.close()
    os.close(master)
    os.close(slave)


def test_tiles_over_a_pty_match_the_model(link):
    host, device = link
    ref = ModelTransport(DeviceModel(PARAMS))
    rng = np.random.default_rng(3)
    for _ in range(3):
        req = Request(tile(rng), PARAMS.rows * PARAMS.cols)
        assert len(req.words) > MAX_WORDS
        assert host.transact(req) == ref.transact(req)
    req = Request([P.header(P.OP_STATUS)], 3)
    assert host.transact(req) == ref.transact(req)        # cycle counts agree too: same commands, once each
    assert device.errors == []


def test_run_sync_drives_the_serial_transport(link):
    """The driver's run_sync loop with the serial transport, as ``rootshift run`` will use it."""
    host, _ = link
    rng = np.random.default_rng(4)
    reqs = [Request(tile(rng), PARAMS.rows * PARAMS.cols) for _ in range(2)]

    def gen():
        outs = []
        for r in reqs:
            outs.append((yield r))
        return outs

    ref = ModelTransport(DeviceModel(PARAMS))
    assert run_sync(gen(), host.transact) == [ref.transact(r) for r in reqs]


FAULTS = [
    ({"request": {1: ("corrupt", 30)}}, "device:bad_crc"),
    ({"request": {1: ("drop", 30)}}, "device:short"),
    ({"request": {1: ("drop", 0)}}, "device:bad_sync"),
    ({"answer": {1: ("corrupt", 3)}}, "answer_length"),
    ({"answer": {1: ("corrupt", 1)}}, "answer_crc"),
    ({"answer": {0: ("drop", 0)}}, "answer_sync"),
]


@pytest.mark.parametrize("link, kind", FAULTS, indirect=["link"], ids=[k for _, k in FAULTS])
def test_faults_are_named(link, kind):
    """The second frame of the first tile is hit (the answer side: the first or second answer); the error
    names it, and after it the next tile is exact (a rejected frame never reached the engine)."""
    host, device = link
    rng = np.random.default_rng(8)
    ref = DeviceModel(PARAMS)
    t1, t2 = tile(rng), tile(rng)
    n_out = PARAMS.rows * PARAMS.cols
    with pytest.raises(LinkError) as e:
        host.transact(Request(t1, n_out, {"layer": "stages.0", "image": 2}))
    assert e.value.kind == kind, str(e.value)
    assert "stages.0" in str(e.value) and "image 2" in str(e.value)
    if kind.startswith("device:"):
        assert len(device.errors) == 1
    assert host.transact(Request(t2, n_out)) == ref.transact(t2, n_out)


def test_missing_port_is_named():
    from rootshift.sw.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot open serial port '/dev/ttyNOPE0'"):
        SerialTransport("/dev/ttyNOPE0", 3_000_000, 32, 16)


def _pty_device(params, max_words):
    master, slave = os.openpty()
    device = FramedDevice(DeviceModel(params), params.data_bits, max_words, quiet=0.05)
    thread = threading.Thread(target=device.serve, args=(master,), daemon=True)
    thread.start()

    def close():
        device.stop()
        thread.join(2)
        os.close(master)
        os.close(slave)
    return os.ttyname(slave), close


def test_host_driver_runs_a_model_over_the_pty(root):
    """The whole host driver (im2col, tiling, quant ops on the host) over the serial transport: logits
    equal the golden model's, and the per-image cycle count equals the model transport's."""
    from rootshift.sim.board import run_images
    from rootshift.sim.driver import hardware_for
    from rootshift.sw import golden, rsq

    im = rsq.load(root / "tests" / "data" / "tiny_v1.rsq")
    params = hardware_for(im, 2, 2)
    pixels = np.random.default_rng(0).integers(0, 256, (2, *im.meta["input_shape"]))
    port, close = _pty_device(params, 64)
    host = SerialTransport(port, 3_000_000, params.data_bits, 64, timeout=2.0)
    try:
        logits, record, _ = run_images(im, params, pixels, host)
    finally:
        host.close()
        close()
    assert (logits == golden.run(im, pixels)).all()
    _, ref_record, _ = run_images(im, params, pixels, ModelTransport(DeviceModel(params)))
    assert [c["image_total"] for c in record["cycles"]] == [c["image_total"] for c in ref_record["cycles"]]
    assert host.frames > 0 and host.bytes_out > host.frames * 7


def test_run_board_needs_a_port(tmp_path):
    from rootshift.sim.board import run_board
    from rootshift.sw.errors import ConfigError

    with pytest.raises(ConfigError, match="no serial port given: pass --port"):
        run_board(tmp_path / "m.rsq")
    with pytest.raises(ConfigError, match="--images must be a positive integer"):
        run_board(tmp_path / "m.rsq", port="/dev/null", images=0)
    with pytest.raises(ConfigError, match="holds no board build"):
        run_board(tmp_path / "m.rsq", port="/dev/null", build_dir=tmp_path)


@pytest.mark.slow
def test_run_board_on_a_trained_model_over_the_pty(exported):
    """``rootshift run``'s library function end to end on digits, the board replaced by a pty device."""
    from rootshift.sim.board import run_board
    from rootshift.sim.driver import hardware_for
    from rootshift.sw import rsq

    params = hardware_for(rsq.load(exported), 2, 2)
    port, close = _pty_device(params, 512 // 4)
    try:
        r = run_board(exported, port=port, images=2, board="icebreaker")
    finally:
        close()
    assert r["images"] == 2 and r["mismatches"] == 0 and r["board"] == "icebreaker"
    assert r["device_cycles_per_image"] > 0 and r["link_s_per_image"] > 0 and r["images_per_s"] > 0


def test_probe_names_a_board_that_is_not_this_engine():
    from rootshift.sim.board import _probe
    from rootshift.sw.errors import ConfigError

    _probe(ModelTransport(DeviceModel(PARAMS)), "/dev/ttyUSB1")          # the right engine: no error

    class Other:
        def transact(self, request):
            return [0x12340100, 0, 0]

    with pytest.raises(ConfigError, match="device on /dev/ttyUSB1 answered status 0x12340100"):
        _probe(Other(), "/dev/ttyUSB1")
