"""The public Python API: one function per ``rootshift`` command, each returning exactly the data that
the command prints under ``--json``. The CLI (:mod:`rootshift.sim.cli`) is a thin layer over these.

    from rootshift.sim import api as rs

    metrics = rs.train(data="digits", wq="post", aq="asq", wbits=4, abits=4, epochs=15, out="runs/x")
    info = rs.export("runs/x", out="runs/x/model.rsq")
    ev = rs.evaluate("runs/x/model.rsq")
    rep = rs.cosim("runs/x/model.rsq", images=4)
    page = rs.report("runs/x")

Functions that take a model accept a path to an ``.rsq`` file. Every failure raises
:class:`rootshift.sw.errors.RootshiftError` (or a subclass) with a message that names the problem.
"""

from dataclasses import asdict, fields
from pathlib import Path

from rootshift.sw.errors import ConfigError

__all__ = ["train", "export", "inspect", "evaluate", "generate", "compile", "cosim", "flow", "report", "build", "estimate",
           "flash", "run"]


def _load(model):
    from rootshift.sw import rsq

    return rsq.load(model)


def train(progress=True, **config):
    """Quantization-aware training into ``config['out']``; the metrics (without the per-epoch history).

    ``config`` takes the fields of :class:`rootshift.sw.train.TrainConfig`; an unknown one is refused.
    """
    from rootshift.sw.train import TrainConfig, train as _train

    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    m = _train(TrainConfig(**config), progress=progress)
    return None if m is None else {k: v for k, v in m.items() if k != "history"}


def export(run, out, mode="dual"):
    """Export a trained run (directory or ``checkpoint.pt``) to an ``.rsq`` integer model."""
    from rootshift.sw import rsq
    from rootshift.sw.evaluate import inspect_layers
    from rootshift.sw.export import export_checkpoint
    from rootshift.sw.train import load_checkpoint

    im = export_checkpoint(load_checkpoint(run), mode)
    rsq.save(im, out)
    ref = im.meta.get("float_reference", {})
    errs = im.meta.get("adapter_beta_error", {})
    modes = sorted({r["product_mode"] for r in inspect_layers(im)})
    return {"out": str(out), "layers": len(im.layers()), "mode": modes[0] if len(modes) == 1 else modes,
            "float_test_acc": ref.get("test_acc"), "adapter_beta_max_rel_err": max(errs.values(), default=None),
            "bytes": Path(out).stat().st_size}


def inspect(model):
    """Per layer: scheme, base, bits, product mode, accumulator width, codes used."""
    from rootshift.sw.evaluate import inspect_layers

    return inspect_layers(_load(model))


def evaluate(model, data=None, images=None, dump=None, dump_images=None):
    """The golden integer model on a test split; accuracy and top-1 agreement with the float model."""
    from rootshift.sw.evaluate import evaluate as _evaluate

    return _evaluate(_load(model), data, images, dump, dump_images)


GENERATE_DEFAULTS = {"wbits": 4, "abits": 8, "base": "sqrt2", "pe": "dual", "max_k": 1152, "max_shift": 7}


