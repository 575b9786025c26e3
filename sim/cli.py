"""The ``rootshift`` command: a thin layer of argument parsing over library functions.

It lives in ``sim`` because ``sim`` is the one layer allowed to import both ``sw`` and ``hw``.
Exit codes: 0 success, 1 a check failed (e.g. co-simulation mismatch), 2 bad arguments or
configuration, 3 a corrupt or incompatible file.
"""

import argparse
import json
import sys

from rootshift.sw.errors import ConfigError, FormatError, RootshiftError


def _cmd_train(a):
    from rootshift.sw.train import TrainConfig, train

    overrides = json.loads(a.override) if a.override else {}
    cfg = TrainConfig(data=a.data, model=a.model, wq=a.wq, aq=a.aq, wbits=a.wbits, abits=a.abits,
                      first_wbits=a.first_wbits, last_wbits=a.last_wbits, max_shift=a.max_shift,
                      epochs=a.epochs, seed=a.seed, out=a.out, lr=a.lr, batch_size=a.batch_size,
                      weight_decay=a.weight_decay, init=a.init, resume=a.resume, asq_revive=a.asq_revive,
                      image_size=a.image_size, overrides=overrides)
    m = train(cfg, progress=not a.quiet)
    if m is not None:
        print(json.dumps({k: v for k, v in m.items() if k != "history"}))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="rootshift", description="POST/ASQ QAT to bit-exact FPGA accelerators")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="quantization-aware training")
    t.add_argument("--data", default="digits", help="digits | mnist5k | cifar10:PATH | imagefolder:PATH")
    t.add_argument("--model", default="resnet8", help="resnet8 | resnet20 | resnet18 | resnet34")
    t.add_argument("--wq", default="post", help="post | pot | apot | lsq | shift | fp")
    t.add_argument("--aq", default="asq", help="asq | lsq | shift | fp")
    t.add_argument("--wbits", type=int, default=4)
    t.add_argument("--abits", type=int, default=4)
    t.add_argument("--first-wbits", type=int, default=8, help="weight bits of the first conv")
    t.add_argument("--last-wbits", type=int, default=8, help="weight bits of the last linear layer")
    t.add_argument("--max-shift", type=int, default=7, help="exponent window: at most this many right shifts")
    t.add_argument("--epochs", type=int, default=15)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--image-size", type=int, default=224, help="imagefolder crop size")
    t.add_argument("--init", help="fine-tune from this (full-precision) checkpoint")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--asq-revive", action="store_true", help="re-initialise dead ASQ adapters after each epoch")
    t.add_argument("--override", help='per-layer JSON, e.g. \'{"fc": {"wbits": 4}}\'')
    t.add_argument("--out", default="runs/x")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)
    for register in _extensions():
        register(sub)
    return p


def _extensions():
    """Sub-commands of later stages (export, generate, cosim, ...), registered by their modules."""
    from . import commands

    return commands.REGISTER


def main(argv=None):
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return a.func(a)
    except FormatError as e:
        print(f"rootshift {a.cmd}: error: {e}", file=sys.stderr)
        return e.exit_code
    except (ConfigError, RootshiftError) as e:
        print(f"rootshift {a.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
