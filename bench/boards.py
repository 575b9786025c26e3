"""Board benchmark (issue 12): per board, the digits ResNet-8 on the engine its table carries.

For each board: time to bitstream, utilization and Fmax (``rootshift build``'s report), device cycles per
image (the compiler's cycle model for the network engine, equal to the RTL's STATUS count; the device
model's count for the tile engine), the bytes per image on the link, framing included, and from them:

* device compute: images/s = clock / cycles (at the board's clock, and at the build's Fmax);
* the link bound: baud / (10 bits x bytes per image);
* images/s end to end at 3 Mbaud. Network engine: the next image's pixels cross the link while the
  current one computes (sim/board.py ``overlapped_infer_gen``), and its logits leave the board core's
  answer FIFO while the next one computes (hw/board/core.py), so an image takes
  ``max(compute, request + answer)``; tile engine: every tile's operands cross the link, stop-and-wait, so
  ``link + compute``. USB latency (the FTDI's latency timer) is not in the model: no board here;
* the share of the time on the link.

The bytes are counted by the host's own FramedLink while ``rootshift run`` (sim/board.py ``run_board``)
drives the Python device model over a pseudo-terminal, which also checks every logit (0 mismatches). The
overlap model is checked against the pin-level simulation of the board core (sim/board_cosim.py:
Verilator, the UART at 4 clocks per bit): the simulated seconds per image against the formula.

``--quick`` skips the builds (no time to bitstream, utilization or Fmax unless ``--build-dir`` gives a
finished build) and the pin-level simulation. ``--build-dir BOARD=DIR`` reuses a finished build's
``board.json`` instead of building. The main table's time to bitstream is warm (the YoWASP tools already
compiled); ``--cold BOARD ...`` also builds those boards in a fresh process whose ``XDG_CACHE_HOME`` is an
empty folder, so every YoWASP tool compiles its WebAssembly first, as on a fresh machine (a separate cache:
the shared one is never wiped), and checks that the cold bitstream equals the warm one.
"""

import argparse
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import add_common_args, configure, pyplot, write_figure, write_section  # noqa: E402

from rootshift.hw.board.boards import get_board  # noqa: E402
from rootshift.sim import board as B  # noqa: E402

BAUD = 3_000_000
# issue 12's targets
TARGET_ICEBREAKER_E2E = 500
TARGET_ULX3S_COMPUTE = 5000
TARGET_ULX3S_LINK_SHARE = 0.8


def _digits_model(tmp):
    from hw_cost import _digits_model as make

    return make(tmp)


