"""Co-simulation benchmark of the network engine: cycles per image, per-layer utilization, and where the
PEs wait, for the digits ResNet-8 (trained here, co-simulated on the RTL) and a ResNet-20 on 32x32 inputs
(random weights: cycles do not depend on them; by the cycle model, which equals the RTL cycle for cycle,
docs/engine.md), on 4x4 and 8x8 arrays. The old host-fed tile engine runs the same digits images in the
same run as the baseline.

Per conv/linear layer the step's cycles split three ways (they sum to 100 %):
* **MACs**: the PE-cycles that do a real multiply-accumulate (= utilization);
* **spatial idle**: k-slices enter the array but some PEs have no work (fewer positions than rows,
  fewer channels than columns, channel padding of the k-slice);
* **PEs wait**: no k-slice enters the array (the sequencer, the weight/multiplier setup, the tile gaps,
  the last tile's drain and requantization).
Quant, add and pool steps are all waiting time for the PEs; their share of the image is printed apart.
Utilization = MACs / (rows * cols * cycles), the host's input words excluded (docs/engine.md).

Targets (issue 9): >= 90 % utilization on the 3x3 convs, >= 80 % on the whole network, 0 mismatches.
"""

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, pyplot, write_figure, write_section  # noqa: E402

from rootshift.hw.engine.compiler import compile_model  # noqa: E402
from rootshift.hw.engine.cycles import cycle_report  # noqa: E402
from rootshift.sim.cosim import cosim_model  # noqa: E402
from rootshift.sim.engine_bench import ARRAYS, UNLIMITED, random_resnet20  # noqa: E402
from rootshift.sim.engine_cosim import compile_for_cosim, engine_cosim_model  # noqa: E402
from rootshift.sw import rsq  # noqa: E402
from rootshift.sw.export import export_checkpoint  # noqa: E402
from rootshift.sw.train import TrainConfig, load_checkpoint, train  # noqa: E402

TARGET_CONV3, TARGET_NET = 0.90, 0.80


def layer_split(program):
    """Per conv/linear step: utilization, spatial idle and PE-wait shares of its cycles (see the module
    docstring), from the cycle model, which the RTL equals step by step; plus the non-MAC steps' share."""
    a = program.params.array
    pes = a.rows * a.cols
    rep = cycle_report(program)
    rows, other = [], 0
    for row in rep["layers"]:
        if row["kind"] not in ("conv", "linear"):
            other += row["cycles"]
            continue
        issue = row["tiles"] * row["k_eff"]          # cycles in which a k-slice enters the array
        rows.append({"name": row["name"], "kernel": row["kernel"], "cycles": row["cycles"],
                     "util": row["macs"] / (pes * row["cycles"]),
                     "spatial": (issue * pes - row["macs"]) / (pes * row["cycles"]),
                     "wait": 1 - issue / row["cycles"]})
    return rep, rows, other / rep["cycles_per_image"]


def _conv3(rows, stem=True):
    """Lowest and highest utilization of the 3x3 convs (the first conv, the stem, included unless ``stem`` is False)."""
    u = [r["util"] for i, r in enumerate(rows) if r["kernel"] == [3, 3] and (stem or i > 0)]
    return min(u), max(u)


def _verdicts(label, rep, rows, mismatches=None):
    lo, _ = _conv3(rows)
    out = [f"* {label}: 3x3 convs >= {TARGET_CONV3:.0%}: {'met' if lo >= TARGET_CONV3 else 'NOT met'} "
           f"(lowest {100 * lo:.1f} %, {100 * _conv3(rows, stem=False)[0]:.1f} % without the stem); network >= {TARGET_NET:.0%}: "
           f"{'met' if rep['utilization'] >= TARGET_NET else 'NOT met'} ({100 * rep['utilization']:.1f} %)"]
    if mismatches is not None:
        out[-1] += f"; 0 mismatches: {'met' if mismatches == 0 else 'NOT met'} ({mismatches})"
    return out


def engine_table(title, program, measured=None):
    rep, rows, other = layer_split(program)
    lines = [f"### {title}", ""]
    if measured is not None:
        m = measured
        lines += [f"RTL ({m['sim']}): {m['images']} images, {m['mismatches']} mismatches in {m['compared_values']:,} "
                  f"values (every tensor through the debug read, and the logits), {m['cycles_per_image']:,.0f} cycles per "
                  f"image (model {m['cycles_model']:,}; steps off the model: {m['steps_off_model']}), build "
                  f"{m['build_s']:.0f} s, {m['wall_s_per_image']:.2f} s wall per image.", ""]
    lo, hi = _conv3(rows)
    blo, bhi = _conv3(rows, stem=False)
    lines += [f"{rep['cycles_per_image']:,} cycles per image; network utilization **{100 * rep['utilization']:.1f} %**; "
              f"3x3 convs {100 * lo:.1f}-{100 * hi:.1f} % (without the stem {100 * blo:.1f}-{100 * bhi:.1f} %); quant/add/pool steps {100 * other:.1f} % of the image.", "",
              "| layer | cycles | utilization | spatial idle | PEs wait |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['cycles']:,} | {100 * r['util']:.1f} % | {100 * r['spatial']:.1f} % | "
                     f"{100 * r['wait']:.1f} % |")
    return lines, rep, rows


