"""Accuracy of every scheme at W4A4, W3A3, W2A2 on digits and MNIST-5k (ResNet-8, same epochs and seeds).

Prints the table and writes it to docs/results.md with the command that made it. The shift scheme
follows its paper's recipe: fine-tuned from this table's fp run for the same number of epochs.
Target: post+asq at W4A4 within 0.5 points of fp and not below lsq.
"""

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from rootshift.sw.train import TrainConfig, train  # noqa: E402

METHODS = [("lsq", "lsq", "lsq"), ("pot", "pot", "lsq"), ("apot", "apot", "lsq"), ("post", "post", "lsq"),
           ("post+asq", "post", "asq"), ("shift", "shift", "shift")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", nargs="+", default=["digits", "mnist5k"])
    ap.add_argument("--bits", nargs="+", type=int, default=[4, 3, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/results.md alone")
    a = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in a.data:
            for seed in a.seeds:
                fp_dir = f"{tmp}/{data}-fp-{seed}"
                m = train(TrainConfig(data=data, wq="fp", aq="fp", epochs=a.epochs, seed=seed, out=fp_dir), progress=False)
                for b in a.bits:
                    results.setdefault(("fp", data, b), []).append(m["test_acc"])
                print(f"{data} seed {seed} fp: {m['test_acc']:.4f}", flush=True)
                for b in a.bits:
                    for name, wq, aq in METHODS:
                        init = f"{fp_dir}/checkpoint.pt" if name == "shift" else None
                        m = train(TrainConfig(data=data, wq=wq, aq=aq, wbits=b, abits=b, epochs=a.epochs, seed=seed,
                                              init=init, out=f"{tmp}/{data}-{name}-{b}-{seed}"), progress=False)
                        results.setdefault((name, data, b), []).append(m["test_acc"])
                        print(f"{data} seed {seed} {name} W{b}A{b}: {m['test_acc']:.4f}", flush=True)
    cols = [(d, b) for d in a.data for b in a.bits]
    head = "| method | " + " | ".join(f"{d} W{b}A{b}" for d, b in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name in ["fp"] + [m[0] for m in METHODS]:
        cells = [100 * sum(results[(name, d, b)]) / len(results[(name, d, b)]) for d, b in cols]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    cmd = "python bench/accuracy.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    body = (f"## Accuracy (ResNet-8, top-1 %, {a.epochs} epochs, seeds {a.seeds})\n\nMade by `{cmd.strip()}`. "
            "First conv and last linear at 8-bit weights, input as 8-bit pixel codes; `shift` is fine-tuned from the fp run.\n\n"
            + "\n".join(lines))
    for d in a.data:
        if 4 in a.bits:
            fp, pa, lsq = (100 * sum(results[(k, d, 4)]) / len(a.seeds) for k in ("fp", "post+asq", "lsq"))
            ok = round(fp - pa, 6) <= 0.5 and round(pa - lsq, 6) >= 0
            body += f"\n\n{d}: post+asq W4A4 {pa:.2f} vs fp {fp:.2f} (gap {fp - pa:+.2f}) and lsq {lsq:.2f}: target {'met' if ok else 'NOT met'}."
    print(body)
    if not a.no_write:
        write_section("accuracy", body)
    print(json.dumps({f"{k[0]}|{k[1]}|W{k[2]}": v for k, v in results.items()}))


if __name__ == "__main__":
    main()
