"""Golden-model throughput (images per second) for the digits ResNet-8 and the CIFAR ResNet-20 shapes.

The models are exported from freshly quantized (untrained, calibrated) networks: throughput depends on
shapes, not on weights. Printed as a ratio to the float fake-quantized model in the same process.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, write_section  # noqa: E402

from rootshift.sw import golden
from rootshift.sw.data import to_input
from rootshift.sw.export import export_model
from rootshift.sw.layers import calibrate, layer_schemes, quantize_model
from rootshift.sw.models import build_model


def one(name, shape, n, mode):
    torch.manual_seed(0)
    m = build_model(name, shape[0], 10)
    quantize_model(m, layer_schemes(m, "post", "asq", 4, 4))
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8)
    calibrate(m, to_input(x[:32]))
    m.eval()
    im = export_model(m, mode=mode, input_shape=list(shape))
    golden.run(im, x[:2].numpy())  # warm the weight-term caches
    t0 = time.perf_counter()
    golden.run(im, x.numpy())
    tg = time.perf_counter() - t0
    with torch.no_grad():
        t0 = time.perf_counter()
        m(to_input(x))
        tf = time.perf_counter() - t0
    return n / tg, n / tf


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=256, help="resnet8 images per measurement (resnet20: 1/8)")
    add_common_args(ap)
    a = ap.parse_args(argv)
    configure(a)
    if a.quick:
        a.images = min(a.images, 64)
    print(f"{'model':<28}{'mode':>6}{'golden img/s':>14}{'float img/s':>13}{'golden/float':>14}")
    table = ["| model | mode | golden img/s | float img/s | golden / float |", "|---|---|---|---|---|"]
    for name, shape in (("resnet8", (1, 8, 8)), ("resnet20", (3, 32, 32))):
        for mode in ("dual", "lut"):
            g, f = one(name, shape, a.images if name == "resnet8" else max(16, a.images // 8), mode)
            label = name + " " + "x".join(map(str, shape))
            print(f"{label:<28}{mode:>6}{g:>14.1f}{f:>13.1f}{g / f:>14.3f}")
            table.append(f"| {label} | {mode} | {g:.1f} | {f:.1f} | {g / f:.3f} |")
    cmd = "python bench/golden.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    write_section("golden", f"## Golden-model throughput (CPU, int64 numpy)\n\nMade by `{cmd.strip()}`; float = the "
                  "fake-quantized torch model in the same process.\n\n" + "\n".join(table))


if __name__ == "__main__":
    np.set_printoptions(linewidth=120)
    main()