def generate(out, model=None, rows=8, cols=8, **params):
    """Write the Verilog of a PE-array accelerator and its ``manifest.json`` into ``out``.

    With ``model`` (an ``.rsq`` file) the array is the smallest that runs it (bits, base, PE mode,
    ``max_k``, exponent window); otherwise ``params`` (wbits, abits, base, pe, max_k, max_shift) default to
    :data:`GENERATE_DEFAULTS`.
    """
    from rootshift.hw.generate import generate as _generate
    from rootshift.hw.params import ArrayParams

    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(GENERATE_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown array parameter(s) {', '.join(unknown)}; known: {', '.join(GENERATE_DEFAULTS)}")
    if model is not None:
        if given:
            raise ConfigError(f"--model derives the array from the model; do not also give {', '.join('--' + k.replace('_', '-') for k in given)}")
        from rootshift.sim.driver import hardware_for

        p = hardware_for(_load(model), rows, cols)
    else:
        p = ArrayParams(rows=rows, cols=cols, **(GENERATE_DEFAULTS | given))
    man = _generate(p, out)
    return {"out": str(out), "top": man["top"], "verilog": str(Path(out) / man["verilog"]),
            "acc_bits": man["acc_bits"], "data_bits": man["data_bits"], "params": asdict(p)}


def compile(model, out=None, rows=None, cols=None, board=None, **memory_kib):
    """Compile an ``.rsq`` model into a program for the network engine (docs/engine.md).

    The array is the smallest that runs the model at ``rows`` x ``cols`` (default: ``board``'s, else 8 x 8);
    the buffer sizes are ``board``'s table (hw/board/boards.py) when given, else the engine's defaults, and
    ``memory_kib`` (``weights_kib``, ``fine_kib``, ``codes_kib``, ``consts_kib``) overrides either. Returns the
    memory plan and the predicted cycles per image; writes the program's bytes to ``out`` when given.
    """
    from rootshift.hw.engine.compiler import compile_model, summary
    from rootshift.hw.engine.params import EngineParams
    from rootshift.sim.driver import hardware_for
    from rootshift.sw.fileio import atomic_write_bytes

    given = {k: v for k, v in memory_kib.items() if v is not None}
    memory, default_size = {}, (8, 8)
    if board is not None:
        from rootshift.hw.board.boards import get_board, network_engine_refusal

        b = get_board(board)
        if network_engine_refusal(b):
            raise ConfigError(network_engine_refusal(b))
        memory, default_size = dict(b.engine_options), (b.rows, b.cols)
    from rootshift.sim.board import array_size

    rows, cols = array_size(rows, cols, *default_size)
    im = _load(model)
    params = EngineParams(array=hardware_for(im, rows, cols), **(memory | given))
    try:
        prog = compile_model(im, params)
    except ConfigError as e:
        if board is None and not given and "the hardware's limit" in str(e):
            raise ConfigError(f"{e} (the engine's default buffers; --board ulx3s-85f compiles for that board's "
                              f"memories, --weights-kib/--fine-kib/--codes-kib/--consts-kib set them)") from None
        raise
    from rootshift.hw.engine.engine import rtl_check

    rtl_check(prog)      # what the RTL engine cannot run (a descriptor field its bits cannot hold), before any write
    d = summary(prog)
    if out is not None:
        atomic_write_bytes(out, prog.to_bytes())
        d = {"out": str(out)} | d
    return d


def engine_kind(engine, rtl=None, waves=None):
    """``"network"`` or ``"tile"`` from ``engine`` (``"network"``/``True``, ``"tile"``/``False``, or ``None``:
    the network engine, unless ``rtl`` or ``waves`` ask for what only the tile engine has)."""
    if engine is None:
        return "tile" if rtl is not None or waves is not None else "network"
    if engine in (True, "network"):
        if rtl is not None or waves is not None:
            raise ConfigError("the network engine is built for the model itself: --rtl and --waves are for the tile "
                              "engine (--engine tile)")
        return "network"
    if engine in (False, "tile"):
        return "tile"
    raise ConfigError(f"--engine must be 'network' or 'tile', not {engine!r}")


def cosim(model, sim="verilator", images=16, rows=8, cols=8, data=None, rtl=None, waves=None, cache=None, engine=None):
    """Co-simulate test images of an ``.rsq`` model on the RTL and compare every value with the golden model.

    ``engine`` is ``"network"`` (the self-sequencing engine, pixels in and logits out: docs/engine.md; the
    default) or ``"tile"`` (the host-fed tile engine of docs/hardware.md; the default when ``rtl`` or
    ``waves`` is given). ``rtl`` co-simulates what :func:`generate` wrote there (refused if its manifest
    does not match the model); otherwise the RTL is generated into the cache
    (:func:`rootshift.sim.cosim.cache_dir`).
    """
    if engine_kind(engine, rtl, waves) == "network":
        from rootshift.sim.engine_cosim import engine_cosim_model

        return engine_cosim_model(model, sim, images, rows, cols, data=data, cache=cache)
    from rootshift.sim.cosim import cosim_model

    return cosim_model(model, sim, images, rows, cols, waves, cache=cache, data=data, rtl=rtl)


def flow(**options):
    """The main job end to end (train, export, eval, generate, cosim); the summary dict."""
    from rootshift.sim.flow import run_flow

    return run_flow(**options)


def report(run_dir, out=None):
    """A self-contained HTML report of a run directory; ``{"out": path, "sections": [...]}``."""
    from rootshift.sim.report import write_report

    return write_report(run_dir, out)


def build(model, board, out, rows=None, cols=None, auto=False, seed=1, engine=None):
    """Synthesize, place, route and pack a board bitstream for ``model`` (docs/boards.md); the report.
    ``engine`` (``tile`` or ``network``) defaults to the board table's."""
    from rootshift.sim.board import build as _build

    return _build(model, board, out, rows, cols, auto, seed, engine=engine)


def estimate(model, board, rows=None, cols=None, engine=None):
    """The board design's LUT/FF/BRAM/DSP from synthesis alone (seconds to minutes, no place and route)."""
    from rootshift.sim.board import estimate as _estimate

    return _estimate(model, board, rows, cols, engine=engine)


def flash(build_dir, dry_run=False):
    """Program the board with a build's bitstream (``dry_run``: only the exact command)."""
    from rootshift.sim.board import flash as _flash

    return _flash(build_dir, dry_run)


def run(model, port, data=None, images=16, build_dir=None, board=None, rows=None, cols=None, overlap=True):
    """Test images through the board on serial ``port``, every logit checked against the golden model.
    ``overlap``: send the next image's pixels while the current one computes (network engine)."""
    from rootshift.sim.board import run_board

    return run_board(model, port, data, images, build_dir, board, rows, cols, overlap=overlap)
