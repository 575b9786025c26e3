"""Hardware cost at the array level, read-out included, and Fmax after place and route.

Three measurements, on iCE40 UP5K and ECP5-85F:

* **array** (Yosys synthesis): the whole ``PEArray`` (PEs and the read-out chain) at a4w4 and a8w4 for
  each PE mode: ``dual`` (no multiplier), ``shift`` (base 2), ``shift2`` (shift weights x shift
  activations: exponent add and one-hot decode), ``mult-lut`` (the multiplier PE with DSPs
  forbidden: the fair LUT baseline), ``mult-dsp`` (DSPs allowed). LUT per MAC = LUT / (rows*cols).
  On ECP5 a ``CCU2C`` counts as 2 LUTs, a ``TRELLIS_DPR16X4`` as 4.
* **array Fmax** (Yosys + nextpnr): the same arrays at 2x2 (``--pnr-size``) behind ``ArrayHarness`` (a
  serial shift register feeds every input, the chain head is XOR-reduced into a pin). The read-out is a
  local chain, so the PE sets the array's Fmax; nextpnr-ecp5 (WASM) needs tens of minutes for one 8x8
  array on a shared 2-core machine, so arrays are placed small.
* **accelerator** (Yosys + nextpnr): array, buffers, requantizer and controller behind
  ``ImplementationHarness`` for the configuration that runs the digits ResNet-8 (W8A8 dual: its first
  conv and last linear have 8-bit weights, its input is 8-bit pixels; ``max_k`` 576), with the
  critical path named from nextpnr's report, and images/s = Fmax / cycles per image (cycles from the
  Python device model, which matches the RTL's count).

Targets (issue 9): Fmax >= 50 MHz on iCE40 UP5K and >= 125 MHz on ECP5-85F for that configuration;
dual array <= 0.8x the LUT-only multiplier array at a8w4 and <= 1.0x at a4w4, with 0 DSP in the array;
(issue 10) shift2 the lowest LUTs per MAC of all modes at a4w4.

``--quick``: 4x4 arrays, array place and route on iCE40 only, the accelerator on iCE40 only (minutes).
Default: 8x8 arrays for synthesis, everything else as above.
"""

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, write_section  # noqa: E402

from rootshift.hw.generate import component_verilog  # noqa: E402
from rootshift.hw.harness import ArrayHarness, ImplementationHarness  # noqa: E402
from rootshift.hw.params import ArrayParams  # noqa: E402
from rootshift.hw.pe_array import PEArray  # noqa: E402
from rootshift.hw.tools import ToolError, nextpnr, synth  # noqa: E402
from rootshift.sw.errors import ConfigError  # noqa: E402

# label -> (pe, base, DSPs allowed)
MODES = {"dual": ("dual", "sqrt2", True), "shift": ("shift", "2", True), "shift2": ("shift2", "2", True),
         "mult-lut": ("mult", "sqrt2", False), "mult-dsp": ("mult", "sqrt2", True)}
BITS = [(4, 4), (8, 4)]   # (abits, wbits)
DIGITS = dict(wbits=8, abits=8, pe="dual", base="sqrt2", max_k=576, max_shift=7)
# The old tile engine (commit 795b198, before issue 9), measured with this bench's accelerator harness:
# docs/hardware.md, "Baseline". Quoted here so the table can put the two side by side.
OLD_ENGINE = {"ecp5": {"size": "4x4", "fmax": 67.7, "cycles": 131242},
              "ice40": {"size": "2x2", "fmax": 17.3, "cycles": 448058, "note": "4x4 does not fit: 5,492 of 5,280 LCs"}}


def summarize(cells, family):
    if family == "ice40":
        return {"lut": cells.get("SB_LUT4", 0), "ff": sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
                "dsp": cells.get("SB_MAC16", 0), "bram": cells.get("SB_RAM40_4K", 0) + cells.get("SB_SPRAM256KA", 0)}
    return {"lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 4 * cells.get("TRELLIS_DPR16X4", 0),
            "ff": cells.get("TRELLIS_FF", 0), "dsp": cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0),
            "bram": cells.get("DP16KD", 0)}


def critical_path(report):
    """'from -> to, N logic levels, T ns' for the worst path in a nextpnr report.json."""
    paths = report.get("critical_paths") or []
    # the clock-to-clock path sets Fmax; pin paths (from or to "<async>") only when there is nothing else
    internal = [p for p in paths if "async" not in str(p.get("from")) + str(p.get("to"))]
    paths = internal or paths
    if not paths:
        return "-"
    worst = max(paths, key=lambda p: sum(s["delay"] for s in p["path"]))
    segs = worst["path"]

    def short(cell):
        parts = [x for x in cell.replace("$", ".").split(".") if x and not x.isdigit()]
        return ".".join(parts[:3])[:48]

    logic = sum(1 for s in segs if s["type"] == "logic")
    return (f"{short(segs[0]['from']['cell'])} -> {short(segs[-1]['to']['cell'])}, {logic} logic cells, "
            f"{sum(s['delay'] for s in segs):.1f} ns")


