"""Co-simulation of the self-sequencing engine (hw/engine/) with cocotb + Verilator (or Icarus), through
host protocol v2 exactly as a board would run it (docs/engine.md, "Co-simulation").

The Verilog of :class:`~rootshift.hw.engine.engine.Engine` for one compiled program (the program is
baked into memory inits) and the simulator build are cached in :func:`rootshift.sim.cosim.cache_dir`,
keyed by content: the program's bytes, the ``hw/`` sources and Amaranth's version select the Verilog,
its hash and the simulator select the build. The bench (:mod:`rootshift.sim.engine_cocotb_bench`) sends
pixels and reads the logits, every layer's tensor (debug reads of the whole fine memory and code banks)
and ``STATUS``; here they are compared value by value with :func:`rootshift.sw.golden.run`.
"""

import hashlib
import json
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from rootshift.hw.engine.compiler import compile_model, input_codes
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.engine import ENGINE_PROTOCOL_VERSION, MAGIC, Engine, port_config, rtl_check
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.engine.pixel_unpack import unpack_tail
from rootshift.hw.tools import LINT_WAIVERS, verilator_env
from rootshift.sim.cosim import (_hw_fingerprint, _lock, _poll_lines, _tail, cache_dir, check_run_options,
                                 icarus_kick, toolchain_tag)
from rootshift.sim.driver import hardware_for
from rootshift.sim.engine_driver import EngineDriver
from rootshift.sw import golden, rsq
from rootshift.sw.errors import ConfigError, RootshiftError

TOP = "rootshift_engine"
# The co-simulation checks the arithmetic and the protocol, not whether a plan fits a board: the program
# is baked into memory inits sized by the plan itself, so the limits only have to let the plan through.
COSIM_MEMORY = dict(weights_kib=1 << 14, fine_kib=1 << 14, codes_kib=1 << 14, consts_kib=1 << 14)
# Amaranth writes an If/Elif chain whose inputs are constant 0 (the PE's ``drain`` tied off in the
# engine) as a priority ``casez`` with overlapping patterns; Verilog's casez takes the first match,
# exactly Amaranth's semantics, so the overlap is harmless.
ENGINE_WAIVERS = (*LINT_WAIVERS, "-Wno-CASEOVERLAP")


def engine_params(im, rows, cols):
    """The engine for ``im`` on a ``rows`` x ``cols`` array (:func:`hardware_for`, co-simulation memories)."""
    return EngineParams(hardware_for(im, rows, cols), **COSIM_MEMORY)


def compile_for_cosim(im, rows, cols):
    """A ``debug`` program (every tensor kept, so every layer can be read back) that the RTL runs."""
    prog = compile_model(im, engine_params(im, rows, cols), debug=True)
    rtl_check(prog)
    return prog


def engine_rtl(program, cache=None, baked=True):
    """The engine's Verilog for ``program``, generated once: ``(directory, manifest)``. ``baked=False``: the
    program's memories start empty and the host loads them (``LOAD``)."""
    from amaranth.back import verilog

    cache = Path(cache or cache_dir())
    key = hashlib.sha256(program.to_bytes() + _hw_fingerprint() + (b"" if baked else b"load")).hexdigest()[:16]
    d = cache / f"engine-rtl-{key}"
    d.mkdir(parents=True, exist_ok=True)
    with _lock(d / ".lock"):
        if not (d / "manifest.json").is_file() or not (d / f"{TOP}.v").is_file():
            from rootshift.sw.fileio import atomic_write_text
            from rootshift.sw.progress import task

            with task("generating the engine's Verilog (once, about 10 s)"):
                v = verilog.convert(Engine(program, baked=baked), name=TOP)
            atomic_write_text(d / f"{TOP}.v", v)
            a = program.params.array
            atomic_write_text(d / "manifest.json", json.dumps({
                "top": TOP, "verilog": f"{TOP}.v", "verilog_sha256": hashlib.sha256(v.encode()).hexdigest(),
                "protocol_version": ENGINE_PROTOCOL_VERSION, "array": f"{a.rows}x{a.cols}", "baked": baked,
                "engine": program.params.to_dict()}, indent=1, sort_keys=True))
    return d, json.loads((d / "manifest.json").read_text())


