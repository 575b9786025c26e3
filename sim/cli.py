"""The ``rootshift`` command: argument parsing and printing over :mod:`rootshift.sim.api`.

argparse (not Click): it is in the standard library, shows every default and choice through one
formatter, and keeps the command a thin layer with no extra dependency. Human output is formatted by
rich; ``--json`` prints the API's dict unchanged.

Exit codes: 0 success; 1 a check failed (a co-simulation mismatch); 2 bad arguments, configuration or
environment (including OS errors such as an unwritable ``--out``); 3 to 6 a corrupt, truncated or
incompatible file (docs/export-format.md); 7 an internal error (a bug: the traceback is saved to a file).
"""

import argparse
import json
import os
import sys

from .display import value_text

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 7

MODELS = ("resnet8", "resnet20", "resnet18", "resnet34")
WEIGHT_SCHEMES = ("post", "pot", "apot", "lsq", "shift", "fp")
ACT_SCHEMES = ("asq", "lsq", "shift", "fp")
SIMULATORS = ("verilator", "icarus")
EXPORT_MODES = ("dual", "lut")
DATA_HELP = "digits | mnist5k | cifar10:PATH | imagefolder:PATH"


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rootshift")
    except PackageNotFoundError:
        from rootshift.sw import __version__

        return __version__


# ---------------------------------------------------------------- output


