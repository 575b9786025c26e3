"""Cycles per image and utilization of the engine by its cycle model (exact for the RTL, docs/engine.md).

``python -m rootshift.sim.engine_bench [model.rsq ...]`` prints one JSON row per model and array
(4x4 and 8x8, a8w8 dual, memories unlimited so the cycles are reported even where the plan does not
fit the default memories). Without a model it uses ResNet-20 on 32x32 inputs with random weights
(cycles do not depend on the weights).
"""

import json
import sys

from rootshift.hw.engine.compiler import compile_model, summary
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.params import ArrayParams

ARRAYS = ((4, 4), (8, 8))
UNLIMITED = dict(weights_kib=1 << 20, fine_kib=1 << 20, codes_kib=1 << 20, consts_kib=1 << 20)


def random_resnet20(seed=0):
    """An exported ResNet-20 (post+asq W4A4, 8-bit first and last) with random weights, 32x32x3 input."""
    import torch

    from rootshift.sw.export import export_model
    from rootshift.sw.layers import quantize_model
    from rootshift.sw.train import TrainConfig, build_quantized

    torch.manual_seed(seed)
    model, schemes = build_quantized(TrainConfig(model="resnet20"), 3, 10)
    quantize_model(model, schemes)
    model.train()
    with torch.no_grad():          # a few batches settle the BN statistics and the quantizers' steps
        for _ in range(3):
            model(torch.rand(16, 3, 32, 32))
    return export_model(model.eval(), "dual", input_shape=[3, 32, 32])


def rows(model, name):
    out = []
    for r, c in ARRAYS:
        k = max(2, max(op["k"] for op in model.layers()))
        p = EngineParams(ArrayParams(wbits=8, abits=8, rows=r, cols=c, max_k=k, max_shift=7), **UNLIMITED)
        s = summary(compile_model(model, p))
        conv3 = [x["utilization"] for x in s["layers"] if x["kind"] == "conv" and x["kernel"] == [3, 3]]
        quant = sum(x["cycles"] for x in s["layers"] if x["kind"] == "quant")
        out.append({"model": name, "array": f"{r}x{c}", "cycles_per_image": s["cycles_per_image"],
                    "utilization": s["utilization"], "conv3x3_min": min(conv3), "conv3x3_max": max(conv3),
                    "quant_share": round(quant / s["cycles_per_image"], 4), "memory": s["memory"]})
    return out


def main(argv=None):
    """Exit 0; 2 with one line naming the problem (a missing or bad model file)."""
    import argparse

    from rootshift.sw import rsq
    from rootshift.sw.errors import RootshiftError

    ap = argparse.ArgumentParser(prog="python -m rootshift.sim.engine_bench", description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", metavar="model.rsq",
                    help="exported models (default: ResNet-20, 32x32x3, random weights)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        models = [(rsq.load(p), p) for p in args.models]
    except (RootshiftError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for im, name in models or [(random_resnet20(), "resnet20-32x32-random")]:
        for row in rows(im, name):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
