"""Pin-level co-simulation of the board: the whole :class:`~rootshift.hw.board.core.BoardCore` (UART,
framing, packet buffer, the network engine with the board's own program) in cocotb + Verilator, the
host's :class:`~rootshift.sim.engine_driver.EngineDriver` talking to it bit by bit on ``rx_pin`` /
``tx_pin`` (docs/boards.md, "Pin-level simulation"; the bench is :mod:`rootshift.sim.board_cocotb_bench`).

Only the clock is scaled: the simulation runs the UART at :data:`SIM_CLK_HZ` / :data:`SIM_BAUD` (4 clocks
per bit, the tightest divisor the UART accepts) instead of the ULX3S-85F's 75 MHz / 3 Mbaud (25), so a
byte costs 40 clocks instead of 250 and the images go through in seconds. Everything else (the engine, the program, the frame
format, the word width) is what the board's bitstream holds.
"""

import hashlib
import json
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from rootshift.sw.errors import ConfigError, RootshiftError

TOP = "rootshift_board_core"
SIM_CLK_HZ = 4_000_000
SIM_BAUD = 1_000_000
# the faults the test injects, each on the line of one INFER; what the host must call each one
DEFAULT_FAULTS = (
    {"after": 1, "where": "request", "kind": "corrupt", "frame": 1, "offset": 9, "expect": "device:bad_crc"},
    {"after": 1, "where": "request", "kind": "drop", "frame": 1, "offset": 20, "expect": "device:short"},
    {"after": 1, "where": "answer", "kind": "corrupt", "offset": 20, "expect": "answer_crc"},
    {"after": 1, "where": "answer", "kind": "drop", "offset": 20, "expect": "short_answer"},
)


def board_core(program, buffer_bytes, clk_hz=SIM_CLK_HZ, baud=SIM_BAUD, timeout_cycles=None):
    """:class:`BoardCore` around ``Engine(program)`` at the simulation's clock and baud rate. The link
    timeout (a frame that stops arriving) is 8 byte times unless given."""
    from rootshift.hw.board.core import BoardCore
    from rootshift.hw.board.uart import uart_divisor
    from rootshift.hw.engine.engine import Engine

    div = uart_divisor(clk_hz, baud)
    return BoardCore(Engine(program), clk_hz, baud, buffer_bytes, timeout_cycles or 8 * 10 * div)


def core_rtl(program, buffer_bytes, cache=None):
    """The core's Verilog for ``program`` and ``buffer_bytes``, generated once: ``(directory, manifest)``."""
    from amaranth.back import verilog

    from rootshift.sim.cosim import _hw_fingerprint, _lock, cache_dir
    from rootshift.sw.fileio import atomic_write_text
    from rootshift.sw.progress import task

    cache = Path(cache or cache_dir())
    key = hashlib.sha256(program.to_bytes() + _hw_fingerprint()
                         + f"{buffer_bytes},{SIM_CLK_HZ},{SIM_BAUD}".encode()).hexdigest()[:16]
    d = cache / f"board-rtl-{key}"
    d.mkdir(parents=True, exist_ok=True)
    with _lock(d / ".lock"):
        if not (d / "manifest.json").is_file():
            core = board_core(program, buffer_bytes)
            with task("generating the board core's Verilog (once)"):
                v = verilog.convert(core, name=TOP)
            atomic_write_text(d / f"{TOP}.v", v)
            atomic_write_text(d / "manifest.json", json.dumps({
                "top": TOP, "verilog_sha256": hashlib.sha256(v.encode()).hexdigest(), "buffer_bytes": buffer_bytes,
                "divisor": core.uart.divisor, "timeout_cycles": core.bridge.timeout,
                "data_bits": core.bridge.data_bits, "max_words": core.bridge.max_words}, sort_keys=True))
    return d, json.loads((d / "manifest.json").read_text())