def _console():
    """Terminal width on a terminal; wide enough for any table in a pipe or a file (no truncation)."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 240)


_fmt = value_text   # one formatting rule for the CLI and the report (sim/display.py)


def print_table(rows, columns, title=None):
    """An aligned table (rich) of dicts; columns are keys."""
    from rich.table import Table

    t = Table(title=title, show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c, no_wrap=True, justify="left" if c in ("name", "kind", "scheme", "act_scheme", "product_mode", "layer") else "right")
    for r in rows:
        t.add_row(*(_fmt(r.get(c), c) for c in columns))
    _console().print(t)


def print_fields(d, title=None, skip=()):
    """``key  value`` lines, aligned, nested dicts left to ``--json``."""
    from rich.table import Table

    t = Table(title=title, show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0))
    t.add_column(style="bold")
    t.add_column()
    for k, v in d.items():
        if k in skip or isinstance(v, dict):
            continue
        t.add_row(k, _fmt(v, k))
    _console().print(t)


def _emit(a, data, human):
    if getattr(a, "json", False):
        print(json.dumps(data, allow_nan=False))
    else:
        human(data)


# ---------------------------------------------------------------- commands


def _train_config(a):
    from rootshift.sw.errors import ConfigError

    overrides = {}
    if a.override:
        try:
            overrides = json.loads(a.override)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--override is not valid JSON ({e.msg} at character {e.pos}): {a.override!r}") from None
        if not isinstance(overrides, dict):
            raise ConfigError(f"--override must be a JSON object of layer name -> settings, not {a.override!r}")
    cfg = dict(data=a.data, model=a.model, wq=a.wq, aq=a.aq, wbits=a.wbits, abits=a.abits, first_wbits=a.first_wbits,
               last_wbits=a.last_wbits, max_shift=a.max_shift, epochs=a.epochs, seed=a.seed, out=a.out, lr=a.lr,
               batch_size=a.batch_size, weight_decay=a.weight_decay, init=a.init, resume=a.resume,
               asq_revive=a.asq_revive, image_size=a.image_size, overrides=overrides, force=a.force,
               augment=a.augment, tensorboard=a.tensorboard)
    return cfg


def cmd_train(a):
    from . import api

    m = api.train(progress=not a.json and not a.quiet, **_train_config(a))
    if m is not None:
        _emit(a, m, lambda d: print_fields(d, title=f"trained {a.out}"))
    return EXIT_OK


def cmd_flow(a):
    from .flow import print_summary, run_flow

    s = run_flow(data=a.data, out=a.out, epochs=a.epochs, wq=a.wq, aq=a.aq, wbits=a.wbits, abits=a.abits, seed=a.seed,
                 mode=a.mode, images=a.images, sim=a.sim, rows=a.rows, cols=a.cols, progress=not a.json,
                 log=(lambda *_: None) if a.json else print, force=a.force, engine=a.engine)
    _emit(a, s, print_summary)
    return EXIT_CHECK_FAILED if s["rtl_mismatches"] else EXIT_OK


def cmd_export(a):
    from . import api

    _emit(a, api.export(a.run, a.out, a.mode), lambda d: print_fields(d, title=f"exported {a.out}"))
    return EXIT_OK


INSPECT_COLUMNS = ["name", "kind", "scheme", "base", "wbits", "abits", "act_scheme", "product_mode", "acc_bits",
                   "distinct_codes", "k"]


def cmd_inspect(a):
    from . import api

    _emit(a, api.inspect(a.model), lambda rows: print_table(rows, INSPECT_COLUMNS, title=a.model))
    return EXIT_OK


def cmd_eval(a):
    from . import api

    _emit(a, api.evaluate(a.model, a.data, a.images, a.dump, a.dump_images),
          lambda d: print_fields(d, title=f"golden integer model: {a.model}"))
    return EXIT_OK


def cmd_generate(a):
    from . import api

    params = {k: getattr(a, k) for k in api.GENERATE_DEFAULTS}
    d = api.generate(a.out, model=a.model, rows=a.rows, cols=a.cols, **params)
    _emit(a, d, lambda d: print_fields(d | d["params"], title="generated"))
    return EXIT_OK


def cmd_compile(a):
    from . import api

    d = api.compile(a.model, a.out, a.rows, a.cols, board=a.board, weights_kib=a.weights_kib, fine_kib=a.fine_kib,
                    codes_kib=a.codes_kib, consts_kib=a.consts_kib)

    def human(d):
        print_fields(d | {"memory " + k: f"{v:,} of {d['memory_limits'][k]:,} bytes" for k, v in d["memory"].items()},
                     title=f"program for {a.model}", skip=("layers",))
        rows = [r for r in d.get("layers", []) if isinstance(r, dict)]
        if rows:
            print_table(rows, [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))])

    _emit(a, d, human)
    return EXIT_OK


def cmd_cosim(a):
    from . import api

    rep = api.cosim(a.model, a.sim, a.images, a.rows, a.cols, data=a.data, rtl=a.rtl, waves=a.waves, engine=a.engine)

    def human(r):
        print_fields(r, title=f"co-simulation: {a.model}", skip=("first_mismatch",))
        util = r.get("utilization_per_layer") or {}
        if util:
            print_table([{"layer": k, "utilization": v} for k, v in util.items()], ["layer", "utilization"])

    _emit(a, rep, human)
    if rep["mismatches"]:
        print(f"rootshift cosim: {rep['first_mismatch']['message']}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def cmd_build(a):
    from . import api

    d = api.build(a.model, a.board, a.out, a.rows, a.cols, a.auto, a.seed, engine=a.engine)

    def human(d):
        print_fields(d, title=f"bitstream for {d.get('board')}")
        res = d.get("resources") or {}
        print_table([{"resource": k, "used": v.get("used"), "available": v.get("available")} for k, v in res.items()],
                    ["resource", "used", "available"])

    _emit(a, d, human)
    return EXIT_OK


def cmd_estimate(a):
    from . import api

    d = api.estimate(a.model, a.board, a.rows, a.cols, engine=a.engine)

    def human(d):
        print_fields(d, title=f"estimate for {d.get('board', a.board)} (synthesis only)")
        res = d.get("resources") or {}
        print_table([{"resource": k, "used": v.get("used"), "available": v.get("available")} for k, v in res.items()
                     if isinstance(v, dict)], ["resource", "used", "available"])

    _emit(a, d, human)
    return EXIT_OK


def cmd_flash(a):
    from . import api

    d = api.flash(a.build, a.dry_run)
    _emit(a, d, lambda d: print(" ".join(d["command"]) if a.dry_run else f"flashed {d['board']}"))
    return EXIT_OK


def cmd_run(a):
    from . import api

    d = api.run(a.model, a.port, a.data, a.images, a.build, a.board, a.rows, a.cols, overlap=not a.no_overlap)
    _emit(a, d, lambda d: print_fields(d, title=f"on the board: {a.model}"))
    if d["mismatches"]:
        print(f"rootshift run: {d['mismatches']} image(s) differ from the golden model", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def cmd_report(a):
    from . import api

    d = api.report(a.run, a.out)
    _emit(a, d, lambda d: print(f"wrote {d['out']} ({', '.join(d['sections'])})"))
    return EXIT_OK


# ---------------------------------------------------------------- parser


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default; descriptions keep their line breaks."""

    def _get_help_string(self, action):
        h = action.help or ""
        no_default = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if no_default or "%(default)" in h or not action.option_strings:
            return h
        return h + " (default: %(default)s)"


