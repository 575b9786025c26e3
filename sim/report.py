"""``rootshift report``: one self-contained HTML page about a run, PNG plots embedded (no network needed).

The page explains the method as much as the run: each layer's weights against the quantizer's level
grid (POST's sqrt(2) grid, POT, shift), how many codes each layer really uses, and how the ASQ adapter
spreads beta over samples. Sections whose data the run lacks (no export, no co-simulation, no build)
are left out and listed as absent.
"""

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from rootshift.sw.errors import ConfigError
from rootshift.sw.fileio import atomic_write_text

from .display import value_text

MAX_BETA_IMAGES = 256


# ---------------------------------------------------------------- finding the run's files


def find_run_files(run_dir):
    """The checkpoint, metrics, export and reports of a ``train`` or ``flow`` run directory."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run directory {run} does not exist")
    pick = lambda *cands: next((c for c in cands if c.is_file()), None)  # noqa: E731
    files = {
        "checkpoint": pick(run / "checkpoint.pt", run / "train" / "checkpoint.pt"),
        "metrics": pick(run / "metrics.json", run / "train" / "metrics.json"),
        "model": pick(run / "model.rsq", *sorted(run.glob("*.rsq"))),
        "eval": pick(run / "eval.json"),
        "cosim": pick(run / "cosim.json"),
        "build": pick(run / "board.json", run / "build.json", *sorted(run.glob("*/board.json"))),
    }
    if files["checkpoint"] is None and files["metrics"] is None:
        raise ConfigError(f"{run} holds no run: no checkpoint.pt or metrics.json (in it or in {run / 'train'})")
    return files


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not readable JSON ({e})") from e


# ---------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _grid(n, width=3.2, height=2.4):
    plt = _plt()
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def plot_history(history):
    keys = [("train_loss", "train loss"), ("test_acc", "test accuracy")]
    if any((h.get("temperature") or 0) > 0 for h in history) and any(h.get("temperature") != history[0].get("temperature") for h in history):
        keys.append(("temperature", "shift temperature T"))
    fig, axes = _grid(len(keys), 4, 2.8)
    ep = [h["epoch"] for h in history]
    for ax, (k, label) in zip(axes, keys):
        ax.plot(ep, [h.get(k) for h in history], marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if k == "temperature":
            ax.set_yscale("log")
    return _png(fig)


def weight_levels(layer):
    """(normalised weights, level values or None, x label) for a quantized conv/linear layer."""
    from rootshift.sw.quant.levels import LevelQuantizer
    from rootshift.sw.quant.lsq import LSQWeight
    from rootshift.sw.quant.shift import ShiftQuantizer

    w = layer.weight.detach().double()
    wq = getattr(layer, "wq", None)
    view = (-1,) + (1,) * (w.dim() - 1)
    if isinstance(wq, LevelQuantizer):
        a = wq.alpha.detach().double().view(view)
        return (w / a).flatten().numpy(), wq.levels().double().numpy(), f"w / alpha ({wq.scheme})"
    if isinstance(wq, ShiftQuantizer):
        lv = wq.levels.double()
        lv = lv[lv > 0]
        return (w / float(wq.alpha)).flatten().numpy(), np.concatenate([-lv.numpy(), lv.numpy()]), "w / alpha (shift)"
    if isinstance(wq, LSQWeight):
        s = wq.step.detach().double().view(view)
        return (w / s).flatten().numpy(), np.arange(-wq.qn, wq.qp + 1, dtype=float), "w / step (lsq)"
    return w.flatten().numpy(), None, "w (float)"


def plot_weights(layers):
    fig, axes = _grid(len(layers))
    for ax, (name, layer) in zip(axes, layers):
        x, levels, label = weight_levels(layer)
        lo, hi = (levels.min(), levels.max()) if levels is not None else (x.min(), x.max())
        span = hi - lo or 1.0
        ax.hist(np.clip(x, lo - 0.25 * span, hi + 0.25 * span), bins=80, color="#4c72b0", alpha=0.85)
        if levels is not None:
            for v in levels:
                ax.axvline(v, color="#c44e52", lw=0.8, alpha=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    return _png(fig)


def plot_code_usage(ops):
    fig, axes = _grid(len(ops))
    for ax, op in zip(axes, ops):
        codes = np.asarray(op["codes"]).ravel()
        n = 2 ** int(op["wbits"])
        counts = np.bincount(codes.astype(np.int64) & (n - 1), minlength=n)
        ax.bar(np.arange(n), counts / max(1, counts.sum()), color="#55a868")
        used = int((counts > 0).sum())
        ax.set_title(f"{op['name']}: {used}/{n} codes", fontsize=9)
        ax.set_xlabel("weight code", fontsize=8)
        ax.tick_params(labelsize=7)
    return _png(fig)


def collect_beta(model, x):
    """beta(x) per sample for every ASQ activation quantizer of ``model`` on input ``x``."""
    import torch

    from rootshift.sw.quant.asq import ASQActivation

    betas, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, ASQActivation):
            def hook(mod, inp, _out, name=name):
                betas[name.removesuffix(".aq")] = mod.beta(inp[0]).detach().flatten().numpy()

            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return betas


def plot_beta(betas):
    plt = _plt()
    names = list(betas)
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(names) + 2), 3.2))
    ax.boxplot([betas[n] for n in names], showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("beta(x) per sample")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def plot_utilization(util):
    plt = _plt()
    names = list(util)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3))
    ax.bar(range(len(names)), [100 * util[n] for n in names], color="#8172b2")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("PE utilization %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


# ---------------------------------------------------------------- page


def _img(png, alt):
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(rows, columns):
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(value_text(r.get(c), c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}img{max-width:100%}.note{color:#666}"""