def build(program, sim="verilator", cache=None, baked=True):
    """Compile the engine's Verilog for ``sim`` (cached by the Verilog's hash); ``(runner, dir, build_s)``."""
    from cocotb_tools.runner import get_runner

    from rootshift.sw.progress import task

    rtl, man = engine_rtl(program, cache, baked)
    bdir = Path(cache or cache_dir()) / f"engine-{sim}-{man['verilog_sha256'][:16]}-{toolchain_tag(sim)}"
    bdir.mkdir(parents=True, exist_ok=True)
    stamp = bdir / ".built"
    if sim == "verilator":
        os.environ.update({k: v for k, v in verilator_env().items() if k in ("PATH", "VERILATOR_ROOT")})
    runner = get_runner(sim)
    t0 = time.perf_counter()
    with _lock(bdir / ".lock"):
        if stamp.is_file():
            runner.build_dir = bdir
            return runner, bdir, 0.0
        source = rtl / f"{TOP}.v"
        if sim == "verilator":
            # one C++ translation unit: split output uses a precompiled header whose rule fails under make -j
            args, kw = [*ENGINE_WAIVERS, "--output-split", "0"], {}
        else:
            patched = bdir / f"{TOP}.icarus.v"
            patched.write_text(icarus_kick(source.read_text()))
            source, args, kw = patched, [], {"timescale": ("1ns", "1ps")}
        log = bdir / "build.log"
        with task(f"building the {sim} model of the {man['array']} engine (once; minutes)"):
            try:
                runner.build(sources=[source], hdl_toplevel=TOP, build_dir=bdir, build_args=args, always=True,
                             log_file=log, **kw)
            except (RuntimeError, SystemExit) as e:
                raise RootshiftError(f"{sim} build of the engine failed ({e}); log {log}:\n{_tail(log)}") from e
        stamp.write_text(man["verilog_sha256"])
    return runner, bdir, time.perf_counter() - t0


def pixel_words(program, pixels):
    """The ``INFER`` payload of one image (C, H, W): the codes in (y, x, c) order, packed ``data_bits //
    abits`` per word (host protocol v4, :meth:`EngineDriver.pixel_words`)."""
    return EngineDriver(program, _no_link).pixel_words(pixels)


def _no_link(request):
    raise AssertionError("encoding only")


def _mem_words(program, kind):
    return max((t["addr"] + t["words"] for t in program.tensors.values() if t["kind"] == kind), default=0)


def run_job(program, pixels, sim="verilator", cache=None, what=None, baked=True):
    """Run ``pixels`` (N, C, H, W) through the engine under cocotb; the bench's decoded answers per image.
    ``baked=False``: an engine with empty program memories; the bench loads the program over the stream
    first (``LOAD``, :meth:`EngineDriver.load_program`) and reports the load's words and clocks."""
    from cocotb_tools.check_results import get_results

    from rootshift.sw.progress import task

    runner, bdir, built = build(program, sim, cache, baked)
    L = program.params.lanes
    n_fine, n_codes = _mem_words(program, "fine"), _mem_words(program, "codes")
    model_cycles = cycle_report(program)["cycles_per_image"]
    with tempfile.TemporaryDirectory() as tmp:
        job = {"program": program.to_bytes(), "images": [np.asarray(p, np.int64) for p in pixels], "load": not baked,
               "budget_cycles": 2 * (model_cycles + (n_fine + n_codes) * (L + 2)) + 10_000,
               "result": str(Path(tmp) / "result.pkl"), "progress": str(Path(tmp) / "progress")}
        jf = Path(tmp) / "job.pkl"
        jf.write_bytes(pickle.dumps(job))
        test_dir = Path(tmp) / "run"
        test_dir.mkdir()
        log = Path(tmp) / "sim.log"
        t0 = time.perf_counter()
        with task(what or f"co-simulating the engine on {sim}", total=len(pixels)) as bar, \
                _poll_lines(job["progress"], bar):
            runner.test(hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module="rootshift.sim.engine_cocotb_bench",
                        build_dir=bdir, test_dir=test_dir, log_file=log,
                        extra_env={"ROOTSHIFT_JOB": str(jf), "COCOTB_REWRITE_ASSERTION_FILES": "engine_cocotb_bench.py"},
                        results_xml=str(Path(tmp) / "results.xml"),
                        timescale=("1ns", "1ps") if sim == "icarus" else None)
        _, failed = get_results(Path(tmp) / "results.xml")
        if failed or not Path(job["result"]).is_file():
            raise RootshiftError(f"engine cocotb bench failed under {sim}:\n{_tail(log)}")
        result = pickle.loads(Path(job["result"]).read_bytes())
    # the bench times step 0 from the edge that took the last pixel word; the image starts with the last
    # code, which the PixelUnpacker reaches unpack_tail cycles later (host protocol v4)
    pc = port_config(program)
    tail = unpack_tail(pc.pix_codes, pc.abits, pc.data_bits)
    for r in result["images"]:
        if r.get("step_cycles"):
            r["step_cycles"] = [r["step_cycles"][0] - tail] + list(r["step_cycles"][1:])
    result["sim_wall_s"] = time.perf_counter() - t0
    result["build_s"] = built
    return result


