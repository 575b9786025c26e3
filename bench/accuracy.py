"""Accuracy of the quantization schemes at W4/W3/W2 on digits and MNIST-5k (ResNet-8, same epochs and seeds).

Every seed trains its own fp run first; ``shift`` (weights and activations) and ``shift-w`` (weights
only, activations fp: the paper's headline setting) fine-tune from it for the same number of epochs, as
the paper's recipe does. Every run uses ``--threads`` torch threads (results depend on it), and
``--jobs`` runs go in parallel processes, which changes nothing in the numbers. Cells are the mean over
seeds with the range; the per-seed values follow the table. For shift runs the soft model (the soft
staircase at the final temperature) is evaluated too (the soft/hard agreement on the data), and so is
the hard model after ``recalibrate_bn`` (rows ``+bn``). Targets are judged on the trained models.

``--runs DIR`` keeps every run directory under DIR and reuses a finished run whose configuration *and*
training code (a hash of the ``sw/`` sources) are identical, with the accuracies it recorded; training at
a fixed thread count is deterministic, so a reused run is the run this command would make. Without it the
runs go to a temporary directory.

Targets: post+asq W4A4 within 0.5 points of fp and not below lsq; shift W2A2 >= 96 % (digits) and
>= 96.5 % (MNIST-5k); shift within 1 point of lsq at every width; shift-w W4 within 0.5 points of fp.
"""

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import json
import multiprocessing as mp
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, write_section  # noqa: E402

# name -> (wq, aq, fine-tuned from the fp run)
METHODS = {"fp": ("fp", "fp", False), "lsq": ("lsq", "lsq", False), "pot": ("pot", "lsq", False),
           "apot": ("apot", "lsq", False), "post": ("post", "lsq", False), "post+asq": ("post", "asq", False),
           "shift": ("shift", "shift", True), "shift-w": ("shift", "fp", True)}
QUICK = {"data": ["digits"], "bits": [2], "seeds": [0], "methods": ["fp", "lsq", "post+asq", "shift", "shift-w"]}


SW = Path(__file__).resolve().parent.parent / "sw"