def build(program, buffer_bytes, cache=None):
    """Verilator build of the core (cached by the Verilog's hash): ``(runner, build dir, manifest, build s)``."""
    from cocotb_tools.runner import get_runner

    from rootshift.hw.tools import verilator_env
    from rootshift.sim.cosim import _lock, _tail, cache_dir, toolchain_tag
    from rootshift.sim.engine_cosim import ENGINE_WAIVERS
    from rootshift.sw.progress import task

    rtl, man = core_rtl(program, buffer_bytes, cache)
    bdir = Path(cache or cache_dir()) / f"board-verilator-{man['verilog_sha256'][:16]}-{toolchain_tag('verilator')}"
    bdir.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: v for k, v in verilator_env().items() if k in ("PATH", "VERILATOR_ROOT")})
    runner = get_runner("verilator")
    t0 = time.perf_counter()
    with _lock(bdir / ".lock"):
        if (bdir / ".built").is_file():
            runner.build_dir = bdir
            return runner, bdir, man, 0.0
        log = bdir / "build.log"
        with task("building the Verilator model of the board core (once; minutes)"):
            try:
                runner.build(sources=[rtl / f"{TOP}.v"], hdl_toplevel=TOP, build_dir=bdir,
                             build_args=[*ENGINE_WAIVERS, "--output-split", "0"], always=True, log_file=log)
            except (RuntimeError, SystemExit) as e:
                raise RootshiftError(f"Verilator build of the board core failed ({e}); log {log}:\n{_tail(log)}") from e
        (bdir / ".built").write_text(man["verilog_sha256"])
    return runner, bdir, man, time.perf_counter() - t0


def _check_faults(faults, infer_words, max_words, word_bytes):
    """A ConfigError for a request fault whose byte is not in its frame of the ``INFER`` (``infer_words``
    words sent in frames of ``max_words``), before the simulator is built: the frame sizes follow from the
    array (a word is ``max(32, cols * abits)`` bits), so a fault list written for one array can miss on another."""
    from rootshift.hw.board import framing as F

    sizes = [F.REQUEST_HEADER + word_bytes * min(max_words, infer_words - i) + F.CRC_BYTES
             for i in range(0, infer_words, max_words)]
    for f in faults:
        if f["where"] == "request" and not (f["frame"] < len(sizes) and 0 <= f["offset"] < sizes[f["frame"]]):
            have = f"{sizes[f['frame']]} bytes" if f["frame"] < len(sizes) else "no such frame"
            raise ConfigError(f"request fault {f['kind']} at byte {f['offset']} of INFER frame {f['frame']}: the "
                              f"INFER is {infer_words} words of {word_bytes} bytes in frames of {max_words} "
                              f"words ({', '.join(map(str, sizes))} bytes); frame {f['frame']}: {have}")