def link_run(model, board, images):
    """``run_board`` over a pseudo-terminal with the board's device model: link bytes, cycles, mismatches."""
    from rootshift.sim.transport import EngineFramedDevice, FramedDevice

    b = get_board(board)
    design = B.board_design(model, b)
    info = design.info
    wb = (info["data_bits"] + 7) // 8
    if design.engine == "network":
        from rootshift.sim.engine_device import EngineDevice

        device = EngineFramedDevice(EngineDevice(design.program), info["data_bits"], b.buffer_bytes // wb)
    else:
        from rootshift.hw.params import ArrayParams
        from rootshift.sim.model import DeviceModel

        params = ArrayParams(**info["params"])
        device = FramedDevice(DeviceModel(params), info["data_bits"], b.buffer_bytes // wb)
    master, slave = os.openpty()
    t = threading.Thread(target=device.serve, args=(master,), daemon=True)
    t.start()
    try:
        rep = B.run_board(model, port=os.ttyname(slave), images=images, board=board, timeout=30.0)
    finally:
        device.stop()
        t.join(2)
        os.close(master)
        os.close(slave)
    return design, rep


def request_answer_bytes(design, board):
    """Bytes of one image's request and answer frames on the network engine (overlapped run)."""
    from rootshift.hw.board import framing as F
    from rootshift.hw.engine.engine import port_config

    info = design.info
    wb = (info["data_bits"] + 7) // 8
    words = 1 + port_config(design.program).pix_words        # the INFER command and the packed pixel codes
    req = F.REQUEST_HEADER + words * wb + F.CRC_BYTES
    ans = F.ANSWER_HEADER + 4 * info["classes"] + F.CRC_BYTES
    return req, ans


def throughput(design, board, rep, clock_hz, baud=BAUD):
    """Seconds per image end to end, and its parts, at ``clock_hz`` and ``baud``. Compute is the device's
    cycle count (``STATUS``); the pixel phase (``C*H*W`` cycles) and the logits' hand-off to the answer FIFO
    (about ``classes`` cycles) are left out: 0.14 % of a digits image (the pin-level simulation checks
    the whole period, tests/test_board_engine_cosim.py)."""
    cycles = rep["device_cycles_per_image"]
    t_c = cycles / clock_hz
    counted = rep["link_s_per_image"] * rep["baud"] / 10
    if design.engine == "network":
        # per image in a long run: one INFER request and one logits answer (the run's probe, CLEAR and
        # final STATUS are counted once per run in ``counted``)
        req, ans = request_answer_bytes(design, board)
        link_bytes = req + ans
        t_req, t_ans = req * 10 / baud, ans * 10 / baud
        period = max(t_c, t_req + t_ans)       # the answer leaves the core's FIFO while the next image computes
    else:
        link_bytes = counted
        period = link_bytes * 10 / baud + t_c
    t_link = link_bytes * 10 / baud
    out = {"compute_s": t_c, "link_s": t_link, "link_bytes": link_bytes, "counted_bytes": counted, "period_s": period,
           "images_per_s": 1 / period, "link_bound": baud / (10 * link_bytes), "link_share": min(1.0, t_link / period)}
    if design.engine == "network":
        out.update(request_s=t_req, answer_s=t_ans)
    return out


def cli_estimate(model, name):
    """``rootshift estimate --json`` in a fresh process, exactly as a user runs it; a failure (e.g. YoWASP Yosys
    0.70's ABC9 assertion on the pipelined 8x8 engine for ECP5, docs/boards.md) ends the run with its message."""
    import subprocess

    exe = Path(sys.executable).with_name("rootshift")
    r = subprocess.run([str(exe), "estimate", str(model), "--board", name, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"boards: rootshift estimate --board {name} failed (exit {r.returncode}): {r.stderr.strip()[-600:]}")
    return json.loads(r.stdout)


def cold_build(model, name, tmp):
    """``rootshift build`` of ``name`` in a fresh process with an empty YoWASP cache: ``{"board", "cold_s",
    "sha256"}`` (the first use of every tool compiles it, as on a fresh machine)."""
    import subprocess

    cache, out = Path(tmp) / f"cold-cache-{name}", Path(tmp) / f"cold-{name}"
    cache.mkdir()
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    exe = Path(sys.executable).with_name("rootshift")
    t0 = time.time()
    r = subprocess.run([str(exe), "build", str(model), "--board", name, "--out", str(out), "--json"], env=env,
                       capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        raise SystemExit(f"boards: the cold build of {name} failed (exit {r.returncode}): {r.stderr.strip()[-400:]}")
    rep = json.loads(r.stdout)
    return {"board": name, "cold_s": wall, "sha256": rep["sha256"], "build_s": rep.get("build_s")}


def pin_sim_check(model):
    """The overlap model against the pin-level simulation of the ULX3S core (simulated seconds per image)."""
    from rootshift.sim.board_cosim import SIM_BAUD, SIM_CLK_HZ, board_cosim

    # the 4x4 engine: the check is of the overlap formula, and its 32-bit INFER fits the 512-byte sim buffer
    rep = board_cosim(model, board="ulx3s-85f", images=4, rows=4, cols=4, faults=())
    b = get_board("ulx3s-85f")
    design = B.board_design(model, b, 4, 4)
    req, ans = request_answer_bytes(design, b)
    t_c = rep["cycles_per_image"] / SIM_CLK_HZ
    model_s = max(t_c, (req + ans) * 10 / SIM_BAUD)        # as throughput(): the answer FIFO hides the answer
    return {"sim_s_per_image": rep.get("overlap_sim_s_per_image"), "model_s_per_image": model_s,
            "mismatches": rep["mismatches"], "overlap_mismatches": rep.get("overlap_mismatches"),
            "stop_and_wait_s_per_image": rep["sim_s_per_image"], "build_s": rep["build_s"]}


def network_estimate(model, board, sizes=((2, 2), (4, 4))):
    """``rootshift estimate`` of the network engine on a board that cannot carry it (the refusal's numbers,
    hw/board/boards.py NETWORK_ENGINE_MEASURED): the program compiled with the ULX3S-85F's memory limits (the
    memories are sized by the plan, the same bytes on any board that holds it)."""
    import dataclasses

    from rootshift.sw import rsq

    # the 85F's memory plan, with the default (parallel) drain NETWORK_ENGINE_MEASURED holds
    b = dataclasses.replace(get_board(board), engine_options=get_board("ulx3s-85f").engine_memory_kib())
    im = rsq.load(model)
    out = []
    from rootshift.hw.tools import ToolError

    for r, c in sizes:
        prog = B.engine_program(im, b, r, c)
        try:
            e = B.estimate_design(B.Design.network(prog), b)
        except ToolError as err:      # a tool crash is a row that says so, not a lost run
            print(json.dumps({"board": board, "array": f"{r}x{c}", "error": str(err)[-300:]}), flush=True)
            continue
        out.append({"board": board, "array": f"{r}x{c}", "plan": dict(prog.plan), **e})
        print(json.dumps(out[-1]), flush=True)
    return out


def _beyond_memory(model, board):
    """With no memory limits: the plan's bytes per buffer, and what the RTL engine refuses (``rtl_check``), so a
    refusal says whether raising the board's limits alone would let the model run."""
    import dataclasses

    from rootshift.hw.engine.compiler import compile_model
    from rootshift.hw.engine.engine import rtl_check
    from rootshift.hw.engine.params import EngineParams
    from rootshift.sim.driver import hardware_for
    from rootshift.sw import rsq
    from rootshift.sw.errors import ConfigError

    im = rsq.load(model)
    big = dataclasses.replace(board, engine_options=board.engine_options
                              | {k: 1 << 20 for k in board.engine_memory_kib()})
    prog = compile_model(im, EngineParams(hardware_for(im, big.rows, big.cols), **big.engine_options))
    try:
        rtl_check(prog)
        rtl = None
    except ConfigError as e:
        rtl = str(e)
    return {"plan": dict(prog.plan), "rtl_refused": rtl}


def mnist_rows(model, boards, images):
    """MNIST-5k ResNet-8 on each network-engine board: the link run and throughput at the board clock when the
    compiler's memory plan fits the board's limits, else the compiler's refusal (measured, not a guess)."""
    from rootshift.sw.errors import ConfigError

    out = []
    for name in boards:
        b = get_board(name)
        if b.engine != "network":
            continue
        try:
            design, rep = link_run(model, name, images)
        except ConfigError as e:
            out.append({"board": name, "refused": str(e), **_beyond_memory(model, b)})
        else:
            out.append({"board": name, "array": f"{design.info['rows']}x{design.info['cols']}", "mismatches":
                        rep["mismatches"], "images": rep["images"], "cycles": rep["device_cycles_per_image"],
                        "at_clock": throughput(design, b, rep, b.clock_mhz * 1e6), "clock_mhz": b.clock_mhz})
        print(json.dumps(out[-1], default=str), flush=True)
    return out


def main(argv=None):
    ap = add_common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--model", help="a digits ResNet-8 .rsq (default: train one epoch here)")
    ap.add_argument("--boards", nargs="+", default=["icebreaker", "ulx3s-85f"])
    ap.add_argument("--build-dir", action="append", default=[], metavar="BOARD=DIR",
                    help="reuse a finished `rootshift build` of BOARD in DIR instead of building (a `commit` key in its "
                         "board.json, if you add one, is quoted)")
    ap.add_argument("--images", type=int, default=4, help="images through the device models (default 4)")
    ap.add_argument("--mnist-model", help="an MNIST-5k ResNet-8 .rsq: its network engine per network-engine board "
                                          "(no build: throughput at the board clock, or the compiler's refusal)")
    ap.add_argument("--cold", nargs="*", default=[], metavar="BOARD",
                    help="also time these boards' builds with an empty YoWASP cache (cold: the tools compile first)")
    ap.add_argument("--network-estimate", nargs="*", default=[], metavar="BOARD",
                    help="also estimate the network engine (2x2, 4x4) on these boards, which cannot carry it")
    a = ap.parse_args(argv)
    configure(a)
    reuse = dict(x.split("=", 1) for x in a.build_dir)
    t0 = time.time()
    rows = []
    sim = None
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.model) if a.model else _digits_model(tmp)
        for name in a.boards:
            b = get_board(name)
            design, rep = link_run(model, name, 1 if b.engine == "tile" else a.images)
            build = None
            if name in reuse:
                build = json.loads((Path(reuse[name]) / B.REPORT).read_text())
            elif not a.quick:
                build = B.build(model, name, Path(tmp) / name)
            row = {"board": name, "engine": design.engine, "array": f"{design.info['rows']}x{design.info['cols']}",
                   "clock_mhz": b.clock_mhz, "mismatches": rep["mismatches"], "images": rep["images"],
                   "cycles": rep["device_cycles_per_image"], "build": build,
                   "at_clock": throughput(design, b, rep, b.clock_mhz * 1e6)}
            if build and build.get("fmax_mhz"):
                row["fmax"], row["fmax_from"] = build["fmax_mhz"], "this build"
            elif design.engine == "network":
                from rootshift.hw.board.boards import network_measured

                size, measured = f"{b.rows}x{b.cols}", network_measured(b)
                own = measured.get(size, {}).get("fmax_mhz")
                row["fmax"], row["fmax_from"] = ((own, f"the {size} board build of the table (hw/board/boards.py)") if own
                                                 else (measured["4x4"]["fmax_mhz"], "the 4x4 engine alone, bench/engine_cost.py"))
            if row.get("fmax"):
                row["fmax_ips"] = row["fmax"] * 1e6 / rep["device_cycles_per_image"]
            # a reused build of an older engine or compiler: its program is not today's (sim/board.py run refuses it)
            row["stale_build"] = bool(build and build.get("program_sha256")
                                      and build["program_sha256"] != design.info.get("program_sha256"))
            if build and not a.quick and not row["stale_build"]:
                # rootshift estimate (synthesis only) against this build: issue 12 asks <= 15 % on LUTs
                est = cli_estimate(model, name)
                row["estimate_lut"] = est["resources"]["LUT"]["used"]
                row["estimate_s"] = est["seconds"]
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "build"}, default=str), flush=True)
        if not a.quick:
            sim = pin_sim_check(model)
            print(json.dumps(sim), flush=True)
        cold = [cold_build(model, name, tmp) for name in a.cold] if not a.quick else []
        for c in cold:
            print(json.dumps(c), flush=True)
        net_est = [e for name in a.network_estimate for e in network_estimate(model, name)]
        mnist = mnist_rows(a.mnist_model, a.boards, a.images) if a.mnist_model else []
    if a.write and a.quick:
        raise SystemExit("boards: refusing --write of a --quick run (no builds)")
    figure = write_figure("boards", plot(rows))
    body = report(argv, rows, sim, time.time() - t0, reuse, net_est, mnist, cold, figure)
    print(body)
    write_section("boards", body)


