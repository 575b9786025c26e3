"""Training-step time (and, on a GPU, peak memory) of each quantized model as a ratio to fp, same process.

CPU: ResNet-20 at 32x32, batch 64. GPU (when available): ResNet-18 at 224x224, batch 256.
Target on a GPU: <= 1.15x fp step time and <= 1.3x fp peak memory.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, write_section  # noqa: E402

from rootshift.sw.layers import calibrate, layer_schemes, quantize_model  # noqa: E402
from rootshift.sw.models import build_model  # noqa: E402

CONFIGS = [("fp", "fp"), ("lsq", "lsq"), ("pot", "lsq"), ("apot", "lsq"), ("post", "lsq"), ("post", "asq"), ("shift", "shift")]


def bench(device, model_name, size, batch, classes, steps, warmup):
    rows = []
    for wq, aq in CONFIGS:
        torch.manual_seed(0)
        m = build_model(model_name, 3, classes)
        if wq != "fp":
            quantize_model(m, layer_schemes(m, wq, aq, 4, 4))
        m.to(device)
        x = torch.rand(batch, 3, size, size, device=device)
        y = torch.randint(0, classes, (batch,), device=device)
        calibrate(m, x)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(warmup + steps):
            if i == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / steps
        mem = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
        rows.append((f"{wq}/{aq}", dt, mem))
        del m, opt
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    add_common_args(ap)
    a = ap.parse_args(argv)
    configure(a)
    if a.quick:
        a.steps, a.warmup = min(a.steps, 2), min(a.warmup, 1)
    if torch.cuda.is_available():
        dev, spec = torch.device("cuda"), ("resnet18", 224, 256, 1000)
    else:
        dev, spec = torch.device("cpu"), ("resnet20", 32, 64, 10)
    rows = bench(dev, *spec, a.steps, a.warmup)
    base_t, base_m = rows[0][1], rows[0][2]
    print(f"device {dev}, {spec[0]} {spec[1]}x{spec[1]} batch {spec[2]}, W4A4")
    print(f"{'scheme':<14}{'step ms':>10}{'time/fp':>9}{'mem/fp':>9}")
    table = ["| scheme (W4A4) | step ms | time / fp | peak memory / fp |", "|---|---|---|---|"]
    for name, t, mem in rows:
        mr = f"{mem / base_m:.2f}" if mem else "n/a"
        print(f"{name:<14}{t * 1e3:>10.1f}{t / base_t:>9.2f}{mr:>9}")
        table.append(f"| {name} | {t * 1e3:.1f} | {t / base_t:.2f} | {mr} |")
    import shlex

    cmd = "python bench/qat_step.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    write_section(f"qat_step_{dev.type}", f"## QAT step time ({dev.type}: {spec[0]} {spec[1]}x{spec[1]}, batch {spec[2]})\n\n"
                  f"Made by `{cmd.strip()}`; ratios against the fp model in the same process. The GPU target "
                  "(<= 1.15x time, <= 1.3x memory on ResNet-18 224x224 batch 256) needs a CUDA machine.\n\n" + "\n".join(table))


if __name__ == "__main__":
    main()
