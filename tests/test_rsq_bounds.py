"""The contract's integer bounds (docs/arithmetic.md, "Bounds"): the loader refuses what could wrap int64,
naming the layer and field, and at the bounds the int64 arithmetic equals exact integer arithmetic."""

import hashlib
import json
from fractions import Fraction
from math import floor

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rootshift.sw import contract as C
from rootshift.sw import golden, rsq
from rootshift.sw.errors import ConfigError, FormatError
from rootshift.sw.export import export_model
from rootshift.sw.layers import layer_schemes, quantize_model
from rootshift.sw.models import build_model


def small_model(wq="post", aq="asq", seed=0):
    """An untrained but calibrated resnet8 on 8x8 inputs: exports in a second, exercises every op."""
    torch.manual_seed(seed)
    m = build_model("resnet8", 1, 10)
    quantize_model(m, layer_schemes(m, wq, aq, 4, 4))
    m.train()
    with torch.no_grad():
        m(torch.rand(8, 1, 8, 8))
    return m.eval()


@pytest.fixture(scope="module")
def model_bytes():
    return rsq.to_bytes(export_model(small_model(), input_shape=[1, 8, 8]))


def tampered(data, edit):
    im = rsq.from_bytes(data)
    edit(im)
    return rsq.to_bytes(im)  # re-checksummed, bypassing the save-time validation


def rechecksum(doc, payload, fver=rsq.FORMAT_VERSION, cver=C.CONTRACT_VERSION):
    js = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    body = rsq.HEAD.pack(rsq.MAGIC, fver, cver, len(js), len(payload)) + js + payload
    return body + hashlib.sha256(body).digest()


def split(data):
    _, fver, cver, jl, pl = rsq.HEAD.unpack_from(data)
    return json.loads(data[rsq.HEAD.size:rsq.HEAD.size + jl]), data[rsq.HEAD.size + jl:rsq.HEAD.size + jl + pl], fver


def refused(data, *fragments):
    with pytest.raises(FormatError) as e:
        rsq.from_bytes(data, "bad.rsq")
    assert e.value.exit_code == rsq.EXIT_INVALID
    for f in fragments:
        assert f in str(e.value), str(e.value)
    return str(e.value)


def test_a_wrapping_beta_is_an_error_not_m_zero(model_bytes):
    """beta_fx = 2**43: M_base * beta_fx leaves int64 (it wrapped to M = 0 before)."""
    im = rsq.from_bytes(model_bytes)
    op = im.op("stages.0.0.conv1")
    assert np.abs(op["m_base"]["even"]).max() >= 2**20  # the product really is past 2**63
    with pytest.raises(ConfigError, match="layer stages.0.0.conv1: per-sample multiplier overflows 32 bits"):
        golden.layer_multipliers(op, np.array([2**43], np.int64))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-C.M_BASE_MAX, C.M_BASE_MAX), min_size=1, max_size=4),
       st.lists(st.integers(1, 2**62 - 1), min_size=1, max_size=3))
def test_beta_multiplier_is_exact_or_refused(m_base, betas):
    exact = [[floor(Fraction(m * b, 2**16) + Fraction(1, 2)) for m in m_base] for b in betas]
    fits = all(abs(v) < 2**31 for row in exact for v in row)
    if fits:
        assert C.beta_multiplier(np.array(m_base), np.array(betas)).tolist() == exact
    else:
        with pytest.raises(ConfigError, match="overflows 32 bits"):
            C.beta_multiplier(np.array(m_base), np.array(betas))


def test_a_bias_past_the_bound_is_refused(model_bytes):
    """B = 2**63 - 2**20 wrapped acc * M + B to -2**31 where the exact result is 2**31 - 1."""
    def edit(im):
        im.op("stages.1.0.conv2")["bias"][3] = 2**63 - 2**20
    data = tampered(model_bytes, edit)
    refused(data, "op 'stages.1.0.conv2' field 'bias'", "exceeds the contract bound 2305843009213693951")
    im = rsq.from_bytes(model_bytes)
    edit(im)
    with pytest.raises(FormatError, match="field 'bias'"):  # the golden model refuses it too
        golden.run(im, np.zeros((1, 1, 8, 8), np.int64))


def test_bias_at_the_bound_is_accepted(model_bytes):
    def edit(im):
        im.op("fc")["bias"][:] = [C.BIAS_MAX, -C.BIAS_MAX] * 5
    im = rsq.from_bytes(tampered(model_bytes, edit))
    logits = golden.run(im, np.full((2, 1, 8, 8), 255))
    assert logits[:, 0].tolist() == [C.FINE_MAX] * 2 and logits[:, 1].tolist() == [C.FINE_MIN] * 2