def tensor_from_words(program, name, words):
    """A tensor (C, H, W) decoded from its memory's words (N_words, lanes), as the debug read returns it."""
    return EngineDriver(program, _no_link).tensor_from_words(name, words)


def compare(program, im, pixels, images, trace=None):
    """Compare the engine's answers (the bench's per-image dicts: the driver's decoded logits, memories and
    :class:`~rootshift.sim.engine_driver.EngineStatus`) with the golden model.

    Returns ``(mismatched values, compared values, first mismatch or None, golden logits)``. Every
    tensor of the program is decoded from the debug reads and compared with the golden model's tensor of
    the same name (the input tensor with the pixels); then the logits; then ``STATUS`` (magic, version,
    flags 0).
    """
    a = program.params.array
    L = program.params.lanes
    if trace is None:
        trace = {}
        golden.run(im, pixels, trace=trace)
    ref = golden.run(im, pixels)
    gold = trace["tensors"]
    bad, compared, first = 0, 0, None

    def note(msg, **kw):
        nonlocal first
        if first is None:
            first = {"message": msg, **kw}

    for i, res in enumerate(images):
        mem = {k: np.asarray(res[k], np.int64).reshape(-1, L) for k in ("fine", "codes")}
        for step in program.steps:
            name = step["out"]
            t = program.tensors[name]
            got = tensor_from_words(program, name, mem[t["kind"]])
            exp = np.asarray(input_codes(program, pixels[i]) if step["kind"] == "input" else gold[name][i],
                             np.int64).reshape(got.shape)
            compared += exp.size
            diff = np.argwhere(got != exp)
            bad += len(diff)
            if len(diff):
                c, y, x = (int(v) for v in diff[0])
                tile = [(y * t["shape"][2] + x) // a.rows, c // a.cols]
                word = t["addr"] + (y * t["shape"][2] + x) * t["groups"] + c // L
                note(f"mismatch in layer {step['name']} (tensor {name}), image {i}, tile {tuple(tile)}, output index "
                     f"{(c, y, x)}: expected {int(exp[c, y, x])}, got {int(got[c, y, x])}",
                     layer=step["name"], tensor=name, image=i, tile=tile, index=[c, y, x], buffer=t["kind"],
                     word=word, lane=c % L, expected=int(exp[c, y, x]), got=int(got[c, y, x]))
        logits = np.asarray(res["logits"], np.int64)
        compared += ref[i].size
        diff = np.flatnonzero(logits != ref[i])
        bad += len(diff)
        if len(diff):
            k = int(diff[0])
            note(f"mismatch in the logits, image {i}, class {k}: expected {int(ref[i][k])}, got {int(logits[k])}",
                 layer="logits", image=i, index=[k], expected=int(ref[i][k]), got=int(logits[k]))
        st = res["status"]
        if st.magic != MAGIC or st.version != ENGINE_PROTOCOL_VERSION or st.flags:
            bad += 1
            s0 = st.magic << 16 | st.version << 8 | st.flags
            note(f"STATUS after image {i} is {s0:#010x}: want magic {MAGIC:#x}, version {ENGINE_PROTOCOL_VERSION}, "
                 f"flags 0 ({', '.join(st.errors) or 'wrong engine'})", layer="status", image=i, got=s0)
    return bad, compared, first, ref


def engine_cosim_model(model_path, sim="verilator", images=16, rows=4, cols=4, data=None, cache=None) -> dict:
    """Run ``images`` test images of an ``.rsq`` model on the engine's RTL and compare with the golden model.

    The same report as :func:`rootshift.sim.cosim.cosim_model` (``images``, ``mismatches`` (mismatched
    values), ``compared_values``, ``cycles_per_image`` (the engine's ``STATUS`` count), ``utilization``,
    ``utilization_per_layer`` (conv and linear steps, from the measured step boundaries),
    ``wall_s_per_image``, ``build_s``, ``sim``, ``array``, ``hardware``, ``integer_acc``, ``rtl_acc``,
    ``first_mismatch`` when there is one) plus ``cycles_model`` (the compiler's prediction),
    ``steps_off_model`` (steps whose measured cycles differ from the model's; None where the simulator
    does not expose the step counter) and ``protocol_version``. Bad arguments, a dataset that does not fit the model and a model the engine
    cannot run are refused (ConfigError) before the minutes-long simulator build.
    """
    from rootshift.sw.data import load_dataset

    check_run_options(sim, images)
    im = rsq.load(model_path)
    data = data or im.meta.get("train_config", {}).get("data", "digits")
    shape = im.meta.get("input_shape")
    ds = load_dataset(data, (shape or [0, 0, 224])[2])
    pixels = ds.test.batch(range(min(images, len(ds.test))))[0].numpy().astype(np.int64)
    if shape and list(pixels.shape[1:]) != list(shape):
        raise ConfigError(f"dataset {data} has {list(pixels.shape[1:])} inputs but the model was exported for {shape}")
    prog = compile_for_cosim(im, rows, cols)
    n = len(pixels)
    res = run_job(prog, pixels, sim, cache, what=f"co-simulating {n} image(s) on the engine ({sim})")
    return report(prog, im, pixels, res, sim, ds.test.y[:n].numpy())


def report(prog, im, pixels, res, sim, labels):
    """The co-simulation report (see :func:`engine_cosim_model`) from the bench's raw answers."""
    from dataclasses import asdict

    a = prog.params.array
    pes = a.rows * a.cols
    imgs = res["images"]
    n = len(imgs)
    bad, compared, first, ref = compare(prog, im, pixels, imgs)
    model = cycle_report(prog)
    cyc = [r["status"].image_cycles for r in imgs]
    util, off = {}, []
    for k, (step, row) in enumerate(zip(prog.steps, model["layers"])):
        if any(r.get("step_cycles") and r["step_cycles"][k] != row["cycles"] for r in imgs):
            off.append(step["name"])
        if step["kind"] in ("conv", "linear"):
            measured = [r["step_cycles"][k] for r in imgs if r.get("step_cycles")]
            c = float(np.mean(measured)) if measured else row["cycles"]
            util[step["name"]] = round(row["macs"] / (pes * c), 4)
    logits = np.stack([np.asarray(r["logits"], np.int64) for r in imgs])
    out = {"images": n, "mismatches": int(bad), "compared_values": int(compared),
           "cycles_per_image": float(np.mean(cyc)), "cycles_model": model["cycles_per_image"],
           "steps_off_model": off if all(r.get("step_cycles") for r in imgs) else None,
           "utilization": round(model["macs_per_image"] / (pes * float(np.mean(cyc))), 4),
           "utilization_per_layer": util, "wall_s_per_image": round(res["sim_wall_s"] / n, 3),
           "build_s": round(res["build_s"], 1), "sim": sim, "array": f"{a.rows}x{a.cols}", "hardware": asdict(a),
           "engine": "engine", "protocol_version": ENGINE_PROTOCOL_VERSION,
           "integer_acc": float((ref.argmax(1) == labels).mean()),
           "rtl_acc": float((logits.argmax(1) == labels).mean())}
    if first is not None:
        out["first_mismatch"] = first
    return out
