"""Hardware cost: LUT, FF, DSP, BRAM per PE and for an 8x8 array, dual / lut / multiplier PEs at
2, 3, 4, 6, 8 weight bits, on iCE40 UP5K and ECP5-85F, with Fmax from nextpnr.

* per PE and the 8x8 ``PEArray``: Yosys synthesis (``synth_ice40 -dsp`` / ``synth_ecp5``); the
  multiplier PE also without DSPs (``mult-lut``), the fair LUT comparison for "no multiplier" designs;
* the complete accelerator (array + buffers + requantizer + controller) behind ``ImplementationHarness``:
  synthesis, then nextpnr for Fmax and fit, at 4 weight bits (``--full``: every bit-width). An 8x8
  accelerator needs ~12k LUTs and more BRAM than the UP5K has (5,280 LCs, 30 EBR), and the WASM build
  of nextpnr-ecp5 needs over 25 minutes for one 8x8 placement, so both are placed as 4x4 by default
  (``--pnr-size ecp5=8x8`` for the larger one).
* ``max_k`` 576, the largest K of ResNet-8/20 (64 channels x 3x3). Configurations whose worst-case
  accumulator exceeds the contract's 30 bits are listed as such.

Prints the table, writes it and a plot to docs/results.md / docs/hw_cost.png with the command.
Target: the dual PE at 4 bits costs <= 0.5x the LUTs of the multiplier PE at 4 bits, with 0 DSP.
"""

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from rootshift.hw.generate import component_verilog  # noqa: E402
from rootshift.hw.harness import ImplementationHarness  # noqa: E402
from rootshift.hw.params import ArrayParams  # noqa: E402
from rootshift.hw.pe import ProcessingElement  # noqa: E402
from rootshift.hw.pe_array import PEArray  # noqa: E402
from rootshift.hw.tools import ToolError, nextpnr, synth  # noqa: E402
from rootshift.sw.errors import ConfigError  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def summarize(cells, family):
    if family == "ice40":
        luts = cells.get("SB_LUT4", 0)
        ffs = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
        dsp = cells.get("SB_MAC16", 0)
        bram = cells.get("SB_RAM40_4K", 0)
    else:
        luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 4 * cells.get("TRELLIS_DPR16X4", 0)
        ffs = cells.get("TRELLIS_FF", 0)
        dsp = cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0)
        bram = cells.get("DP16KD", 0)
    return {"lut": luts, "ff": ffs, "dsp": dsp, "bram": bram}