def _add(sub, name, func, help, description=None):
    p = sub.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)
    p.set_defaults(func=func)
    return p


def _json(p, what="the result"):
    p.add_argument("--json", action="store_true", help=f"print {what} as one JSON object (no progress, no colour)")


def _training_options(p, out_default):
    p.add_argument("--data", default="digits", help=f"dataset: {DATA_HELP}")
    p.add_argument("--model", default="resnet8", choices=MODELS, help="network")
    p.add_argument("--wq", default="post", choices=WEIGHT_SCHEMES, help="weight quantizer")
    p.add_argument("--aq", default="asq", choices=ACT_SCHEMES, help="activation quantizer")
    p.add_argument("--wbits", type=int, default=4, help="weight bits (2..8)")
    p.add_argument("--abits", type=int, default=4, help="activation bits (2..8)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed (results also depend on the torch thread count)")
    p.add_argument("--out", default=out_default, help="run directory")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")


def build_parser():
    p = argparse.ArgumentParser(prog="rootshift", formatter_class=_Formatter,
                                description="Quantization-aware training to bit-exact FPGA accelerators: "
                                            "train, export, eval, generate, cosim.",
                                epilog="exit codes: 0 ok, 1 a check failed, 2 bad arguments or environment, "
                                       "3-6 a bad .rsq file, 7 internal error")
    p.add_argument("--version", action="version", version=f"rootshift {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    from rootshift.hw.board.boards import BOARDS

    t = _add(sub, "train", cmd_train, "quantization-aware training of a ResNet")
    _training_options(t, "runs/x")
    t.add_argument("--first-wbits", type=int, default=8, help="weight bits of the first conv")
    t.add_argument("--last-wbits", type=int, default=8, help="weight bits of the last linear layer")
    t.add_argument("--max-shift", type=int, default=7, help="exponent window: at most this many right shifts")
    t.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (cosine schedule)")
    t.add_argument("--batch-size", type=int, default=64, help="global batch size")
    t.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay of conv/linear weights")
    t.add_argument("--image-size", type=int, default=224, help="imagefolder crop size")
    t.add_argument("--init", help="fine-tune from this (full-precision) checkpoint; the shift recipe needs it")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--asq-revive", action="store_true", help="re-initialise dead ASQ adapters after each epoch")
    t.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no train-time augmentation (cifar10 and imagefolder crop+flip by default)")
    t.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard in --out (needs tensorboard)")
    t.add_argument("--override", help='per-layer settings as JSON, e.g. \'{"fc": {"wbits": 4}}\'')
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _json(t, "the final metrics")

    f = _add(sub, "flow", cmd_flow, "the main job end to end: train, export, eval, generate, cosim",
             "Train, export to the integer contract, evaluate the golden model, generate the RTL and co-simulate\n"
             "test images on it. Every option is checked before training starts. Writes OUT/summary.json.")
    _training_options(f, "runs/demo")
    f.add_argument("--mode", default="dual", choices=EXPORT_MODES, help="POST product mode of the export")
    f.add_argument("--images", type=int, default=4, help="test images to co-simulate on the RTL")
    f.add_argument("--sim", default="verilator", choices=SIMULATORS, help="simulator")
    f.add_argument("--rows", type=int, default=8, help="PE array rows")
    f.add_argument("--cols", type=int, default=8, help="PE array columns")
    f.add_argument("--engine", nargs="?", const="network", default="network", choices=("network", "tile"),
                   help="the co-simulated engine: the self-sequencing network engine (pixels in, logits out; "
                        "docs/engine.md) or the host-fed tile engine (docs/hardware.md) (default: network)")
    _json(f, "the summary")

    e = _add(sub, "export", cmd_export, "export a trained run to the integer contract (.rsq)")
    e.add_argument("run", help="run directory (or its checkpoint.pt)")
    e.add_argument("--out", required=True, help="output .rsq file")
    e.add_argument("--mode", default="dual", choices=EXPORT_MODES, help="POST product mode")
    _json(e)

    i = _add(sub, "inspect", cmd_inspect, "per-layer summary of an .rsq model")
    i.add_argument("model", help=".rsq file")
    _json(i, "one object per layer (a JSON list)")

    v = _add(sub, "eval", cmd_eval, "the golden integer model on a dataset's test split")
    v.add_argument("model", help=".rsq file")
    v.add_argument("--data", help=f"dataset ({DATA_HELP}; default: the one the model was trained on)")
    v.add_argument("--images", type=int, help="first N test images (default: all)")
    v.add_argument("--dump", help="write every layer's integers for --dump-images to this directory")
    v.add_argument("--dump-images", help="comma-separated test indices to dump (default: 0,1,2,3)")
    _json(v)

    g = _add(sub, "generate", cmd_generate, "emit Verilog for a PE-array accelerator (rootshift_top.v + manifest.json)")
    g.add_argument("--model", help="an .rsq model: build the smallest array that runs it (instead of the options below)")
    g.add_argument("--wbits", type=int, help="weight code bits (default: 4)")
    g.add_argument("--abits", type=int, help="activation code bits (default: 8)")
    g.add_argument("--base", choices=("sqrt2", "2"), help="power base of the weight levels (default: sqrt2)")
    from rootshift.hw.params import PE_MODES

    g.add_argument("--pe", choices=PE_MODES, help="PE product mode (default: dual)")
    g.add_argument("--max-k", type=int, help="largest K = Cin*kh*kw the array is built for (default: 1152)")
    g.add_argument("--max-shift", type=int, help="exponent window E, the largest shift (default: 7)")
    g.add_argument("--rows", type=int, default=8, help="PE array rows")
    g.add_argument("--cols", type=int, default=8, help="PE array columns")
    g.add_argument("--out", default="build/gen", help="output directory")
    _json(g)

    k = _add(sub, "compile", cmd_compile, "compile an .rsq model into a program for the network engine",
             "Compile a model into the engine's program (layer descriptors, weight image, memory plan) and predict\n"
             "its cycles per image. A model the hardware cannot run is refused, naming the layer, the quantity,\n"
             "the need and the limit (docs/engine.md).")
    k.add_argument("model", help=".rsq file")
    k.add_argument("--rows", type=int, help="PE array rows (output positions per tile; default: the board's, else 8)")
    k.add_argument("--cols", type=int, help="PE array columns (output channels per tile; default: the board's, else 8)")
    k.add_argument("--board", choices=sorted(BOARDS), help="compile for this board's engine: its array and memory "
                                                            "sizes (docs/boards.md); default: the engine's own")
    k.add_argument("--weights-kib", type=int, help="weight memory, KiB (default: the board's or the engine's, see docs/engine.md)")
    k.add_argument("--fine-kib", type=int, help="fine-activation memory, KiB (default: the engine's)")
    k.add_argument("--codes-kib", type=int, help="activation-code memory, KiB (default: the engine's)")
    k.add_argument("--consts-kib", type=int, help="constants memory, KiB (default: the engine's)")
    k.add_argument("--out", help="write the program's bytes here")
    _json(k)

    c = _add(sub, "cosim", cmd_cosim, "run an .rsq model on the RTL (cocotb) and compare every value with the golden model",
             "Co-simulate test images on the RTL and compare every layer's values with the golden model.\n"
             "Generated RTL and simulator builds are cached in $ROOTSHIFT_CACHE (default: ~/.cache/rootshift).")
    c.add_argument("model", help=".rsq file")
    c.add_argument("--sim", default="verilator", choices=SIMULATORS, help="simulator")
    c.add_argument("--images", type=int, default=16, help="test images to run")
    c.add_argument("--rows", type=int, default=8, help="PE array rows (ignored with --rtl)")
    c.add_argument("--cols", type=int, default=8, help="PE array columns (ignored with --rtl)")
    c.add_argument("--rtl", help="co-simulate what `rootshift generate` wrote in this directory")
    c.add_argument("--engine", nargs="?", const="network", choices=("network", "tile"),
                   help="the engine: the self-sequencing network engine (pixels in, logits out; docs/engine.md) or "
                        "the host-fed tile engine (docs/hardware.md) (default: network; tile with --rtl or --waves)")
    c.add_argument("--data", help=f"dataset ({DATA_HELP}; default: the one the model was trained on)")
    c.add_argument("--waves", help="on a mismatch, write the failing tile's waveform (VCD) here")
    _json(c)

    b = _add(sub, "build", cmd_build, "synthesize, place, route and pack a board bitstream for a model",
             "Build the board top (engine, UART bridge, PLL, LEDs) for a model with the open toolchain (YoWASP Yosys\n"
             "and nextpnr). Writes the bitstream and OUT/board.json. A design that does not fit or misses its\n"
             "clock is refused with the numbers. The same inputs and seed give the same bitstream.")
    b.add_argument("model", help=".rsq file")
    b.add_argument("--board", required=True, choices=sorted(BOARDS), help="target board (docs/boards.md)")
    b.add_argument("--out", required=True, help="build directory")
    b.add_argument("--rows", type=int, help="PE array rows (default: the board's)")
    b.add_argument("--cols", type=int, help="PE array columns (default: the board's)")
    b.add_argument("--auto", action="store_true", help="pick the largest array that fits and closes timing")
    b.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    b.add_argument("--engine", choices=["tile", "network"],
                   help="the engine in the board's slot (default: the board's, docs/boards.md); a network engine "
                        "on a board too small for it is refused with the numbers")
    _json(b, "the build report")

    es = _add(sub, "estimate", cmd_estimate, "predict a board build's LUT/FF/BRAM/DSP from synthesis alone")
    es.add_argument("model", help=".rsq file")
    es.add_argument("--board", required=True, choices=sorted(BOARDS), help="target board (docs/boards.md)")
    es.add_argument("--rows", type=int, help="PE array rows (default: the board's)")
    es.add_argument("--cols", type=int, help="PE array columns (default: the board's)")
    es.add_argument("--engine", choices=["tile", "network"], help="the engine in the board's slot (default: the board's)")
    _json(es, "the estimate")

    fl = _add(sub, "flash", cmd_flash, "program a board with a build's bitstream (iceprog / openFPGALoader)")
    fl.add_argument("build", help="build directory written by `rootshift build`")
    fl.add_argument("--dry-run", action="store_true", help="print the exact programmer command, run nothing")
    _json(fl)

    rn = _add(sub, "run", cmd_run, "run test images on the board over its serial port, checked against the golden model")
    rn.add_argument("model", help=".rsq file (the one the bitstream was built for)")
    rn.add_argument("--port", help="serial port, e.g. /dev/ttyUSB1")
    rn.add_argument("--build", help="the build directory (array size, baud and Fmax from its report)")
    rn.add_argument("--board", choices=sorted(BOARDS), help="board, when there is no --build (default: icebreaker)")
    rn.add_argument("--rows", type=int, help="PE array rows (default: from --build or the board)")
    rn.add_argument("--cols", type=int, help="PE array columns (default: from --build or the board)")
    rn.add_argument("--data", help=f"dataset ({DATA_HELP}; default: the one the model was trained on)")
    rn.add_argument("--images", type=int, default=16, help="test images to run")
    rn.add_argument("--no-overlap", action="store_true",
                    help="one request at a time (default: the next image's pixels go out while the current one "
                         "computes, on the network engine)")
    _json(rn)

    r = _add(sub, "report", cmd_report, "a self-contained HTML report of a run directory",
             "Training curves, weight histograms with the quantizer's levels, code usage, ASQ beta, agreement,\n"
             "and (where the run has them) co-simulation and build results, as one HTML page with embedded PNGs.")
    r.add_argument("run", help="a run directory (from `train` or `flow`)")
    r.add_argument("--out", help="output HTML file (default: RUN/report.html)")
    _json(r)
    return p


def _internal_error(cmd, exc):
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="rootshift-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        traceback.print_exception(exc, file=f)
    print(f"rootshift {cmd}: internal error: {type(exc).__name__}: {exc}\n"
          f"  this is a bug in rootshift; the traceback is in {path}", file=sys.stderr)
    return EXIT_INTERNAL


def main(argv=None):
    from rootshift.sw.errors import FormatError, RootshiftError

    a = build_parser().parse_args(argv)
    import warnings

    # an exception while elaborating leaves Amaranth objects unused: noise, never the user's problem
    warnings.filterwarnings("ignore", message=".*created but never used")
    if getattr(a, "json", False) or not sys.stdout.isatty():
        os.environ["ROOTSHIFT_QUIET"] = "1"
    try:
        return a.func(a)
    except FormatError as e:
        print(f"rootshift {a.cmd}: error: {e}", file=sys.stderr)
        return e.exit_code
    except RootshiftError as e:
        print(f"rootshift {a.cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"rootshift {a.cmd}: error:{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"rootshift {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug: one line, traceback to a file
        return _internal_error(a.cmd, e)


if __name__ == "__main__":
    sys.exit(main())