def measure(component, name, family, tmp, dsp=True, pnr=False):
    v = Path(tmp) / f"{name}.v"
    v.write_text(component_verilog(component, name))
    net = Path(tmp) / f"{name}-{family}.json" if pnr else None
    rep = synth(v, family, top=name, dsp=dsp, json_out=net)
    out = summarize(rep["cells"], family)
    if pnr:
        work = Path(tmp) / f"pnr-{name}-{family}"
        try:
            r = nextpnr(net, family, work)
            out["fmax"] = r["fmax_mhz"]
            out["path"] = critical_path(json.loads((work / "report.json").read_text()))
        except ToolError as e:
            text = str(e)
            out["fmax"] = None
            if "Failed to expand region" in text or "Unable to place" in text or "%" in text and "ICESTORM_LC" in text:
                lc = [ln for ln in text.splitlines() if "ICESTORM_LC:" in ln or "TRELLIS_COMB:" in ln]
                out["path"] = "does not fit" + (f" ({lc[0].split(':', 1)[1].strip()})" if lc else "")
            else:
                out["path"] = text.splitlines()[-1][:80]
    return out


def cycles_per_image(params, model):
    from rootshift.sim.driver import HostDriver, run_sync
    from rootshift.sim.model import DeviceModel
    from rootshift.sw import rsq
    from rootshift.sw.data import load_dataset

    im = rsq.load(model)
    dev = DeviceModel(params)
    rec = {}
    run_sync(HostDriver(params, im).run(load_dataset("digits").test.x[:1].numpy(), rec), lambda r: dev.transact(r.words, r.n_out))
    return rec["cycles"][0]["image_total"]


def _digits_model(tmp):
    """A digits ResNet-8 export: cycles depend only on the shapes, so one epoch of training is enough."""
    from rootshift.sw import rsq
    from rootshift.sw.export import export_checkpoint
    from rootshift.sw.train import TrainConfig, load_checkpoint, train

    train(TrainConfig(epochs=1, out=f"{tmp}/run"), progress=False)
    path = Path(tmp) / "digits.rsq"
    rsq.save(export_checkpoint(load_checkpoint(f"{tmp}/run")), path)
    return path


def main(argv=None):
    ap = add_common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--families", nargs="+", default=["ice40", "ecp5"], choices=["ice40", "ecp5"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--size", type=int, default=None, help="synthesized array: SIZE x SIZE (default 8, --quick 4)")
    ap.add_argument("--pnr-size", type=int, default=2, help="arrays placed and routed: SIZE x SIZE")
    ap.add_argument("--no-accel", action="store_true", help="skip the accelerator's place and route")
    ap.add_argument("--max-k", type=int, default=576)
    ap.add_argument("--model", help="a digits ResNet-8 .rsq for cycles per image (default: train one epoch)")
    a = ap.parse_args(argv)
    configure(a)
    size = a.size or (4 if a.quick else 8)
    pnr_fams = ["ice40"] if a.quick else a.families
    t0 = time.time()
    arrays, accels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for fam in a.families:
            for ab, wb in BITS:
                for label in a.modes:
                    pe, base, dsp = MODES[label]
                    try:
                        p = ArrayParams(wbits=wb, abits=ab, pe=pe, base=base, rows=size, cols=size, max_k=a.max_k)
                    except ConfigError as e:
                        arrays.append({"family": fam, "mode": label, "bits": f"a{ab}w{wb}", "skip": str(e)})
                        continue
                    row = {"family": fam, "mode": label, "bits": f"a{ab}w{wb}", "size": size,
                           "acc_bits": p.acc_bits, "array": measure(PEArray(p), "pe_array", fam, tmp, dsp=dsp)}
                    if fam in pnr_fams:
                        pp = ArrayParams(wbits=wb, abits=ab, pe=pe, base=base, rows=a.pnr_size, cols=a.pnr_size, max_k=a.max_k)
                        row["pnr"] = measure(ArrayHarness(pp), "array_harness", fam, tmp, dsp=dsp, pnr=True)
                    arrays.append(row)
                    r = row["array"]
                    print(f"{fam:5} {label:8} a{ab}w{wb} {size}x{size}: lut {r['lut']:6} ff {r['ff']:5} dsp {r['dsp']:3} "
                          f"lut/MAC {r['lut'] / size**2:6.1f}" + (f" | {a.pnr_size}x{a.pnr_size} fmax {row['pnr'].get('fmax')} "
                                                                   f"{row['pnr'].get('path')}" if "pnr" in row else ""),
                          flush=True)
        model = None if a.no_accel else Path(a.model) if a.model else _digits_model(tmp)
        for fam in ([] if a.no_accel else pnr_fams):
            for rc in ((4, 4), (2, 2)) if fam == "ice40" else ((4, 4),):
                p = ArrayParams(rows=rc[0], cols=rc[1], **DIGITS)
                r = measure(ImplementationHarness(p), "accel", fam, tmp, dsp=True, pnr=True)
                r.update(family=fam, size=f"{rc[0]}x{rc[1]}", cycles=cycles_per_image(p, model))
                accels.append(r)
                print(f"{fam:5} accelerator {r['size']} W8A8: lut {r['lut']} ff {r['ff']} dsp {r['dsp']} bram {r['bram']} "
                      f"fmax {r.get('fmax')} | {r['path']} | {r['cycles']} cycles/image", flush=True)
                if r.get("fmax"):
                    break  # the largest size that fits
    body = report(a, argv, size, arrays, accels, time.time() - t0)
    print(body)
    complete = all("pnr" in r or r["family"] not in pnr_fams or "skip" in r for r in arrays)
    if a.write and not complete:
        raise SystemExit("hw_cost: refusing --write of an incomplete table")
    write_section("hw_cost", body)