def measure(component, name, family, tmp, dsp=True, pnr=False):
    v = Path(tmp) / f"{name}.v"
    v.write_text(component_verilog(component, name))
    net = Path(tmp) / f"{name}-{family}.json" if pnr else None
    rep = synth(v, family, top=name, dsp=dsp, json_out=net)
    out = summarize(rep["cells"], family)
    if pnr:
        try:
            r = nextpnr(net, family, Path(tmp) / f"pnr-{name}-{family}")
            out["fmax"] = r["fmax_mhz"]
        except ToolError as e:
            out["fmax"] = None
            out["pnr_error"] = "does not fit" if "Unable to place" in str(e) or "failed to" in str(e).lower() else str(e).splitlines()[-1][:80]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--families", nargs="+", default=["ice40", "ecp5"])
    ap.add_argument("--bits", nargs="+", type=int, default=[2, 3, 4, 6, 8])
    ap.add_argument("--abits", type=int, default=8)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--max-k", type=int, default=576)
    ap.add_argument("--pnr-size", nargs="+", default=["ice40=4x4", "ecp5=4x4"], help="FAMILY=ROWSxCOLS for place and route")
    ap.add_argument("--full", action="store_true", help="place and route every bit-width, not only 4")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    pnr_size = {f: tuple(int(x) for x in rc.split("x")) for f, rc in (s.split("=") for s in a.pnr_size)}
    rows = []
    modes = [("dual", "dual", True), ("lut", "lut", True), ("mult", "mult", True), ("mult-lut", "mult", False)]
    with tempfile.TemporaryDirectory() as tmp:
        for fam in a.families:
            for wb in a.bits:
                for label, pe, dsp in modes:
                    try:
                        p1 = ArrayParams(wbits=wb, abits=a.abits, pe=pe, rows=1, cols=2, max_k=a.max_k)
                        pa = ArrayParams(wbits=wb, abits=a.abits, pe=pe, rows=a.rows, cols=a.cols, max_k=a.max_k)
                    except ConfigError as e:
                        print(f"{fam:6} {label:8} W{wb}: {e}", flush=True)
                        rows.append({"family": fam, "pe": label, "wbits": wb, "skip": str(e)})
                        continue
                    one = measure(ProcessingElement(p1), "pe", fam, tmp, dsp=dsp)
                    arr = measure(PEArray(pa), "pe_array", fam, tmp, dsp=dsp)
                    row = {"family": fam, "pe": label, "wbits": wb, "pe_cost": one, "array": arr}
                    if dsp and (a.full or wb == 4):
                        pr, pc = pnr_size.get(fam, (a.rows, a.cols))
                        pp = ArrayParams(wbits=wb, abits=a.abits, pe=pe, rows=pr, cols=pc, max_k=a.max_k)
                        row["top"] = measure(ImplementationHarness(pp), "harness", fam, tmp, dsp=True, pnr=True)
                        row["top"]["size"] = f"{pr}x{pc}"
                    rows.append(row)
                    t = row.get("top", {})
                    print(f"{fam:6} {label:8} W{wb}: PE lut {one['lut']:5} ff {one['ff']:4} dsp {one['dsp']:2} | "
                          f"{a.rows}x{a.cols} array lut {arr['lut']:6} ff {arr['ff']:5} dsp {arr['dsp']:3}"
                          + (f" | top lut {t['lut']} bram {t['bram']} dsp {t['dsp']} fmax {t.get('fmax')} {t.get('pnr_error', '')}" if t else ""),
                          flush=True)
    lines = [f"| family | PE | wbits | LUT/PE | FF/PE | DSP/PE | LUT {a.rows}x{a.cols} array | FF array | DSP array | "
             "accelerator (size) | LUT | BRAM | DSP | Fmax MHz |", "|" + "---|" * 14]
    for r in rows:
        if "skip" in r:
            lines.append(f"| {r['family']} | {r['pe']} | {r['wbits']} | " + " | ".join(["-"] * 6)
                         + " | exceeds the contract's 30-bit accumulator | - | - | - | - |")
            continue
        o, ar, t = r["pe_cost"], r["array"], r.get("top")
        top = (f"{t['size']} | {t['lut']} | {t['bram']} | {t['dsp']} | " + (f"{t['fmax']:.1f}" if t.get("fmax") else t.get("pnr_error", "-"))) if t else "- | - | - | - | -"
        lines.append(f"| {r['family']} | {r['pe']} | {r['wbits']} | {o['lut']} | {o['ff']} | {o['dsp']} | {ar['lut']} | {ar['ff']} | {ar['dsp']} | {top} |")
    verdicts = []
    for fam in a.families:
        d = next((r for r in rows if r["family"] == fam and r["pe"] == "dual" and r["wbits"] == 4 and "skip" not in r), None)
        mm = next((r for r in rows if r["family"] == fam and r["pe"] == "mult-lut" and r["wbits"] == 4 and "skip" not in r), None)
        if d and mm:
            ratio = d["pe_cost"]["lut"] / max(1, mm["pe_cost"]["lut"])
            ok = ratio <= 0.5 and d["pe_cost"]["dsp"] == 0
            verdicts.append(f"{fam}: dual PE at 4 bits = {ratio:.2f}x the LUTs of the multiplier PE (LUT-only), "
                            f"{d['pe_cost']['dsp']} DSP: target {'met' if ok else 'NOT met'}.")
    _plot(rows, a)
    cmd = "python bench/hw_cost.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    body = (f"## Hardware cost (abits {a.abits}, max_k {a.max_k})\n\nMade by `{cmd.strip()}`. Per PE and {a.rows}x{a.cols} "
            "array: Yosys synthesis. Accelerator (array, buffers, requantizer, controller, behind the pin harness): "
            "Yosys + nextpnr (iCE40 UP5K sg48, ECP5-85F CABGA381). `mult` may use DSPs; `mult-lut` is the same PE "
            "without them.\n\n" + "\n".join(lines) + "\n\n" + "\n".join(verdicts) + "\n\n![per-PE LUTs](hw_cost.png)")
    print("\n".join(verdicts))
    if not a.no_write:
        write_section("hw_cost", body)


def _plot(rows, a):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(a.families), figsize=(5 * len(a.families), 3.5), squeeze=False)
    for ax, fam in zip(axes[0], a.families):
        for label in ("dual", "lut", "mult", "mult-lut"):
            pts = [(r["wbits"], r["pe_cost"]["lut"]) for r in rows if r["family"] == fam and r["pe"] == label and "skip" not in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_title(f"{fam}: LUTs per PE (abits {a.abits})")
        ax.set_xlabel("weight bits")
        ax.legend()
    fig.tight_layout()
    if not a.no_write:
        fig.savefig(DOCS / "hw_cost.png", dpi=100)


if __name__ == "__main__":
    main()
