"""The main job end to end on one dataset: train, then each later stage on what the previous made."""

import json
from pathlib import Path

from sw.train import TrainConfig, train


def run_flow(data="digits", out="runs/demo", epochs=15, wq="post", aq="asq", wbits=4, abits=4, seed=0,
             progress=True):
    out = Path(out)
    metrics = train(TrainConfig(data=data, wq=wq, aq=aq, wbits=wbits, abits=abits, epochs=epochs, seed=seed,
                                out=str(out / "train")), progress=progress)
    summary = {"data": data, "float_fake_quant_acc": metrics["test_acc"], "train_dir": str(out / "train")}
    return summary


def print_summary(summary):
    print(json.dumps(summary, indent=2))