def report(a, argv, size, arrays, accels, wall):
    cmd = "python bench/hw_cost.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    lines = [f"## Hardware cost: PE arrays with their read-out, and the accelerator (max_k {a.max_k})", "",
             f"Made by `{cmd.strip()}` in {wall / 60:.0f} min. Array: Yosys synthesis of the whole `PEArray` "
             f"({size}x{size}, read-out chain included); Fmax: Yosys + nextpnr of a {a.pnr_size}x{a.pnr_size} array behind "
             "`ArrayHarness` (every input from a flip-flop). `mult-lut` is the multiplier PE with DSPs forbidden, "
             "`mult-dsp` with them allowed. On ECP5 a CCU2C counts as 2 LUTs.", "",
             f"| family | bits | PE | LUT {size}x{size} | FF | DSP | LUT / MAC | acc bits | Fmax {a.pnr_size}x{a.pnr_size} MHz | critical path |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in arrays:
        if "skip" in r:
            lines.append(f"| {r['family']} | {r['bits']} | {r['mode']} | {r['skip']} | | | | | | |")
            continue
        x, q = r["array"], r.get("pnr", {})
        fmax = f"{q['fmax']:.1f}" if q.get("fmax") else "-"
        lines.append(f"| {r['family']} | {r['bits']} | {r['mode']} | {x['lut']} | {x['ff']} | {x['dsp']} | "
                     f"{x['lut'] / size**2:.1f} | {r['acc_bits']} | {fmax} | {q.get('path', '-')} |")
    verdicts = []
    for fam in a.families:
        for bits, limit in (("a8w4", 0.8), ("a4w4", 1.0)):
            d = next((r for r in arrays if r["family"] == fam and r["mode"] == "dual" and r["bits"] == bits and "array" in r), None)
            mm = next((r for r in arrays if r["family"] == fam and r["mode"] == "mult-lut" and r["bits"] == bits and "array" in r), None)
            if d and mm:
                ratio = d["array"]["lut"] / max(1, mm["array"]["lut"])
                ok = ratio <= limit and d["array"]["dsp"] == 0
                verdicts.append(f"* {fam} {bits}: dual array = {ratio:.2f}x the LUT-only multiplier array "
                                f"(target <= {limit}), {d['array']['dsp']} DSP: target {'met' if ok else 'NOT met'}.")
        lows = [(r["array"]["lut"], r["mode"]) for r in arrays if r["family"] == fam and r["bits"] == "a4w4"
                and "array" in r and r["mode"] != "mult-dsp"]
        if lows:
            verdicts.append(f"* {fam} a4w4: lowest LUTs per MAC without DSPs: {min(lows)[1]} "
                            f"({min(lows)[0] / size**2:.1f}).")
    lines += [""] + verdicts
    if accels:
        lines += ["", "### The accelerator for the digits ResNet-8 (W8A8 dual, max_k 576), and the old tile engine", "",
                  "Images/s = Fmax / cycles per image (host link not counted). Old engine: commit 795b198, same harness "
                  "(docs/hardware.md, \"Baseline\").", "",
                  "| family | engine | size | LUT | FF | DSP | BRAM | Fmax MHz | cycles / image | images / s | critical path |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in accels:
            old = OLD_ENGINE[r["family"]]
            lines.append(f"| {r['family']} | old tile engine | {old['size']} | | | | | {old['fmax']} | {old['cycles']} | "
                         f"{old['fmax'] * 1e6 / old['cycles']:.0f} | {old.get('note', '')} |")
            fmax = r.get("fmax")
            ips = f"{fmax * 1e6 / r['cycles']:.0f}" if fmax else "-"
            lines.append(f"| {r['family']} | this tile engine | {r['size']} | {r['lut']} | {r['ff']} | {r['dsp']} | {r['bram']} | "
                         f"{f'{fmax:.1f}' if fmax else '-'} | {r['cycles']} | {ips} | {r['path']} |")
        for fam, target in (("ice40", 50), ("ecp5", 125)):
            best = max((r.get("fmax") or 0 for r in accels if r["family"] == fam), default=None)
            if best is not None:
                verdicts.append(f"* {fam}: accelerator Fmax {best:.1f} MHz, target >= {target}: {'met' if best >= target else 'NOT met'}.")
        lines += [""] + verdicts[-len([f for f in ("ice40", "ecp5") if any(r['family'] == f for r in accels)]):]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
