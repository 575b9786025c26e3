"""Co-simulation with cocotb 2.x through cocotb_tools.runner, Verilator and Icarus, against the golden
model: random tiles, every layer of the exported digits model, whole-network logits, mismatch reports."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from rootshift.hw import protocol as P
from rootshift.hw.params import ArrayParams
from rootshift.sim.cosim import compare_layers, cosim_model, run_job
from rootshift.sim.driver import HostDriver, Request, hardware_for, run_sync
from rootshift.sim.model import DeviceModel
from rootshift.sw import contract as C
from rootshift.sw import golden, rsq
from rootshift.sw.data import load_dataset
from rootshift.sw.errors import ConfigError

HAVE_ICARUS = shutil.which("iverilog") is not None
icarus = pytest.mark.skipif(not HAVE_ICARUS, reason="iverilog is not installed (make setup installs it as root)")


def _oracle(p, a, w, mults, bias, shift, relu):
    terms = {"acc": np.where(w >> (p.wbits - 1) & 1, w - (1 << p.wbits), w)} if p.pe == "mult" else C.weight_terms(w, p.format, p.pe)
    accs = C.accumulate(a, terms, p.pe, p.abits)
    keys = ["even", "odd"] if p.pe == "dual" else ["acc"]
    return C.requantize([accs[k] for k in keys], mults, bias, shift, 0 if relu else C.FINE_MIN, C.FINE_MAX)


def _random_tiles(p, n, seed):
    rng = np.random.default_rng(seed)
    codes = p.format.all_codes() if p.format else np.arange(2**p.wbits)
    tiles, values = [], 0
    while len(tiles) < n or values < 1200:  # thousands of compared outputs, whatever the array size
        k = int(rng.integers(1, p.max_k + 1))
        r, c = int(rng.integers(1, p.rows + 1)), int(rng.integers(1, p.cols + 1))
        a = rng.integers(0, 2**p.abits, size=(r, k))
        w = rng.choice(codes, size=(c, k))
        mults = [rng.integers(-(2**31), 2**31, size=c) for _ in range(p.n_acc)]
        tiles.append((a, w, mults, rng.integers(-(2**50), 2**50, size=c), int(rng.integers(1, 48)), bool(rng.integers(2))))
        values += r * c
    # worst cases, always: every activation at its maximum, the largest (negative, then positive)
    # weight magnitude, K = max_k, extreme multipliers, with and without ReLU
    amax = 2**p.abits - 1
    if p.format:
        sign, zero, kk, odd = p.format.decode(codes)
        big = [int(x) for x, z, e in zip(codes, zero, kk) if not z and e == 0]
    else:
        big = [1 << (p.wbits - 1), (1 << (p.wbits - 1)) - 1]  # -2^(b-1) and 2^(b-1)-1 as raw codes
    for wc in big:
        for m, relu in ((2**31 - 1, False), (-(2**31), True)):
            tiles.append((np.full((p.rows, p.max_k), amax), np.full((p.cols, p.max_k), wc), [np.full(p.cols, m)] * p.n_acc,
                          np.zeros(p.cols, np.int64), 1, relu))
    zero_code = p.format.zero_field if p.format else 0
    tiles.append((np.full((p.rows, 5), amax), np.full((p.cols, 5), zero_code), [np.full(p.cols, 7)] * p.n_acc,
                  np.full(p.cols, -5), 3, False))
    return tiles


CONFIGS = [
    ("verilator", "dual", 4, 4, 2, 3),
    ("verilator", "lut", 3, 8, 3, 2),
    ("verilator", "shift", 4, 4, 2, 2),
    ("verilator", "mult", 8, 8, 2, 2),
    ("verilator", "dual", 8, 8, 4, 4),
    pytest.param("icarus", "dual", 4, 4, 2, 3, marks=icarus),
    pytest.param("icarus", "mult", 4, 8, 2, 2, marks=icarus),
]


@pytest.mark.parametrize("sim, pe, wbits, abits, rows, cols", CONFIGS)
def test_random_tiles_match_the_contract(sim, pe, wbits, abits, rows, cols, tmp_path):
    p = ArrayParams(wbits=wbits, abits=abits, base="2" if pe == "shift" else "sqrt2", pe=pe, rows=rows, cols=cols, max_k=48)
    tiles = _random_tiles(p, 250, seed=wbits * 100 + abits * 10 + rows)
    reqs = [Request(P.tile_words(p, *t), p.rows * p.cols) for t in tiles]
    res = run_job(p, {"kind": "tiles", "requests": reqs}, sim)
    compared = 0
    for i, (t, out) in enumerate(zip(tiles, res["outputs"])):
        a, w = t[0], t[1]
        got = P.unpack_outputs(p, out, a.shape[0], w.shape[0])
        exp = _oracle(p, *t)
        assert np.array_equal(got, exp), f"tile {i}: first difference at {np.argwhere(got != exp)[0].tolist()}"
        compared += exp.size
    assert compared >= 1200


def test_driver_on_the_python_device_model_matches_golden(exported):
    im = rsq.load(exported)
    p = hardware_for(im, 4, 4)
    x = load_dataset("digits").test.x[:3].numpy()
    rec = {}
    dev = DeviceModel(p)
    logits = run_sync(HostDriver(p, im).run(x, rec), lambda r: dev.transact(r.words, r.n_out))
    assert np.array_equal(logits, golden.run(im, x))
    assert compare_layers(im, x, rec, p)[0] is None


def test_driver_refuses_hardware_that_cannot_run_the_model(exported):
    im = rsq.load(exported)
    with pytest.raises(ConfigError, match="layer conv1: W8A8 does not fit W4A8 hardware"):
        HostDriver(ArrayParams(wbits=4, abits=8, max_k=576), im)
    with pytest.raises(ConfigError, match="layer stages.0.0.conv1: K = 144 exceeds the hardware's max_k 100"):
        HostDriver(ArrayParams(wbits=8, abits=8, max_k=100), im)
    with pytest.raises(ConfigError, match="product mode dual but the hardware PE is mult"):
        HostDriver(ArrayParams(wbits=8, abits=8, pe="mult", max_k=576), im)


def test_mismatch_report_names_layer_tile_index(exported):
    im = rsq.load(exported)
    p = hardware_for(im)
    x = load_dataset("digits").test.x[:2].numpy()
    rec = {}
    dev = DeviceModel(p)
    run_sync(HostDriver(p, im).run(x, rec), lambda r: dev.transact(r.words, r.n_out))
    rec["outputs"]["stages.1.0.conv2"][1][5, 2, 3] += 1
    rep, _ = compare_layers(im, x, rec, p)
    assert rep["layer"] == "stages.1.0.conv2" and rep["image"] == 1 and rep["index"] == [5, 2, 3]
    assert rep["tile"] == [(2 * 4 + 3) // 8, 5 // 8] and rep["got"] == rep["expected"] + 1
    assert "mismatch in layer stages.1.0.conv2, image 1, tile (1, 0), output index (5, 2, 3)" in rep["message"]


def test_whole_network_is_bit_exact_on_verilator(exported):
    rep = cosim_model(exported, "verilator", images=3)
    assert rep["mismatches"] == 0 and "first_mismatch" not in rep
    assert rep["compared_values"] > 15000  # every layer's every output of 3 images, and the logits
    assert rep["rtl_acc"] == rep["integer_acc"]
    assert 0 < rep["utilization"] <= 1 and rep["cycles_per_image"] > 0
    assert set(rep["utilization_per_layer"]) == {op["name"] for op in rsq.load(exported).layers()}


@icarus
def test_whole_network_is_bit_exact_on_icarus(exported):
    rep = cosim_model(exported, "icarus", images=1, rows=8, cols=8)
    assert rep["mismatches"] == 0 and rep["compared_values"] > 5000


def test_cosim_cli_json_and_a_caught_fault(exported, cli, tmp_path):
    r = subprocess.run(cli + ["cosim", str(exported), "--engine", "tile", "--sim", "verilator", "--images", "2", "--json"],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    for key in ("images", "mismatches", "compared_values", "cycles_per_image", "utilization", "wall_s_per_image"):
        assert key in rep
    assert rep["images"] == 2 and rep["mismatches"] == 0
    # a flipped bit in one word the device sent must be caught, named, and fail the command
    waves = tmp_path / "waves"
    env = dict(os.environ, ROOTSHIFT_INJECT_FAULT="700")
    r = subprocess.run(cli + ["cosim", str(exported), "--engine", "tile", "--images", "1", "--json", "--waves", str(waves)],
                       capture_output=True, text=True, timeout=1800, env=env)
    assert r.returncode == 1, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["mismatches"] >= 1
    m = rep["first_mismatch"]
    assert m["layer"] and m["expected"] != m["got"] and len(m["tile"]) == 2
    assert "mismatch in layer" in r.stderr
    assert list(waves.glob("*.vcd")) or list(waves.glob("*.fst"))


def test_driver_checks_the_bias_before_shifting_it():
    """Issue 11: ``B << d`` was formed in int64 and checked afterwards, so 2^62 << 4 wrapped to 0 and the
    device computed with bias 0 while the golden model used the exact bias."""
    from rootshift.sim.driver import LayerMap, hardware_bias

    lm = LayerMap(np.zeros((2, 3), np.int64), d=4, shift=10, k=3)
    ok = hardware_bias({"name": "conv", "bias": np.array([2**58 - 1, -(2**59)], np.int64)}, lm)
    assert ok == [2**62 - 16 + 2**9, -(2**63) + 2**9]
    for b in (2**62, 2**59, 2**59 - 1, -(2**59) - 64, 2**63 - 1):
        with pytest.raises(ConfigError, match=r"layer conv: bias\[1\] = .* times 2\^4 .* outside the hardware's signed 64-bit bias"):
            hardware_bias({"name": "conv", "bias": np.array([0, b], np.int64)}, lm)


def test_a_device_flag_under_cocotb_reaches_the_caller_by_name(exported):
    """A device that flags a protocol error inside the cocotb bench raises the driver's DeviceFlagError
    with its flags and where, not an anonymous "cocotb bench failed" (the RTL here is built with a max_k
    too small for the model, so the first CONFIG is out of range)."""
    from dataclasses import asdict, replace

    from rootshift.sim.driver import DeviceFlagError, hardware_for

    im = rsq.load(exported)
    full = hardware_for(im, 2, 2)
    small = replace(full, max_k=8)
    pixels = np.zeros((1, *im.meta["input_shape"]), np.int64)
    with pytest.raises(DeviceFlagError, match=r"layer conv1, image 0: the device flagged a protocol error") as e:
        run_job(small, {"kind": "model", "model": str(exported), "params": asdict(full), "pixels": pixels}, "verilator")
    assert e.value.flags and e.value.where


def test_the_network_engine_is_the_default_and_tile_features_ask_for_the_tile_engine():
    from rootshift.sim.api import engine_kind
    from rootshift.sw.errors import ConfigError

    assert engine_kind(None) == "network" and engine_kind(True) == "network" and engine_kind("tile") == "tile"
    assert engine_kind(None, rtl="build/gen") == "tile" and engine_kind(None, waves="w") == "tile"
    with pytest.raises(ConfigError, match="--rtl and --waves are for the tile engine"):
        engine_kind("network", rtl="build/gen")
    with pytest.raises(ConfigError, match="--engine must be 'network' or 'tile', not 'bogus'"):
        engine_kind("bogus")


def test_simulator_builds_are_keyed_by_the_cocotb_install(monkeypatch, tmp_path):
    """A Verilator model links cocotb's VPI library by absolute path, so a build cached by another virtual
    environment must not be reused (it failed to start with "cannot open shared object file")."""
    import cocotb

    from rootshift.sim import cosim

    here = cosim.toolchain_tag("verilator")
    assert here == cosim.toolchain_tag("verilator") and here != cosim.toolchain_tag("icarus")
    monkeypatch.setattr(cocotb, "__file__", str(tmp_path / "other-venv" / "cocotb" / "__init__.py"))
    assert cosim.toolchain_tag("verilator") != here