def test_stride_zero_is_a_named_format_error(model_bytes, tmp_path, cli):
    import subprocess

    def edit(im):
        im.op("stages.1.0.conv1")["stride"] = 0
    data = tampered(model_bytes, edit)
    refused(data, "op 'stages.1.0.conv1' field 'stride': must be an integer in 1..4096, not 0")
    bad = tmp_path / "stride0.rsq"
    bad.write_bytes(data)
    r = subprocess.run(cli + ["inspect", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == rsq.EXIT_INVALID and "field 'stride'" in r.stderr and "Traceback" not in r.stderr


def _set(path, value):
    def edit(im):
        op = im.op(path[0])
        d = op
        for k in path[1:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


@pytest.mark.parametrize("path, value, message", [
    (("stages.0.0.conv2", "beta_from"), "stages.0.0.conv1.aq", "field 'beta_from': is 'stages.0.0.conv1.aq' but the quant op feeding"),
    (("stages.0.0.conv2", "abits"), 3, "field 'abits': is 3 but its quant op 'stages.0.0.conv2.aq' makes 4-bit codes"),
    (("stages.0.0.conv2.aq", "adapter", "f2"), -1, "field 'adapter.f2': must be an integer in 0..62, not -1"),
    (("stages.0.0.conv2.aq", "adapter", "f1"), 63, "field 'adapter.f1': must be an integer in 0..62, not 63"),
    (("stages.0.0.conv1", "pad"), -1, "field 'pad'"),
    (("stages.0.0.conv1", "kernel"), [3], "field 'kernel'"),
    (("stages.0.0.conv1", "shift"), 63, "field 'shift': must be an integer in 1..62"),
    (("fc", "stride"), 1, "field 'stride': must be absent: a linear layer has no kernel, stride or pad"),
    (("conv1.aq", "k_step"), 5, "field 'k_step': must be absent: input8"),
    (("stages.0.0.conv1.aq", "k_step"), 2**61, "field 'k_step': must be an integer in 1..2305843009213693951"),
    (("stages.0.0.conv1", "acc_bound"), 7, "field 'acc_bound': is 7 but the worst case is"),
    (("stages.0.0.conv1", "relu"), 1, "field 'relu': must be true or false"),
])
def test_loader_checks_name_layer_and_field(model_bytes, path, value, message):
    refused(tampered(model_bytes, _set(path, value)), f"op {path[0]!r}", message)


def test_adapter_weight_and_worst_case_bounds(model_bytes):
    def big_w(im):
        im.op("stages.1.0.conv1.aq")["adapter"]["w1"][0, 0] = 2**15
    refused(tampered(model_bytes, big_w), "op 'stages.1.0.conv1.aq' field 'adapter.w1': |value| 32768 exceeds")

    def wide(im):  # every weight at the bound, shift 0: the hidden layer's worst case passes 2**62
        ad = im.op("stages.2.0.conv1.aq")["adapter"]
        ad["w1"][:] = 2**15 - 1
        ad["f1"] = 0
    refused(tampered(model_bytes, wide), "field 'adapter.w2': worst-case |W g + B|")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 62), st.integers(0, 62))
def test_adapter_within_bounds_is_exact(seed, f1, f2):
    """Extreme adapters the loader accepts compute exactly what Python integers compute."""
    rng = np.random.default_rng(seed)
    c, h = 8, 2
    w1 = rng.integers(-(2**15) + 1, 2**15, size=(h, c))
    b1 = rng.integers(-(2**40), 2**40, size=h)
    w2 = rng.integers(-(2**15) + 1, 2**15, size=(1, h))
    b2 = rng.integers(-(2**40), 2**40, size=1)
    hid, out = C.adapter_worst_case(w1, b1, f1, w2, b2, f2)
    if max(hid, out) > C.ADAPTER_SUM_MAX:
        return
    x = rng.choice([C.FINE_MIN, C.FINE_MAX, 0, 12345], size=(3, c, 2, 2))
    got = C.adapter_beta_int(x, w1, b1, f1, w2, b2, f2)

    def rsr(v, s):
        return v if s == 0 else (v + (1 << (s - 1))) >> s
    for n in range(3):
        g = [floor(Fraction(int(x[n, i].sum()), 4) + Fraction(1, 2)) for i in range(c)]
        hh = [max(0, rsr(sum(int(w1[j, i]) * g[i] for i in range(c)) + int(b1[j]), f1)) for j in range(h)]
        z = rsr(sum(int(w2[0, j]) * hh[j] for j in range(h)) + int(b2[0]), f2)
        assert int(got[n]) == max(1, z)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**29) + 1, 2**29 - 1), st.integers(-(2**29) + 1, 2**29 - 1),
       st.integers(-(2**31) + 1, 2**31 - 1), st.integers(-(2**31) + 1, 2**31 - 1),
       st.integers(-C.BIAS_MAX, C.BIAS_MAX), st.integers(1, 62), st.booleans())