def plot(panels):
    """Per conv/linear layer utilization, one panel per (title, rows, report): the bars, the network's
    utilization and issue 9's 90 % line for the 3x3 convs."""
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.3 * len(panels)), layout="constrained", squeeze=False)
    for ax, (title, rows, rep) in zip(axes[:, 0], panels):
        x = range(len(rows))
        ax.bar(x, [100 * r["util"] for r in rows], color=["C0" if r["kernel"] == [3, 3] else "C7" for r in rows])
        ax.axhline(100 * TARGET_CONV3, color="k", ls="--", lw=1, label=f"target {TARGET_CONV3:.0%} (3x3 convs, blue)")
        ax.axhline(100 * rep["utilization"], color="C3", lw=1, label=f"network {100 * rep['utilization']:.1f} %")
        ax.set_xticks(list(x), [r["name"].replace("stages.", "s").replace(".shortcut.0", ".sc") for r in rows],
                      rotation=60, ha="right", fontsize=6)
        ax.set_ylim(0, 105)
        ax.set_ylabel("PE utilization %", fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=6, loc="lower left")
    return fig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=[f"{r}x{c}" for r, c in ARRAYS], help="engine arrays")
    ap.add_argument("--images", type=int, default=4, help="digits test images co-simulated per array")
    ap.add_argument("--epochs", type=int, default=6, help="training epochs of the digits model")
    ap.add_argument("--model", type=Path, help="use this digits .rsq instead of training one")
    ap.add_argument("--sim", default="verilator", choices=("verilator", "icarus"), help="simulator")
    ap.add_argument("--no-tile", action="store_true", help="skip the old tile engine's baseline run")
    add_common_args(ap)
    a = ap.parse_args(argv)
    configure(a)
    if a.quick:
        a.sizes, a.images, a.epochs = ["4x4"], 1, 2
    sizes = [tuple(int(x) for x in s.split("x")) for s in a.sizes]
    t0 = time.time()
    sections, verdicts, base, panels = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model
        if model is None:
            train(TrainConfig(epochs=a.epochs, out=f"{tmp}/run"), progress=False)
            model = Path(tmp) / "model.rsq"
            rsq.save(export_checkpoint(load_checkpoint(f"{tmp}/run")), model)
        im = rsq.load(model)
        for r, c in sizes:
            m = engine_cosim_model(model, a.sim, a.images, r, c, cache=Path(tmp) / "cache")
            lines, rep, rows = engine_table(f"digits ResNet-8, {r}x{c} engine", compile_for_cosim(im, r, c), m)
            sections.append("\n".join(lines))
            panels.append((f"digits ResNet-8, {r}x{c} engine (RTL = model)", rows, rep))
            verdicts += _verdicts(f"digits {r}x{c}", rep, rows, m["mismatches"] + len(m["steps_off_model"] or []))
            print(sections[-1], flush=True)
            if not a.no_tile:
                t = cosim_model(model, a.sim, 1, r, c, cache=Path(tmp) / "cache")
                base.append(f"| {r}x{c} | {t['cycles_per_image']:,.0f} | {100 * t['utilization']:.1f} % | "
                            f"{m['cycles_per_image']:,.0f} | {100 * m['utilization']:.1f} % | "
                            f"{t['cycles_per_image'] / m['cycles_per_image']:.2f}x | {t['mismatches']} |")
        r20 = random_resnet20()
        from rootshift.hw.engine.params import EngineParams
        from rootshift.hw.params import ArrayParams
        k = max(2, max(op["k"] for op in r20.layers()))
        for r, c in sizes:
            p = EngineParams(ArrayParams(wbits=8, abits=8, rows=r, cols=c, max_k=k, max_shift=7), **UNLIMITED)
            lines, rep, rows = engine_table(f"ResNet-20 32x32 (random weights), {r}x{c} engine, by the cycle model",
                                            compile_model(r20, p))
            sections.append("\n".join(lines))
            panels.append((f"ResNet-20 32x32, {r}x{c} engine (cycle model)", rows, rep))
            verdicts += _verdicts(f"ResNet-20 {r}x{c}", rep, rows)
            print(sections[-1], flush=True)
    if base:
        sections.insert(0, "\n".join(["### Against the old tile engine (same images, same run)", "",
                                      "| array | tile engine cycles/image | utilization | engine cycles/image | "
                                      "utilization | speed-up | tile mismatches |", "|---|---|---|---|---|---|---|", *base]))
    cmd = "python bench/cosim.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    body = (f"## Co-simulation of the network engine (digits ResNet-8 post+asq W4A4, ResNet-20)\n\n"
            f"Made by `{cmd.strip()}` in {(time.time() - t0) / 60:.0f} min. Arrays a8w8 dual (conv1 and fc carry "
            "8-bit weights). Column definitions: the docstring of bench/cosim.py.\n\n"
            + "\n\n".join(sections)
            + f"\n\n![Per-layer PE utilization of each engine, the network's and the 90 % target]({write_figure('cosim', plot(panels))})"
            + "\n\nTargets (issue 9):\n\n" + "\n".join(verdicts))
    write_section("cosim", body)


if __name__ == "__main__":
    main()
