"""Co-simulation benchmark: Verilator build time, simulated cycles per second, wall seconds per digits
image, and utilization per layer, for two array sizes; plus where each layer's cycles go.

The model is a post+asq W4A4 ResNet-8 trained on digits here (``--epochs``). Utilization is
MACs / (rows * cols * cycles). The cycle breakdown comes from replaying the host driver against the
Python device model (sim/model.py), whose cycle counts match the RTL's (both are printed).
Targets: 0 mismatches; <= 10 s wall per digits image after the build; utilization >= 90 % on the
3x3 convs of ResNet-8 with an 8x8 array, or a measured explanation of what stops it.
"""

import argparse
import shlex
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, write_section  # noqa: E402

from rootshift.hw import protocol as P  # noqa: E402
from rootshift.sim.cosim import cosim_model  # noqa: E402
from rootshift.sim.driver import HostDriver, hardware_for, run_sync  # noqa: E402
from rootshift.sim.model import DeviceModel, tile_cycles  # noqa: E402
from rootshift.sw import rsq  # noqa: E402
from rootshift.sw.data import load_dataset  # noqa: E402
from rootshift.sw.export import export_checkpoint  # noqa: E402
from rootshift.sw.train import TrainConfig, load_checkpoint, train  # noqa: E402


def breakdown(im, rows, cols, pixels):
    """Per layer: cycles spent accepting input words, on MACs (K per tile), in drain+requantization,
    and sending output words, from the driver's request stream and the controller's FSM timings."""
    p = hardware_for(im, rows, cols)
    dev = DeviceModel(p)
    out = defaultdict(lambda: defaultdict(int))

    def transact(req):
        layer = req.info.get("layer")
        if layer:
            o = out[layer]
            o["in_words"] += len(req.words)
            o["out_words"] += req.n_out
            for w in req.words:
                if w >> 28 == P.OP_START:
                    o["mac"] += dev.k
                    o["drain_requant"] += tile_cycles(p, dev.k) - dev.k
        return dev.transact(req.words, req.n_out)

    run_sync(HostDriver(p, im).run(pixels[:1]), transact)
    return out


def engine_section(im):
    """The network engine's cycles per image and utilization (its cycle model equals the RTL cycle for
    cycle, docs/engine.md) for the digits model and a random-weight ResNet-20 32x32, on 4x4 and 8x8."""
    from rootshift.sim.engine_bench import random_resnet20, rows

    lines = ["### Network engine (cycle model = RTL; docs/engine.md)", "",
             "| model | array | cycles/image | network utilization | 3x3 convs | quant steps' share |", "|---|---|---|---|---|---|"]
    for model, name in ((im, "digits ResNet-8 (trained)"), (random_resnet20(), "ResNet-20 32x32 (random weights)")):
        for r in rows(model, name):
            lines.append(f"| {name} | {r['array']} | {r['cycles_per_image']:,} | {100 * r['utilization']:.1f} % | "
                         f"{100 * r['conv3x3_min']:.1f}-{100 * r['conv3x3_max']:.1f} % | {100 * r['quant_share']:.1f} % |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", nargs="+", default=["8x8", "4x4"], help="tile-engine arrays to co-simulate")
    ap.add_argument("--images", type=int, default=4, help="digits test images per array")
    ap.add_argument("--epochs", type=int, default=6, help="training epochs of the digits model")
    ap.add_argument("--sim", default="verilator", choices=("verilator", "icarus"), help="simulator")
    add_common_args(ap)
    a = ap.parse_args(argv)
    configure(a)
    if a.quick:
        a.sizes, a.images, a.epochs = ["4x4"], 1, 2
    with tempfile.TemporaryDirectory() as tmp:
        train(TrainConfig(epochs=a.epochs, out=f"{tmp}/run"), progress=False)
        im = export_checkpoint(load_checkpoint(f"{tmp}/run"))
        model = Path(tmp) / "model.rsq"
        rsq.save(im, model)
        pixels = load_dataset("digits").test.x[:1].numpy()
        sections = []
        for size in a.sizes:
            rows, cols = (int(x) for x in size.split("x"))
            rep = cosim_model(model, a.sim, a.images, rows, cols, cache=Path(tmp) / "cache")
            cps = rep["cycles_per_image"] / rep["wall_s_per_image"]
            bd = breakdown(im, rows, cols, pixels)
            lines = [f"### {size} array ({a.sim})", "",
                     f"build {rep['build_s']:.1f} s, {rep['cycles_per_image']:.0f} cycles per image, "
                     f"{cps:,.0f} simulated cycles/s, {rep['wall_s_per_image']:.2f} s wall per image, "
                     f"{rep['mismatches']} mismatches in {rep['compared_values']} values, "
                     f"network utilization {100 * rep['utilization']:.1f} %", "",
                     "| layer | utilization | MAC cycles | input words | drain + requant | output words |",
                     "|---|---|---|---|---|---|"]
            for name, u in rep["utilization_per_layer"].items():
                b = bd[name]
                tot = b["in_words"] + b["mac"] + b["drain_requant"] + b["out_words"]
                lines.append(f"| {name} | {100 * u:.1f} % | {100 * b['mac'] / tot:.0f} % | {100 * b['in_words'] / tot:.0f} % | "
                             f"{100 * b['drain_requant'] / tot:.0f} % | {100 * b['out_words'] / tot:.0f} % |")
            sections.append("\n".join(lines))
            print(sections[-1], flush=True)
        sections.append(engine_section(im))
        print(sections[-1], flush=True)
    cmd = "python bench/cosim.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    body = (f"## Co-simulation (digits ResNet-8, post+asq W4A4, dual)\n\nMade by `{cmd.strip()}`. The four last columns "
            "split each layer's cycles (one image) into MACs, accepting input words, drain + requantization, and "
            "sending output words.\n\n" + "\n\n".join(sections))
    write_section("cosim", body)


if __name__ == "__main__":
    main()
