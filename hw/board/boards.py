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
    family: str                # "ice40" | "ecp5"
    osc_mhz: float             # the board's oscillator
    clock_mhz: float           # the engine clock the PLL makes (== osc_mhz: no PLL)
    baud: int                  # the host link (the FTDI FT2232H reaches 3 Mbaud)
    rows: int                  # default array size
    cols: int
    buffer_bytes: int          # the request buffer (one frame), a power of two
    link_timeout_ms: float     # a request that stops arriving this long is "short" (a dropped byte)
    synth_opts: str            # yosys synth_* options
    nextpnr_opts: str
    bitstream_ext: str
    programmer: tuple          # argv with {bitstream}
    programmer_apt: str        # the Debian package that ships the programmer
    # nextpnr's utilization keys -> the report's resource names
    resources: dict = field(default_factory=dict)
    capacity: dict = field(default_factory=dict)   # the device's LUT/FF/BRAM/DSP(/SPRAM), for estimates
    memory: str = ""           # which memory kinds the buffers use
    led_busy: tuple = ("led", 0)
    led_error: tuple = ("led", 1)

    def platform_class(self):
        import importlib

        mod, cls = self.platform.split(":")
        return getattr(importlib.import_module(mod), cls)

    @property
    def programmer_tool(self):
        return self.programmer[0]


_ICE40_RES = {"LUT": "ICESTORM_LC", "FF": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "DSP": "ICESTORM_DSP",
              "SPRAM": "ICESTORM_SPRAM"}
_ECP5_RES = {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD", "DSP": "MULT18X18D"}

ICEBREAKER = Board(
    name="icebreaker", platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40",
    osc_mhz=12, clock_mhz=18, baud=3_000_000, rows=2, cols=2, buffer_bytes=512, link_timeout_ms=50,
    # without -dsp, synth_ice40 builds the requantizer's multipliers from logic: even 2x2 needs 155 % of the LCs
    synth_opts="-dsp", nextpnr_opts="", bitstream_ext="bin",
    programmer=("iceprog", "{bitstream}"), programmer_apt="fpga-icestorm", resources=_ICE40_RES,
    capacity={"LUT": 5280, "FF": 5280, "BRAM": 30, "DSP": 8, "SPRAM": 4},
    memory="buffers and request buffer in EBR (4 kbit block RAM); SPRAM unused",
    led_busy=("led_g", 0), led_error=("led_r", 0))


# LFE5U data sheet (the 12F is a 25F die; nextpnr reports it so): LUT4s, EBR (DP16KD), 18x18 multipliers
_ECP5_CAPACITY = {"12f": (24288, 56, 28), "25f": (24288, 56, 28), "45f": (43848, 108, 72), "85f": (83640, 208, 156)}


def _ulx3s(size):
    lut, bram, dsp = _ECP5_CAPACITY[size]
    return Board(
        name=f"ulx3s-{size}", platform=f"amaranth_boards.ulx3s:ULX3S_{size.upper()}_Platform", family="ecp5",
        osc_mhz=25, clock_mhz=45, baud=3_000_000, rows=8, cols=8, buffer_bytes=4096, link_timeout_ms=50,
        synth_opts="", nextpnr_opts="", bitstream_ext="bit",
        programmer=("openFPGALoader", "-b", "ulx3s", "-m", "{bitstream}"), programmer_apt="openfpgaloader",
        resources=_ECP5_RES, capacity={"LUT": lut, "FF": lut, "BRAM": bram, "DSP": dsp}, memory="buffers and request buffer in DP16KD (18 kbit block RAM)",
        led_busy=("led", 0), led_error=("led", 1))


BOARDS = {b.name: b for b in [ICEBREAKER] + [_ulx3s(s) for s in ("12f", "25f", "45f", "85f")]}


def get_board(name):
    """The board table for ``name`` (``icebreaker``, ``ulx3s-12f`` .. ``ulx3s-85f``), or a ConfigError
    listing the known boards."""
    key = str(name).lower()
    if key == "ulx3s":
        raise ConfigError("the ULX3S comes as ulx3s-12f, ulx3s-25f, ulx3s-45f or ulx3s-85f: name the FPGA size")
    if key not in BOARDS:
        raise ConfigError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}")
    return BOARDS[key]
