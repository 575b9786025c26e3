"""What the 8-bit first conv and last linear cost (issue 9, "Mixed precision").

The default chain trains the first conv and the last linear with 8-bit weights and every other layer
at 4 bits. One PE array runs every layer, so it is built for the widest operands (docs/engine.md,
"Memory plan"): an a8w8 array whose 4-bit layers sit in 8-bit lanes. The alternative measured here is
a different hardware default, first and last at 4-bit weights: the array is a8w4 (the pixels stay
8-bit codes, so abits stays 8). Per choice this bench measures, in the same run:

* accuracy: post+asq W4A4 ResNet-8, the float (fake-quantized) and the integer (golden) model, per seed;
* the PE array (4x4 dual with its read-out, Yosys synthesis, iCE40 with ``-dsp`` and ECP5);
* the engine's memory plan for the digits model on a 4x4 array (the weight image's bytes).
"""

import argparse
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, write_section  # noqa: E402

EDGE_BITS = (8, 4)     # first/last layer weight bits: the default, and the alternative


def _run(job):
    """One training run + export + golden evaluation in a worker process."""
    import torch

    torch.set_num_threads(job["threads"])
    from rootshift.sw import rsq
    from rootshift.sw.evaluate import evaluate
    from rootshift.sw.export import export_checkpoint
    from rootshift.sw.train import TrainConfig, load_checkpoint, train

    m = train(TrainConfig(**job["cfg"]), progress=False)
    im = export_checkpoint(load_checkpoint(job["cfg"]["out"]))
    path = Path(job["cfg"]["out"]) / "model.rsq"
    rsq.save(im, path)
    ev = evaluate(im)
    return job["key"], m["test_acc"], ev["test_acc"], str(path)


def array_cost(edge, family, tmp):
    """LUT/FF/DSP of a 4x4 dual PEArray (read-out included) for the array the choice needs."""
    from hw_cost import measure

    from rootshift.hw.params import ArrayParams
    from rootshift.hw.pe_array import PEArray

    p = ArrayParams(wbits=edge, abits=8, rows=4, cols=4, pe="dual", base="sqrt2", max_k=576, max_shift=7)
    return measure(PEArray(p), f"arr_a8w{edge}", family, tmp)


def weight_bytes(model_path):
    """The engine's memory plan for the model on a 4x4 array, sized for the model's widest operands."""
    from rootshift.hw.engine.compiler import compile_model, summary
    from rootshift.sim.engine_cosim import engine_params
    from rootshift.sw import rsq

    im = rsq.load(model_path)
    s = summary(compile_model(im, engine_params(im, 4, 4)))
    a = s["array"]
    return s["memory"], f"a{a['abits']}w{a['wbits']}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["digits"], choices=["digits", "mnist5k"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    add_common_args(ap)
    a = ap.parse_args(argv)
    configure(a)
    import torch

    torch.set_num_threads(a.threads)     # the footer records the runs' thread count
    if a.quick:
        a.data, a.seeds, a.epochs = ["digits"], [0], 2
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [{"key": (d, e, s), "threads": a.threads,
                 "cfg": {"data": d, "wq": "post", "aq": "asq", "wbits": 4, "abits": 4, "first_wbits": e, "last_wbits": e,
                         "epochs": a.epochs, "seed": s, "out": f"{tmp}/{d}-{e}-{s}"}}
                for d in a.data for e in EDGE_BITS for s in a.seeds]
        res = {}
        with ProcessPoolExecutor(a.jobs) as ex:
            for key, fl, integer, path in ex.map(_run, jobs):
                res[key] = (fl, integer, path)
                print(f"{key}: float {100 * fl:.2f}, integer {100 * integer:.2f}", flush=True)
        cost = {(e, f): array_cost(e, f, tmp) for e in EDGE_BITS for f in ("ice40", "ecp5")}
        mem = {e: weight_bytes(res[(a.data[0], e, a.seeds[0])][2]) for e in EDGE_BITS}

    def cell(d, e, i):
        v = [100 * res[(d, e, s)][i] for s in a.seeds]
        m = sum(v) / len(v)
        return f"{m:.2f}" if len(v) == 1 else f"{m:.2f} ({min(v):.2f}-{max(v):.2f})"

    lines = ["| first/last weights | array | " + " | ".join(f"{d} float | {d} integer" for d in a.data)
             + " | iCE40 LUT / FF / DSP | ECP5 LUT / FF | weight image bytes (4x4) |",
             "|---" * (3 + 2 * len(a.data) + 2) + "|"]
    for e in EDGE_BITS:
        ci, ce = cost[(e, "ice40")], cost[(e, "ecp5")]
        lines.append(f"| {e}-bit{' (default)' if e == 8 else ''} | {mem[e][1]} | "
                     + " | ".join(f"{cell(d, e, 0)} | {cell(d, e, 1)}" for d in a.data)
                     + f" | {ci['lut']:,} / {ci['ff']:,} / {ci['dsp']} | {ce['lut']:,} / {ce['ff']:,} | {mem[e][0]['weights']:,} |")
    lines += ["", "Per seed (float, integer):", ""]
    for d in a.data:
        for e in EDGE_BITS:
            lines.append(f"* {d}, first/last {e}-bit: " + ", ".join(
                f"{100 * res[(d, e, s)][0]:.2f} / {100 * res[(d, e, s)][1]:.2f}" for s in a.seeds))
    lines += ["", "Cost of the 8-bit default against 4-bit first/last:", ""]
    for d in a.data:
        def mean(e, i):
            return sum(100 * res[(d, e, s)][i] for s in a.seeds) / len(a.seeds)
        lines.append(f"* {d}: integer accuracy {mean(8, 1) - mean(4, 1):+.2f} points for the 8-bit edges")
    for f in ("ice40", "ecp5"):
        lines.append(f"* {f}: the a8w8 array is {cost[(8, f)]['lut'] / cost[(4, f)]['lut']:.2f}x the a8w4 array's LUTs")
    lines.append(f"* weight image: {mem[8][0]['weights'] / mem[4][0]['weights']:.2f}x (8-bit lanes for every layer)")
    cmd = "python bench/mixed_precision.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    body = (f"## Mixed precision: 8-bit first and last layers, or a 4-bit default (issue 9)\n\n"
            f"Made by `{cmd.strip()}` in {(time.time() - t0) / 60:.0f} min. post+asq W4A4 ResNet-8, {a.epochs} epochs, "
            f"seeds {a.seeds}, {a.threads} torch thread(s) per run; the edge layers' weights at 8 (default) or 4 bits, pixels 8-bit codes either way. The array "
            "is the one the whole network needs (built for the widest operands: docs/engine.md). Cells: mean over seeds "
            "(min-max).\n\n" + "\n".join(lines))
    print(body)
    write_section("mixed_precision", body)


if __name__ == "__main__":
    main()
