"""The main job end to end on one dataset: train -> export -> golden eval (-> generate -> cosim).

Each stage is a library call on what the previous one wrote under ``out``; the summary fits one screen.
"""

import json
from pathlib import Path

from sw import rsq
from sw.evaluate import evaluate
from sw.export import export_checkpoint
from sw.train import TrainConfig, load_checkpoint, train


def run_flow(data="digits", out="runs/demo", epochs=15, wq="post", aq="asq", wbits=4, abits=4, seed=0,
             mode="dual", progress=True, log=print):
    out = Path(out)
    log(f"[1/3] train {wq}/{aq} W{wbits}A{abits} on {data} ({epochs} epochs)")
    metrics = train(TrainConfig(data=data, wq=wq, aq=aq, wbits=wbits, abits=abits, epochs=epochs, seed=seed,
                                out=str(out / "train")), progress=progress)
    log("[2/3] export to the integer contract")
    im = export_checkpoint(load_checkpoint(out / "train"), mode)
    model_path = out / "model.rsq"
    rsq.save(im, model_path)
    log("[3/3] golden integer model on the test split")
    ev = evaluate(rsq.load(model_path), data)
    return {"data": data, "scheme": f"{wq}/{aq} W{wbits}A{abits}", "mode": mode,
            "float_acc": metrics["test_acc"], "integer_acc": ev["test_acc"],
            "agreement_int_vs_float": ev["agreement_with_float"], "test_images": ev["images"],
            "adapter_beta_max_rel_err": max(im.meta.get("adapter_beta_error", {}).values(), default=None),
            "model": str(model_path)}


def print_summary(summary):
    print(json.dumps(summary, indent=2))