def board_cosim(model_path, board="ulx3s-85f", images=2, rows=None, cols=None, buffer_bytes=512, max_words=8,
                faults=DEFAULT_FAULTS, overlap=True, data=None, cache=None):
    """Run ``images`` test images of ``model_path`` through the pin-level simulation of ``board``'s core.

    ``buffer_bytes`` is the device's request buffer (the board has 4 KiB; a smaller one keeps the Verilog
    small). The host first runs every image stop-and-wait in frames of ``max_words`` words, so an image's
    ``INFER`` spans several frames (a digits image at 4x4 is 17 words under protocol v4: three of 8) and a fault can hit a frame after the engine took the first one; then
    (``overlap``) the images again overlapped, one ``INFER`` per frame, which needs the whole ``INFER`` in
    the buffer. Returns ``{"images", "mismatches" (images with any logit off the golden model),
    "mismatched_logits", "cycles_per_image" (STATUS), "cycles_model", "faults": [{"expect", "kind_seen", ...}],
    "wrong_answers", "frames", "line_bytes_per_image", "sim_s_per_image", "overlap_mismatches",
    "overlap_sim_s_per_image" (simulated time between consecutive overlapped answers), "wall_s", "build_s"}``.
    """
    from cocotb_tools.check_results import get_results

    from rootshift.hw.board.boards import get_board
    from rootshift.hw.engine.cycles import cycle_report
    from rootshift.hw.engine.engine import port_config
    from rootshift.sim.board import board_engine, engine_program
    from rootshift.sim.cosim import _poll_lines, _tail, check_run_options
    from rootshift.sim.engine_driver import s32
    from rootshift.sw import golden, rsq
    from rootshift.sw.data import load_dataset
    from rootshift.sw.progress import task

    check_run_options("verilator", images)
    b = get_board(board)
    if board_engine(b) != "network":
        raise ConfigError(f"{b.name} carries the tile engine ({b.engine_why}); tests/test_board_link.py simulates that one")
    im = rsq.load(model_path)
    data = data or im.meta.get("train_config", {}).get("data", "digits")
    shape = im.meta.get("input_shape")
    ds = load_dataset(data, (shape or [0, 0, 224])[2])
    n = min(images, len(ds.test))
    pixels, labels = (t.numpy() for t in ds.test.batch(range(n)))
    if shape and list(pixels.shape[1:]) != list(shape):
        raise ConfigError(f"dataset {data} has {list(pixels.shape[1:])} inputs but the model was exported for {shape}")
    for f in faults:
        if not 0 <= f["after"] < n:
            raise ConfigError(f"a fault after image {f['after']} needs more than {n} images")
    program = engine_program(im, b, rows or b.rows, cols or b.cols)
    port = port_config(program)
    pixel_words = port.pix_words       # one INFER's packed pixel words (host protocol v4)
    _check_faults(faults, 1 + pixel_words, max_words, port.data_bits // 8)
    runner, bdir, man, built = build(program, buffer_bytes, cache)
    if not 1 <= max_words <= man["max_words"]:
        raise ConfigError(f"max_words must be in 1..{man['max_words']} (the device buffer), not {max_words}")
    if overlap and 1 + pixel_words > man["max_words"]:
        raise ConfigError(f"the overlapped run needs one INFER ({1 + pixel_words} words) per frame: a "
                          f"{buffer_bytes}-byte buffer holds {man['max_words']}")
    with tempfile.TemporaryDirectory() as tmp:
        # the host's read timeout covers one image's compute; the quiet time outlasts the device's link timeout
        model_cycles = cycle_report(program)["cycles_per_image"]
        job = {"program": program.to_bytes(), "images": [p.astype(np.int64) for p in pixels],
               "clk_hz": SIM_CLK_HZ, "divisor": man["divisor"], "data_bits": man["data_bits"],
               "max_words": max_words, "overlap_max_words": man["max_words"] if overlap else 0, "timeout_s": 4 * (model_cycles + 20_000) / SIM_CLK_HZ,
               "quiet_s": 2 * man["timeout_cycles"] / SIM_CLK_HZ, "faults": [dict(f) for f in faults],
               "result": str(Path(tmp) / "result.pkl"), "progress": str(Path(tmp) / "progress")}
        jf = Path(tmp) / "job.pkl"
        jf.write_bytes(pickle.dumps(job))
        log = Path(tmp) / "sim.log"
        (Path(tmp) / "run").mkdir()
        t0 = time.perf_counter()
        with task(f"{n} image(s) through the board core's pins (Verilator)", total=n) as bar, \
                _poll_lines(job["progress"], bar):
            runner.test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module="rootshift.sim.board_cocotb_bench",
                        build_dir=bdir, test_dir=Path(tmp) / "run", log_file=log,
                        extra_env={"ROOTSHIFT_JOB": str(jf)}, results_xml=str(Path(tmp) / "results.xml"))
        wall = time.perf_counter() - t0
        _, failed = get_results(Path(tmp) / "results.xml")
        if failed or not Path(job["result"]).is_file():
            raise RootshiftError(f"the board core bench failed:\n{_tail(log)}")
        res = pickle.loads(Path(job["result"]).read_bytes())
    if res["error"]:
        raise RootshiftError(f"the host driver failed in the pin-level simulation: {res['error']}")
    ref = golden.run(im, pixels)
    got = np.stack([s32(r["logits"]) for r in res["images"]])
    wrong = sum(1 for f in res["faults"] if f["kind_seen"] is None)
    ov = {}
    if res.get("overlap"):
        o = res["overlap"]
        og = s32(o["logits"])
        gaps = np.diff(o["answer_times"])[1:-1]       # between INFER answers that each carry logits
        ov = {"overlap_mismatches": int((og != ref).any(axis=1).sum()), "overlap_flags": o["flags"],
              "overlap_sim_s_per_image": float(np.median(gaps)) if len(gaps) else None}
    return {"images": n, "mismatches": int((got != ref).any(axis=1).sum()), "mismatched_logits": int((got != ref).sum()),
            "accuracy": float((got.argmax(1) == labels).mean()), "integer_acc": float((ref.argmax(1) == labels).mean()),
            "cycles_per_image": float(np.mean([r["cycles"] for r in res["images"]])), "cycles_model": model_cycles,
            "flags": sorted({r["flags"] for r in res["images"]}), "probe": res["probe"],
            "faults": [{k: f.get(k) for k in ("where", "kind", "frame", "offset", "expect", "kind_seen", "message")}
                       for f in res["faults"]],
            "wrong_answers": wrong, "frames": res["frames"],
            "line_bytes_per_image": float(np.mean([r["line_bytes"] for r in res["images"]])),
            "sim_s_per_image": float(np.mean([r["sim_s"] for r in res["images"]])),
            "clk_hz": SIM_CLK_HZ, "baud": SIM_BAUD, "buffer_bytes": buffer_bytes, "max_words": max_words,
            "device_max_words": man["max_words"], **ov,
            "board": b.name, "array": f"{program.params.array.rows}x{program.params.array.cols}",
            "sim_s": res["sim_s"], "wall_s": round(wall, 1), "build_s": round(built, 1), "led_error": res["led_error"]}
