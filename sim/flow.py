"""The main job end to end on one dataset: train -> export -> golden eval -> generate -> cosim.

Every stage's options are checked before training starts (a bad ``--sim`` or an unexportable scheme
must not cost minutes of training). Each stage is a library call on what the previous one wrote
under ``out``; the summary fits one screen and is written to ``out/summary.json``, the evaluation and
co-simulation reports beside it (``eval.json``, ``cosim.json``) for ``rootshift report``.
"""

from pathlib import Path

from rootshift.hw.generate import generate
from rootshift.hw.params import ArrayParams
from rootshift.sw import rsq
from rootshift.sw.errors import ConfigError
from rootshift.sw.evaluate import evaluate
from rootshift.sw.export import SUPPORTED_A, SUPPORTED_W, export_checkpoint
from rootshift.sw.fileio import atomic_write_json
from rootshift.sw.train import TrainConfig, load_checkpoint, train

from .cosim import check_run_options, cosim_model
from .driver import hardware_for


def check_flow_options(cfg: TrainConfig, mode, images, sim, rows, cols):
    """Everything about the later stages that can be known before training; raises ConfigError."""
    cfg.validate()
    if cfg.wq not in SUPPORTED_W:
        raise ConfigError(f"--wq {cfg.wq} cannot be exported to the integer contract (supported: {', '.join(SUPPORTED_W)})")
    if cfg.aq not in SUPPORTED_A:
        raise ConfigError(f"--aq {cfg.aq} cannot be exported to the integer contract (supported: "
                          f"{', '.join(a for a in SUPPORTED_A if a != 'input8')})")
    if mode not in ("dual", "lut"):
        raise ConfigError(f"--mode must be dual or lut, not {mode!r}")
    if mode == "lut" and cfg.wq != "post":
        raise ConfigError(f"--mode lut is a POST product mode; --wq {cfg.wq} has no lut mode (use --mode dual)")
    check_run_options(sim, images)
    # the array's own checks (rows, cols), with the bits this run will need
    ArrayParams(wbits=max(cfg.wbits, cfg.first_wbits, cfg.last_wbits), abits=8, rows=rows, cols=cols)


def run_flow(data="digits", out="runs/demo", epochs=15, wq="post", aq="asq", wbits=4, abits=4, seed=0,
             mode="dual", images=4, sim="verilator", rows=8, cols=8, progress=True, log=print, force=False,
             engine="network"):
    """``engine``: ``"network"`` co-simulates the self-sequencing network engine (pixels in, logits out;
    docs/engine.md), ``"tile"`` generates and co-simulates the host-fed tile engine (docs/hardware.md)."""
    from .api import engine_kind

    engine = engine_kind(engine) == "network"
    out = Path(out)
    cfg = TrainConfig(data=data, wq=wq, aq=aq, wbits=wbits, abits=abits, epochs=epochs, seed=seed,
                      out=str(out / "train"), force=force)
    check_flow_options(cfg, mode, images, sim, rows, cols)
    log(f"[1/5] train {wq}/{aq} W{wbits}A{abits} on {data} ({epochs} epochs)")
    metrics = train(cfg, progress=progress)
    log("[2/5] export to the integer contract")
    im = export_checkpoint(load_checkpoint(out / "train"), mode)
    model_path = out / "model.rsq"
    rsq.save(im, model_path)
    log("[3/5] golden integer model on the test split")
    ev = evaluate(rsq.load(model_path), data)
    atomic_write_json(out / "eval.json", ev)
    params = hardware_for(im, rows, cols)
    if engine:
        from .engine_cosim import engine_cosim_model

        log(f"[4/5] compile the program for the {rows}x{cols} network engine (W{params.wbits}A{params.abits})")
        log(f"[5/5] co-simulate {images} test images on the engine in {sim} (the first build takes minutes)")
        cs = engine_cosim_model(model_path, sim, images, rows, cols)
        rtl = "network engine (Verilog in the co-simulation cache)"
    else:
        log(f"[4/5] generate the {rows}x{cols} {params.pe} array (W{params.wbits}A{params.abits}, max_k {params.max_k})")
        man = generate(params, out / "rtl")
        log(f"[5/5] co-simulate {images} test images on {sim} (the first build takes a minute or two)")
        cs = cosim_model(model_path, sim, images, rtl=out / "rtl")
        rtl = str(out / "rtl" / man["verilog"])
    atomic_write_json(out / "cosim.json", cs)
    summary = {
        "data": data, "scheme": f"{wq}/{aq} W{wbits}A{abits}", "mode": mode,
        "float_acc": metrics["test_acc"], "integer_acc": ev["test_acc"], "agreement_int_vs_float": ev["agreement_with_float"],
        "test_images": ev["images"], "rtl_images": cs["images"], "rtl_acc_on_those": cs["rtl_acc"],
        "rtl_mismatches": cs["mismatches"], "rtl_compared_values": cs["compared_values"],
        "cycles_per_image": cs["cycles_per_image"], "utilization": cs["utilization"],
        "wall_s_per_image": cs["wall_s_per_image"], "acc_bits": params.acc_bits,
        "hardware": "network engine" if engine else "tile engine", "array": f"{rows}x{cols}",
        "model": str(model_path), "rtl": rtl,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def print_summary(s):
    lines = [
        f"rootshift flow: {s['scheme']} on {s['data']} ({s['mode']} mode), {s['array']} {s['hardware']}",
        f"  accuracy    float {100 * s['float_acc']:.2f} %   integer {100 * s['integer_acc']:.2f} %   "
        f"agreement {100 * s['agreement_int_vs_float']:.2f} % ({s['test_images']} test images)",
        f"  RTL         {s['rtl_images']} images, {s['rtl_compared_values']} values compared, "
        f"{s['rtl_mismatches']} mismatches, accuracy on them {100 * s['rtl_acc_on_those']:.2f} %",
        f"  cycles      {s['cycles_per_image']:.0f} per image, utilization {100 * s['utilization']:.2f} %, "
        f"{s['wall_s_per_image']:.2f} s wall per image",
        f"  files       {s['model']}  {s['rtl']}",
        f"  report      rootshift report {Path(s['model']).parent}",
    ]
    print("\n".join(lines))