def code_hash():
    """Hash of the training code (every ``sw/**/*.py``): a cached run is reused only under the same code."""
    h = hashlib.sha256()
    for f in sorted(SW.rglob("*.py")):
        h.update(str(f.relative_to(SW)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _run(job):
    """One run, or its cached result (see ``--runs``): (key, test accuracy, (soft, +bn) accuracies or None)."""
    stamp = Path(job["cfg"]["out"]) / "bench.json"
    want = {"cfg": job["cfg"], "threads": job["threads"], "code": job["code"]}
    if job["reuse"] and stamp.is_file():
        got = json.loads(stamp.read_text())
        if {k: got.get(k) for k in want} == want:
            return job["key"], got["acc"], _with_band(job, got["soft"])
    key, acc, soft = _train(job)
    if job["reuse"]:
        from rootshift.sw.fileio import atomic_write_json

        atomic_write_json(stamp, want | {"acc": acc, "soft": soft})
    return key, acc, _with_band(job, soft)


def _with_band(job, soft):
    """Append the fractions of activation and weight values inside the soft/hard band (the values where
    the soft quantizer at the final temperature may differ from the hard one) on the test set."""
    if soft is None:
        return None
    import torch

    torch.set_num_threads(job["threads"])
    from rootshift.sw.data import load_dataset, to_input
    from rootshift.sw.quant.shift import ShiftQuantizer, band
    from rootshift.sw.train import load_checkpoint, model_from_checkpoint

    model, _ = model_from_checkpoint(load_checkpoint(job["cfg"]["out"]))
    counts = {False: [0, 0], True: [0, 0]}  # signed (weights) -> [in band, all]

    def count(q, x):
        lv = q.soft_levels
        r = (x.detach() / q.alpha).clamp(float(lv[0]), float(lv[-1]))
        i = torch.bucketize(r, lv, right=True).clamp(1, len(lv) - 1)
        u = (r - lv[i - 1]) / (lv[i] - lv[i - 1])
        counts[q.signed][0] += int(((u - 0.5).abs() < band(q.temperature)).sum())
        counts[q.signed][1] += r.numel()

    for mod in model.modules():
        if isinstance(getattr(mod, "wq", None), ShiftQuantizer):
            count(mod.wq, mod.weight)
        if isinstance(mod, ShiftQuantizer) and not mod.signed:
            mod.register_forward_hook(lambda q, inp, out: count(q, inp[0]))
    ds = load_dataset(job["cfg"]["data"])
    with torch.no_grad():
        for i in range(0, len(ds.test), 256):
            model(to_input(ds.test.batch(range(i, min(len(ds.test), i + 256)))[0]))
    frac = [c[0] / c[1] if c[1] else None for c in (counts[False], counts[True])]
    return list(soft[:2]) + frac


def _train(job):
    import torch

    torch.set_num_threads(job["threads"])
    from rootshift.sw.quant.shift import ShiftQuantizer, soft_forward
    from rootshift.sw.data import load_dataset
    from rootshift.sw.train import TrainConfig, evaluate, load_checkpoint, model_from_checkpoint, train

    m = train(TrainConfig(**job["cfg"], force=True), progress=False)
    soft = None
    if job["cfg"]["wq"] == "shift":
        from rootshift.sw.data import to_input
        from rootshift.sw.layers import recalibrate_bn

        model, _ = model_from_checkpoint(load_checkpoint(job["cfg"]["out"]))
        assert any(isinstance(q, ShiftQuantizer) for q in model.modules())
        ds = load_dataset(job["cfg"]["data"])
        with soft_forward(model):
            soft_acc = evaluate(model, ds.test)
        n = len(ds.train)
        recalibrate_bn(model, (to_input(ds.train.batch(range(i, min(n, i + 256)))[0]) for i in range(0, n, 256)))
        soft = (soft_acc, evaluate(model, ds.test))
    return job["key"], m["test_acc"], list(soft) if soft else None


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f} %"


def _fmt(vals):
    v = [100 * x for x in vals]
    mean = sum(v) / len(v)
    return f"{mean:.2f}" if len(v) == 1 else f"{mean:.2f} ({min(v):.2f}-{max(v):.2f})"


def _mean(results, key):
    v = results.get(key)
    return None if not v else 100 * sum(v) / len(v)


def main(argv=None):
    ap = add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    ap.add_argument("--data", nargs="+", choices=["digits", "mnist5k"])
    ap.add_argument("--bits", nargs="+", type=int)
    ap.add_argument("--seeds", nargs="+", type=int)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    ap.add_argument("--runs", type=Path, help="keep run directories here and reuse identical finished runs")
    ap.add_argument("--section", default="accuracy",
                    help="results section to (re)write: a filtered run can go beside the main table, not over it")
    a = ap.parse_args(argv)
    configure(a)
    full = {"data": ["digits", "mnist5k"], "bits": [4, 3, 2], "seeds": [0, 1, 2], "methods": list(METHODS)}
    for k, v in (QUICK if a.quick else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    import torch

    torch.set_num_threads(a.threads)  # the thread count write_section records is the one every run used
    if "fp" not in a.methods and any(METHODS[m][2] for m in a.methods):
        a.methods = ["fp"] + a.methods  # the shift recipe fine-tunes from the fp run
    results, soft, bands = {}, {}, {}
    code = code_hash()
    with (contextlib.nullcontext(str(a.runs)) if a.runs else tempfile.TemporaryDirectory()) as tmp:
        def cfg(data, name, b, seed):
            wq, aq, ft = METHODS[name]
            return {"data": data, "wq": wq, "aq": aq, "wbits": b, "abits": b, "epochs": a.epochs, "seed": seed,
                    "init": f"{tmp}/{data}-fp-{seed}/checkpoint.pt" if ft else None,
                    "out": f"{tmp}/{data}-{name}-{b}-{seed}" if name != "fp" else f"{tmp}/{data}-fp-{seed}"}

        fp_jobs = [{"key": ("fp", d, None, s), "cfg": cfg(d, "fp", 4, s)} for d in a.data for s in a.seeds]
        q_jobs = [{"key": (n, d, b, s), "cfg": cfg(d, n, b, s)} for d in a.data for s in a.seeds for b in a.bits
                  for n in a.methods if n != "fp"]
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(a.jobs, mp_context=ctx) as ex:
            for phase in (fp_jobs, q_jobs):
                for job in phase:
                    job["threads"], job["code"], job["reuse"] = a.threads, code, a.runs is not None
                for (name, d, b, s), acc, sacc in ex.map(_run, phase):
                    for bb in (a.bits if b is None else [b]):
                        results.setdefault((name, d, bb), []).append(acc)
                    if sacc is not None:
                        soft.setdefault((name, d, b), []).append(sacc[0])
                        results.setdefault((name + "+bn", d, b), []).append(sacc[1])
                    if sacc is not None:
                        bands.setdefault((name, d, b), []).append(sacc[2:])
                    extra = (f" (soft model {sacc[0]:.4f}, hard after BN re-estimation {sacc[1]:.4f}, in band: "
                             f"{_pct(sacc[2])} of activations, {_pct(sacc[3])} of weights)") if sacc else ""
                    print(f"{d} seed {s} {name}" + (f" W{b}" if b else "") + f": {acc:.4f}{extra}", flush=True)

    cols = [(d, b) for d in a.data for b in a.bits]
    head = "| method | " + " | ".join(f"{d} W{b}A{b}" for d, b in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    rows = [r for n in a.methods for r in ([n, n + "+bn"] if METHODS[n][0] == "shift" else [n])]
    for name in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(results[(name, d, b)]) for d, b in cols) + " |")
    per_seed = []
    for name in rows:
        for d, b in cols:
            v = results[(name, d, b)]
            if name == "fp" and b != a.bits[0]:
                continue
            tag = "" if name == "fp" else f" W{b}" if name.startswith("shift-w") else f" W{b}A{b}"
            sv = soft.get((name, d, b))
            sl = f"; soft model {', '.join(f'{100 * x:.2f}' for x in sv)}" if sv else ""
            bv = bands.get((name, d, b))
            if bv:
                sl += ("; in the band at the final temperature: activations "
                       + ", ".join(_pct(x[0]) for x in bv) + ", weights " + ", ".join(_pct(x[1]) for x in bv))
            per_seed.append(f"* {name} {d}{tag}: {', '.join(f'{100 * x:.2f}' for x in v)}{sl}")
    cmd = "python bench/accuracy.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    body = (f"## Accuracy (ResNet-8, top-1 %, {a.epochs} epochs, seeds {a.seeds})\n\nMade by `{cmd.strip()}`. "
            "First conv and last linear at 8-bit weights, input as 8-bit pixel codes. `shift` (weights and "
            "activations) and `shift-w` (weights only, activations fp; its columns read W<b>) are fine-tuned "
            "from the same seed's fp run. `+bn` rows: the same trained shift models after "
            "`rootshift.sw.layers.recalibrate_bn` (batch-norm statistics re-estimated under the hard quantizers, "
            "one pass over the training set, no gradient); `rootshift train` already ends a shift run with this step, so "
            "the two rows differ only by a second pass. "
            f"Training code hash {code} (bench/accuracy.py code_hash). Cells: mean over seeds (min-max).\n\n"
            + "\n".join(lines) + "\n\nPer seed (in seed order), with the shift runs' soft model (the soft "
            "staircase at the final temperature) beside the hard one:\n\n" + "\n".join(per_seed))
    verdicts = []

    def verdict(ok, text):
        verdicts.append(f"* {text}: target {'met' if ok else 'NOT met'}.")

    for d in a.data:
        fp = _mean(results, ("fp", d, a.bits[0]))
        pa, lsq4 = _mean(results, ("post+asq", d, 4)), _mean(results, ("lsq", d, 4))
        if pa is not None and lsq4 is not None:
            verdict(round(fp - pa, 6) <= 0.5 and round(pa - lsq4, 6) >= 0,
                    f"{d}: post+asq W4A4 {pa:.2f} vs fp {fp:.2f} (gap {fp - pa:+.2f}) and lsq {lsq4:.2f}")
        def bn(name, b):
            v = _mean(results, (name + "+bn", d, b))
            return f" (+bn {v:.2f})" if v is not None else ""

        sh2 = _mean(results, ("shift", d, 2))
        if sh2 is not None:
            goal = 96.0 if d == "digits" else 96.5
            verdict(sh2 >= goal, f"{d}: shift W2A2 {sh2:.2f}{bn('shift', 2)} >= {goal}")
        for b in a.bits:
            sh, lsq = _mean(results, ("shift", d, b)), _mean(results, ("lsq", d, b))
            if sh is not None and lsq is not None:
                verdict(round(lsq - sh, 6) <= 1.0,
                        f"{d}: shift W{b}A{b} {sh:.2f}{bn('shift', b)} within 1 point of lsq {lsq:.2f}")
        sw4 = _mean(results, ("shift-w", d, 4))
        if sw4 is not None:
            verdict(round(fp - sw4, 6) <= 0.5, f"{d}: shift-w W4 {sw4:.2f}{bn('shift-w', 4)} within 0.5 points of fp {fp:.2f}")
    if verdicts:
        body += "\n\nTargets:\n\n" + "\n".join(verdicts)
    print(body)
    write_section(a.section, body)


if __name__ == "__main__":
    main()
