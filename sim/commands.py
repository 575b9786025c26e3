"""Sub-commands beyond ``train``; each ``register(sub)`` adds one parser and calls one library function."""

import json


def _flow(sub):
    p = sub.add_parser("flow", help="the main job end to end: train -> export -> eval -> generate -> cosim")
    p.add_argument("--data", default="digits")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--wq", default="post")
    p.add_argument("--aq", default="asq")
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="dual", choices=["dual", "lut"])
    p.add_argument("--images", type=int, default=4, help="test images to co-simulate on the RTL")
    p.add_argument("--sim", default="verilator")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)

    def run(a):
        from .flow import print_summary, run_flow

        s = run_flow(a.data, a.out, a.epochs, a.wq, a.aq, a.wbits, a.abits, a.seed, a.mode, a.images, a.sim, a.rows, a.cols)
        print_summary(s)
        return 1 if s["rtl_mismatches"] else 0

    p.set_defaults(func=run)


def _export(sub):
    p = sub.add_parser("export", help="export a trained run into the integer contract (.rsq)")
    p.add_argument("run", help="run directory (or its checkpoint.pt)")
    p.add_argument("--out", required=True, help="output .rsq file")
    p.add_argument("--mode", default="dual", choices=["dual", "lut"], help="POST product mode")

    def run(a):
        from rootshift.sw import rsq
        from rootshift.sw.export import export_checkpoint
        from rootshift.sw.train import load_checkpoint

        im = export_checkpoint(load_checkpoint(a.run), a.mode)
        rsq.save(im, a.out)
        ref = im.meta.get("float_reference", {})
        print(json.dumps({"out": a.out, "layers": len(im.layers()), "mode": a.mode,
                          "float_test_acc": ref.get("test_acc"),
                          "adapter_beta_max_rel_err": max(im.meta.get("adapter_beta_error", {}).values(), default=None)}))
        return 0

    p.set_defaults(func=run)


def _inspect(sub):
    p = sub.add_parser("inspect", help="per-layer summary of an .rsq model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")

    def run(a):
        from rootshift.sw import rsq
        from rootshift.sw.evaluate import inspect_layers

        rows = inspect_layers(rsq.load(a.model))
        if a.json:
            print(json.dumps(rows, indent=1))
        else:
            cols = ["name", "kind", "scheme", "base", "wbits", "abits", "product_mode", "acc_bits", "distinct_codes"]
            print(" ".join(f"{c:>14}" for c in cols))
            for r in rows:
                print(" ".join(f"{str(r[c]):>14}" for c in cols))
        return 0

    p.set_defaults(func=run)


def _eval(sub):
    p = sub.add_parser("eval", help="run the golden integer model on a dataset's test split")
    p.add_argument("model")
    p.add_argument("--data", help="dataset (default: the one the model was trained on)")
    p.add_argument("--images", type=int, help="first N test images (default: all)")
    p.add_argument("--dump", help="write every layer's integers for --dump-images to this directory")
    p.add_argument("--dump-images", help="comma-separated test indices to dump (default 0,1,2,3)")
    p.add_argument("--json", action="store_true")

    def run(a):
        from rootshift.sw import rsq
        from rootshift.sw.evaluate import evaluate

        out = evaluate(rsq.load(a.model), a.data, a.images, a.dump, a.dump_images)
        print(json.dumps(out) if a.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
        return 0

    p.set_defaults(func=run)


def _generate(sub):
    p = sub.add_parser("generate", help="emit Verilog for a PE array (rootshift_top.v + manifest.json)")
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--abits", type=int, default=8)
    p.add_argument("--base", default="sqrt2", help="sqrt2 | 2")
    p.add_argument("--pe", default="dual", help="dual | lut | shift | mult")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--max-k", type=int, default=1152, help="largest K = Cin*kh*kw the array is built for")
    p.add_argument("--max-shift", type=int, default=7, help="exponent window E (largest shift)")
    p.add_argument("--out", default="build/gen")

    def run(a):
        from rootshift.hw.generate import generate
        from rootshift.hw.params import ArrayParams

        params = ArrayParams(wbits=a.wbits, abits=a.abits, base=a.base, pe=a.pe, rows=a.rows, cols=a.cols,
                             max_k=a.max_k, max_shift=a.max_shift)
        man = generate(params, a.out)
        print(json.dumps({"out": a.out, "top": man["top"], "acc_bits": man["acc_bits"], "data_bits": man["data_bits"]}))
        return 0

    p.set_defaults(func=run)


def _cosim(sub):
    p = sub.add_parser("cosim", help="run an .rsq model on the generated RTL (cocotb) and compare with the golden model")
    p.add_argument("model")
    p.add_argument("--sim", default="verilator", help="verilator | icarus")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--data", help="dataset (default: the one the model was trained on)")
    p.add_argument("--waves", help="on a mismatch, write the failing tile's waveform (VCD) here")
    p.add_argument("--json", action="store_true")

    def run(a):
        from .cosim import cosim_model

        rep = cosim_model(a.model, a.sim, a.images, a.rows, a.cols, a.waves, data=a.data)
        if a.json:
            print(json.dumps(rep))
        else:
            for k, v in rep.items():
                if k not in ("hardware", "utilization_per_layer"):
                    print(f"{k}: {v}")
        if rep["mismatches"]:
            import sys

            print(f"rootshift cosim: {rep['first_mismatch']['message']}", file=sys.stderr)
            return 1
        return 0

    p.set_defaults(func=run)


REGISTER = [_flow, _export, _inspect, _eval, _generate, _cosim]