def plot(rows):
    """Images/s per board on a log axis: device compute at the board clock, the link bound, end to end, and
    issue 12's targets (iCEBreaker end to end, ULX3S-85F compute)."""
    plt = pyplot()
    bars = (("compute at the board clock", lambda t: 1 / t["compute_s"]), ("link bound (3 Mbaud)", lambda t: t["link_bound"]),
            ("end to end", lambda t: t["images_per_s"]))
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.75 * len(rows)), layout="constrained")
    h = 0.8 / len(bars)
    for i, (label, f) in enumerate(bars):
        ys = [k + (i - 1) * h for k in range(len(rows))]
        ax.barh(ys, [f(r["at_clock"]) for r in rows], height=h, label=label)
    for target, name in ((TARGET_ICEBREAKER_E2E, "icebreaker"), (TARGET_ULX3S_COMPUTE, "ulx3s-85f")):
        if any(r["board"] == name for r in rows):
            k = next(i for i, r in enumerate(rows) if r["board"] == name)
            ax.plot([target] * 2, [k - 0.45, k + 0.45], "k--", lw=1)
            ax.annotate(f"target {target:,}", (target, k - 0.45), fontsize=7, ha="center", va="bottom")
    ax.set_yticks(range(len(rows)), [f"{r['board']}\n{r['engine']} {r['array']}" for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("digits images / s")
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _res(build, key):
    r = build["resources"].get(key) if build else None
    return f"{r['used']:,} / {r['available']:,}" if r else "-"


def _e2e_why(r, t, ok, slow=False):
    """What sets the network engine's end-to-end rate: per image the previous image's answer and the next
    request cross the link while the image computes; the link idles while compute outlasts them."""
    c, q, a = 1e3 * t["compute_s"], 1e3 * t["request_s"], 1e3 * t["answer_s"]
    s = (f"Per image: compute {c:.2f} ms at {r['clock_mhz']:g} MHz, overlapped with the previous answer's {a:.2f} ms "
         f"and the next request's {q:.2f} ms on the link; ")
    s += (f"compute outlasts them by {c - q - a:.2f} ms, the link's idle time per image" if c > q + a
          else "the link never idles (compute is shorter than request and answer)")
    if slow:
        s += (f". Limit: this build closed at {r['fmax']} MHz, below the {r['clock_mhz']:g} MHz board clock: it does not "
              "run there")
    elif not ok:
        s += (f". Limit: compute; the board clock is {r['clock_mhz']:g} MHz, the fastest exact UART clock the PLL "
              "makes below the engine's Fmax")
    return s + "."


def report(argv, rows, sim, wall, reuse=None, net_est=(), mnist=(), cold=(), figure=None):
    cmd = "python bench/boards.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    commit = B.provenance(get_board("icebreaker")).get("commit")
    lines = ["## On the board: digits ResNet-8 per board (issue 12)", "",
             f"Made by `{cmd.strip()}` in {wall / 60:.0f} min" + (f" (rootshift at commit {commit})" if commit else "")
             + ". Engine and array from each board's table "
             "(hw/board/boards.py); bytes per image counted by the host's FramedLink while `run_board` drives the "
             "device model over a pseudo-terminal (logits checked: mismatches column); 3 Mbaud, 10 bits per byte. "
             "End to end: network engine `max(compute, request + answer)` (the next image's pixels and the "
             "previous image's logits cross the link while the current one computes), tile engine `link + compute` (stop-and-wait). FTDI/USB latency not included (no board). "
             "Time to bitstream with the YoWASP tools already compiled (warm cache); cold (an empty cache, as on a "
             "fresh machine) below the table.", "",
             "| board | engine | array | LUT | FF | BRAM | DSP | Fmax MHz | clock MHz | time to bitstream (warm) | "
             "cycles / image | bytes / image | compute images/s (clock; Fmax) | link bound images/s | "
             "end to end images/s | link share | mismatches |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, bld = r["at_clock"], r["build"]
        fmax = f"{bld['fmax_mhz']:.1f}" if bld and bld.get("fmax_mhz") else "-"
        # a Gowin build's estimate before place and route (estimate_s) is part of the wait
        tb = f"{(bld['build_s'] + bld.get('estimate_s', 0)) / 60:.1f} min" if bld and bld.get("build_s") else "-"
        ips_f = f"{r['fmax_ips']:,.0f}" if r.get("fmax_ips") else "-"
        lines.append(f"| {r['board']} | {r['engine']} | {r['array']} | {_res(bld, 'LUT')} | {_res(bld, 'FF')} | "
                     f"{_res(bld, 'BRAM')} | {_res(bld, 'DSP')} | {fmax} | {r['clock_mhz']:g} | {tb} | "
                     f"{r['cycles']:,.0f} | {t['link_bytes']:,.0f} | {1 / t['compute_s']:,.1f}; {ips_f} | "
                     f"{t['link_bound']:,.1f} | {t['images_per_s']:,.2f} | {100 * t['link_share']:.0f} % | "
                     f"{r['mismatches']} of {r['images']} |")
    for name, d in (reuse or {}).items():
        bld = next((r["build"] for r in rows if r["board"] == name and r["build"]), None)
        if bld:
            from rootshift.hw.engine.engine import ENGINE_PROTOCOL_VERSION

            v = bld.get("protocol_version")
            stale = next(r["stale_build"] for r in rows if r["board"] == name)
            lines += ["", f"{name}: utilization, Fmax and time to bitstream are a finished build's (`{d}/board.json`, "
                          f"seed {bld.get('seed')}"
                          + (f", commit {bld['commit']}" if bld.get("commit") else "")
                          + (f"; built for {bld['clock_mhz']:g} MHz, the table's clock is now "
                             f"{get_board(name).clock_mhz:g} MHz" if bld.get("clock_mhz") not in (None, get_board(name).clock_mhz)
                             else "")
                          + f"), not rebuilt by this run; that build's engine spoke protocol v{v}"
                          + (f" (today's is v{ENGINE_PROTOCOL_VERSION})" if v != ENGINE_PROTOCOL_VERSION else "")
                          + (f"; its cycles per image were {bld['cycles_per_image']:,}, this run's model counts "
                             f"{next(r['cycles'] for r in rows if r['board'] == name):,.0f}"
                             if bld.get("cycles_per_image") not in (None, next(r["cycles"] for r in rows if r["board"] == name))
                             else "")
                          + (". Its program is not today's (the engine or compiler changed since: `rootshift run` "
                             "refuses it until it is rebuilt); the cycles per image and images/s are today's compiler's, "
                             "and the estimate is not compared with it" if stale else "") + "."]
    if cold:
        lines += ["", "Time to bitstream cold: `rootshift build` in a fresh process with an empty `XDG_CACHE_HOME`, so "
                      "each YoWASP tool (Yosys, nextpnr, the packer) compiles its WebAssembly on first use, as on a fresh "
                      "machine; on this shared 2-core machine, under the load of the other jobs:", "",
                  "| board | cold | warm (the table) | one-time tool compile | same bitstream as warm |", "|---|---|---|---|---|"]
        for c in cold:
            bld = next((r["build"] for r in rows if r["board"] == c["board"] and r["build"]), None)
            warm = (bld["build_s"] + bld.get("estimate_s", 0)) if bld and bld.get("build_s") else None
            same = "-" if not bld else ("yes" if bld.get("sha256") == c["sha256"] else "**no**")
            lines.append(f"| {c['board']} | {c['cold_s'] / 60:.1f} min | "
                         + (f"{warm / 60:.1f} min | {(c['cold_s'] - warm) / 60:.1f} min" if warm else "- | -")
                         + f" | {same} |")
    gowin = [r for r in rows if r["build"] and "SSRAM" in r["build"]["resources"]]
    for r in gowin:
        lines += ["", f"{r['board']}: LUT counts LUT4 sites (a LUT4 or one ALU bit of carry logic); the design also "
                      f"uses {_res(r['build'], 'SSRAM')} RAM16SDP4 shadow SRAMs (LUT RAM)."]
    est = [r for r in rows if r.get("estimate_lut") and r["build"]]
    if est:
        lines += ["", "`rootshift estimate` (synthesis only; on Gowin synthesis and nextpnr's packer) against the build's "
                      "LUTs (target: error <= 15 %):", "",
                  "| board | estimate LUT | build LUT | error | estimate time |", "|---|---|---|---|---|"]
        for r in est:
            built = r["build"]["resources"]["LUT"]["used"]
            err = (r["estimate_lut"] - built) / built
            lines.append(f"| {r['board']} | {r['estimate_lut']:,} | {built:,} | {100 * err:+.1f} % "
                         f"({'met' if abs(err) <= 0.15 else 'NOT met'}) | {r['estimate_s']:.0f} s |")
    if net_est:
        lines += ["", "The network engine where it cannot fit (`rootshift estimate`: synthesis, and on Gowin nextpnr's "
                      "packer; no place and route), the refusal's numbers (hw/board/boards.py NETWORK_ENGINE_MEASURED):",
                  "", "| board | array | LUT | FF | BRAM | DSP | other | memory plan (bytes) | estimate time |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in net_est:
            res = e["resources"]
            other = ", ".join(f"{k} {v['used']:,} / {v['available']:,}" for k, v in res.items()
                              if k not in ("LUT", "FF", "BRAM", "DSP"))
            plan = ", ".join(f"{k} {v:,}" for k, v in e["plan"].items())
            lines.append(f"| {e['board']} | {e['array']} | " + " | ".join(
                f"{res[k]['used']:,} / {res[k]['available']:,}" for k in ("LUT", "FF", "BRAM", "DSP"))
                + f" | {other or '-'} | {plan} | {e['seconds']:.0f} s |")
    if mnist:
        lines += ["", "MNIST-5k ResNet-8 (28x28 inputs) on the network-engine boards, no build (the board clock; the "
                      "tile-engine boards are link-bound as for digits, not run):", ""]
        for m in mnist:
            if "refused" in m:
                lines.append(f"* {m['board']}: **refused** by the compiler with the board's memory limits: {m['refused']}. "
                             "Its plan with no limits: " + ", ".join(f"{k} {v:,}" for k, v in m["plan"].items())
                             + " bytes; " + (f"the RTL engine refuses it too ({m['rtl_refused']})" if m["rtl_refused"]
                                             else "the RTL engine runs its steps (rtl_check)") + ".")
            else:
                t = m["at_clock"]
                lines.append(f"* {m['board']} ({m['array']}): {m['cycles']:,.0f} cycles per image, "
                             f"{t['link_bytes']:,.0f} bytes per image, {1 / t['compute_s']:,.1f} images/s of compute at "
                             f"{m['clock_mhz']:g} MHz, {t['images_per_s']:,.1f} end to end (link bound "
                             f"{t['link_bound']:,.0f}), mismatches {m['mismatches']} of {m['images']}")
    if figure:
        lines += ["", f"![Digits images/s per board: compute, link bound, end to end, and the targets]({figure})"]
    lines += ["", "Targets (issue 12):"]
    net_bytes = next((f"{r['at_clock']['link_bytes']:,.0f}" for r in rows if r["engine"] == "network"), "about 313")
    for r in rows:
        t = r["at_clock"]
        if r["board"] == "icebreaker":
            ok = t["images_per_s"] >= TARGET_ICEBREAKER_E2E
            lines.append(f"* icebreaker >= {TARGET_ICEBREAKER_E2E} digits images/s end to end: **{'met' if ok else 'NOT met'}** "
                         f"({t['images_per_s']:.2f}/s). Limit, measured: the {r['engine']} engine moves "
                         f"{t['link_bytes']:,.0f} bytes per image over the link ({100 * t['link_share']:.0f} % of the time); "
                         f"the network engine, which would send {net_bytes} bytes, does not fit "
                         f"the UP5K ({get_board('icebreaker').engine_why.split(': ', 1)[1]}).")
        elif r["board"].startswith("ulx3s") and r["engine"] == "network":
            best = r.get("fmax_ips") or 1 / t["compute_s"]
            ok1 = best >= TARGET_ULX3S_COMPUTE
            ratio = t["images_per_s"] / t["link_bound"]
            # at the board clock, which a build must close at (a reused build may be of another clock)
            slow = r.get("fmax_from") == "this build" and r["fmax"] < r["clock_mhz"]
            ok2 = ratio >= TARGET_ULX3S_LINK_SHARE and not slow
            lines.append(f"* {r['board']} >= {TARGET_ULX3S_COMPUTE:,} images/s of device compute (Fmax / cycles): "
                         f"**{'met' if ok1 else 'NOT met'}** ({best:,.0f}/s). Limit, measured: {r['cycles']:,.0f} cycles "
                         f"per image on the {r['array']} array at an Fmax of {r['fmax']} MHz ({r['fmax_from']}; its "
                         "critical path: docs/boards.md, \"Measured builds\"); 5,000/s needs about "
                         f"{TARGET_ULX3S_COMPUTE / best:.1f}x fewer cycles or that much more clock.")
            lines.append(f"* {r['board']} end to end within 80 % of the link bound: **{'met' if ok2 else 'NOT met'}** "
                         f"({t['images_per_s']:,.0f} of {t['link_bound']:,.0f} images/s, {100 * ratio:.0f} %). "
                         + _e2e_why(r, t, ok2, slow))
        elif r["engine"] == "tile":
            lines.append(f"* {r['board']} (no target in issue 12): {t['images_per_s']:.2f} images/s end to end, "
                         f"link-bound: the tile engine moves {t['link_bytes']:,.0f} bytes per image "
                         f"({100 * t['link_share']:.0f} % of the time); the network engine does not fit "
                         f"({get_board(r['board']).engine_why}).")
    if sim:
        lines += ["", f"Pin-level check of the overlap model (sim/board_cosim.py, Verilator, the ULX3S core with a 4x4 engine, 4 MHz clock, 1 Mbaud): "
                      f"{sim['sim_s_per_image'] * 1e3:.3f} ms simulated per image overlapped (model "
                      f"{sim['model_s_per_image'] * 1e3:.3f} ms), {sim['stop_and_wait_s_per_image'] * 1e3:.3f} ms "
                      f"stop-and-wait; mismatches {sim['mismatches']} / {sim['overlap_mismatches']} (stop-and-wait / "
                      "overlapped)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