def build_report(run_dir):
    """``(html_text, sections)`` for a run directory."""
    import torch

    files = find_run_files(run_dir)
    sections, absent = [], []

    def section(sid, title, body):
        sections.append((sid, f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'))

    ck = None
    if files["checkpoint"]:
        from rootshift.sw.train import load_checkpoint

        ck = load_checkpoint(files["checkpoint"])
    metrics = _read_json(files["metrics"]) if files["metrics"] else None
    history = (metrics or {}).get("history") or (ck or {}).get("history") or []
    cfg = (ck or {}).get("config") or metrics or {}
    title = f"{cfg.get('wq', '?')}/{cfg.get('aq', '?')} W{cfg.get('wbits', '?')}A{cfg.get('abits', '?')} " \
            f"{cfg.get('model', '')} on {cfg.get('data', '?')}"
    summary = {"run": str(run_dir), "scheme": title}
    if metrics:
        summary |= {"test_acc": metrics.get("test_acc"), "epochs": metrics.get("epochs"), "seed": metrics.get("seed")}
    section("summary", "Run", _table([summary], list(summary)))

    if history:
        section("training", "Training curves", _img(plot_history(history), "training curves"))
    else:
        absent.append("training curves (no per-epoch history)")

    model = None
    if ck is not None:
        from rootshift.sw.layers import QConv2d, QLinear
        from rootshift.sw.train import model_from_checkpoint

        model, _ = model_from_checkpoint(ck)
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (QConv2d, QLinear))]
        section("weights", "Weights against the quantizer's levels",
                '<p class="note">Histogram of each layer\'s normalised float weights; red lines are the levels '
                "they are rounded to.</p>" + _img(plot_weights(layers), "weight histograms"))
    else:
        absent.append("weights (no checkpoint)")

    im = None
    if files["model"]:
        from rootshift.sw import rsq

        im = rsq.load(files["model"])
        ops = im.layers()
        section("codes", "Code usage per layer (export)", _img(plot_code_usage(ops), "code usage"))
    else:
        absent.append("code usage and agreement (no .rsq export in the run directory)")

    if model is not None:
        from rootshift.sw.data import load_dataset, to_input

        ds = load_dataset(cfg.get("data", "digits"), cfg.get("image_size", 224))
        n = min(MAX_BETA_IMAGES, len(ds.test))
        betas = collect_beta(model, to_input(ds.test.batch(range(n))[0]))
        if betas:
            rows = [{"layer": k, "min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())} for k, v in betas.items()]
            section("beta", f"ASQ beta per layer ({n} test images)",
                    _img(plot_beta(betas), "beta distribution") + _table(rows, ["layer", "min", "median", "max"]))
        else:
            absent.append("ASQ beta (the run has no ASQ activations)")

    if im is not None:
        ev = _read_json(files["eval"]) if files["eval"] else None
        if ev is None:
            from rootshift.sw.evaluate import evaluate

            ev = evaluate(im, cfg.get("data"))
        keys = [k for k in ("data", "images", "float_test_acc", "test_acc", "agreement_with_float") if k in ev]
        section("agreement", "Float vs integer (golden model)", _table([ev], keys))

    if files["cosim"]:
        cs = _read_json(files["cosim"])
        util = cs.get("utilization_per_layer") or {}
        keys = [k for k in ("sim", "array", "images", "mismatches", "compared_values", "cycles_per_image", "utilization",
                            "wall_s_per_image") if k in cs]
        body = _table([cs], keys)
        if util:
            body += _img(plot_utilization(util), "utilization per layer")
            body += _table([{"layer": k, "utilization": v} for k, v in util.items()], ["layer", "utilization"])
        section("cosim", "Co-simulation: cycles and utilization", body)
    else:
        absent.append("co-simulation (no cosim.json: run `rootshift flow` or save `rootshift cosim --json`)")

    if files["build"]:
        b = _read_json(files["build"])
        res = b.get("resources", {})
        rows = [{"resource": k, "used": v.get("used"), "available": v.get("available")} for k, v in res.items() if isinstance(v, dict)]
        head = {k: b.get(k) for k in ("board", "clock_mhz", "fmax_mhz", "sha256") if k in b}
        section("build", "FPGA build", _table([head], list(head)) + _table(rows, ["resource", "used", "available"]))
    else:
        absent.append("FPGA build (no board.json from `rootshift build` in the run directory or one below it)")

    if absent:
        sections.append(("absent", "<section id=\"absent\"><h2>Not in this run</h2><ul>"
                         + "".join(f"<li>{html.escape(a)}</li>" for a in absent) + "</ul></section>"))
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>rootshift report: {html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>rootshift report: {html.escape(title)}</h1>"
            + "".join(s for _, s in sections) + f"<p class=\"note\">torch {torch.__version__}</p></body></html>")
    return page, [sid for sid, _ in sections if sid != "absent"]


def write_report(run_dir, out=None):
    """Write the report (atomically) to ``out`` (default ``RUN/report.html``)."""
    out = Path(out) if out else Path(run_dir) / "report.html"
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name such as {out / 'report.html'}")
    page, sections = build_report(run_dir)
    atomic_write_text(out, page)
    return {"out": str(out), "sections": sections, "bytes": len(page.encode())}