def test_dual_requantize_at_the_bounds_is_exact(acc_e, acc_o, m_e, m_o, bias, shift, relu):
    lo = 0 if relu else C.FINE_MIN
    got = int(C.requantize([np.array([[acc_e]]), np.array([[acc_o]])], [np.array([m_e]), np.array([m_o])],
                           np.array([bias]), shift, lo, C.FINE_MAX)[0, 0])
    exact = floor(Fraction(acc_e * m_e + acc_o * m_o + bias, 2**shift) + Fraction(1, 2))
    assert got == min(max(exact, lo), C.FINE_MAX)


def test_quant_step_at_the_bounds_is_exact():
    """rdiv(K_s, beta) with K_s = 2**61 - 1 and beta up to 2**62 - 1 forms 2 K_s + beta < 2**63."""
    for beta in (1, 3, 2**40 + 7, 2**62 - 1):
        r = int(C.step_multiplier(C.K_STEP_MAX, np.array([beta]))[0])
        assert r == min(floor(Fraction(C.K_STEP_MAX, beta) + Fraction(1, 2)), C.R_MAX)


def test_m_base_range_is_symmetric(model_bytes):
    def edge(v):
        return lambda im: im.op("fc")["m_base"]["even"].__setitem__(0, v)
    rsq.from_bytes(tampered(model_bytes, edge(-C.M_BASE_MAX)))
    refused(tampered(model_bytes, edge(-(2**22))), "op 'fc' field 'm_base.even': |value| 4194304 exceeds")


def test_input_shape_rank_and_tensor_kinds(model_bytes):
    doc, payload, _ = split(model_bytes)
    doc["ops"][0]["shape"] = [1, 8]
    doc["meta"]["input_shape"] = [1, 8]
    refused(rechecksum(doc, payload), "field 'shape': must be [C, H, W]")
    doc, payload, _ = split(model_bytes)
    layer = next(o for o in doc["ops"] if o.get("name") == "stages.0.0.conv1")
    layer["in"] = "maxpool.y" if any(o.get("out") == "maxpool.y" for o in doc["ops"]) else "conv1.y"
    refused(rechecksum(doc, payload), "reads activation codes, not fine tensor")
    doc, payload, _ = split(model_bytes)
    doc["arrays"][0]["offset"] = -8
    with pytest.raises(FormatError, match="array 0 has an inconsistent size"):
        rsq.from_bytes(rechecksum(doc, payload))
    doc, payload, _ = split(model_bytes)
    doc["ops"][1]["bits"] = float("nan")
    with pytest.raises(FormatError, match="malformed graph: NaN"):
        rsq.from_bytes(rechecksum(doc, payload))


@pytest.mark.parametrize("tensor", ["stages.0.0.conv1.weight", "stages.1.0.bn2.running_var", "fc.bias",
                                    "stages.0.0.conv2.aq.adapter_beta.hidden.weight", "stages.2.0.conv1.aq.step",
                                    "stages.0.0.conv1.wq.alpha"])
def test_export_refuses_non_finite_parameters(tensor):
    m = small_model()
    t = dict(m.named_parameters(), **dict(m.named_buffers()))[tensor]
    with torch.no_grad():
        t.view(-1)[0] = float("nan") if "var" not in tensor else float("inf")
    with pytest.raises(ConfigError, match=f"{tensor.replace('.', '[.]')} has 1 non-finite value"):
        export_model(m, input_shape=[1, 8, 8])


def test_model_files_hold_no_nan(model_bytes):
    im = rsq.from_bytes(model_bytes)
    im.meta["adapter_beta_error"] = {"x": float("nan")}
    with pytest.raises(ConfigError, match="meta.adapter_beta_error.x is nan"):
        rsq.to_bytes(im)
