"""Shift activations and the shift2 product (docs/arithmetic.md, contract version 2): integer quantization
equals the float hard quantizer, shift2 accumulation equals exact powers of two, the loader and export
accept exactly what the contract expresses, and a trained shift W4A4 model runs bit-for-bit in integers."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rootshift.sw import contract as C
from rootshift.sw import golden, rsq
from rootshift.sw.errors import ConfigError, FormatError
from rootshift.sw.evaluate import inspect_layers
from rootshift.sw.export import export_model
from rootshift.sw.numfmt import PowerFormat
from rootshift.sw.quant import ShiftQuantizer
from rootshift.sw.quant.shift import hard_staircase

from test_rsq_bounds import rechecksum, small_model, split, tampered


def float_codes(x_fine, bits, log2_alpha):
    """Codes the float hard quantizer gives fine values ``x_fine`` (exact in float64: powers of two)."""
    q = ShiftQuantizer(bits, signed=False)
    lv = q.levels.double()
    r = torch.tensor(np.asarray(x_fine, np.float64) * 2.0**-16 / 2.0**log2_alpha)
    v = hard_staircase(r.clamp(float(lv[0]), float(lv[-1])), lv).numpy()
    e = np.where(v > 0, -np.log2(np.where(v > 0, v, 1.0)), -1)
    return np.where(v > 0, e.round().astype(np.int64) + 1, 0), q.max_exponent


def boundary_values(bits, log2_alpha):
    """Every tie and boundary of the level set, one fine unit either side, zero and negatives."""
    t = log2_alpha + 16
    n = 2**bits - 2
    xs = {0, -1, -(2**31), 2**31 - 1, 1, 2, 3}
    for j in range(0, 31):
        for v in (2**j, 3 * 2 ** (j - 1) if j else 1):
            xs.update({v - 1, v, v + 1})
    for edge in (t - n - 1, t - n, t):
        if 0 <= edge <= 30:
            xs.update({2**edge - 1, 2**edge, 2**edge + 1})
    return np.array(sorted(x for x in xs if -(2**31) <= x < 2**31), np.int64)


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_integer_shift_quantization_is_the_float_hard_quantizer(bits):
    for log2_alpha in range(-20, 16):
        x = boundary_values(bits, log2_alpha)
        want, n = float_codes(x, bits, log2_alpha)
        assert n == 2**bits - 2
        got = C.shift_act_codes(x, log2_alpha, n)
        bad = np.nonzero(got != want)[0]
        assert not len(bad), (log2_alpha, x[bad][:5], got[bad][:5], want[bad][:5])


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 6), st.integers(-24, 20), st.integers(-(2**31), 2**31 - 1))
def test_integer_shift_quantization_random(bits, log2_alpha, x):
    want, n = float_codes([x], bits, log2_alpha)
    assert C.shift_act_codes(np.array([x]), log2_alpha, n).tolist() == want.tolist()


def test_shift_quantization_ties_and_zero():
    # alpha = 1 (T = 16), 4 bits: levels 2^-0 .. 2^-14 and 0
    assert C.shift_act_codes(np.array([0, -7]), 0, 14).tolist() == [0, 0]
    assert C.shift_act_codes(np.array([3 << 14]), 0, 14).tolist() == [1]      # 0.75: tie of 1 and 1/2 -> 1
    assert C.shift_act_codes(np.array([(3 << 14) - 1]), 0, 14).tolist() == [2]
    assert C.shift_act_codes(np.array([2**70 % 2**31]), 0, 14).tolist() == [0]
    assert C.shift_act_codes(np.array([1 << 20]), 0, 14).tolist() == [1]      # 16: clamps to alpha
    assert C.shift_act_codes(np.array([2]), 0, 14).tolist() == [15]           # 2^-15: tie of 2^-14 and 0 -> 2^-14
    assert C.shift_act_codes(np.array([1]), 0, 14).tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(2, 4), st.integers(1, 64), st.integers(0, 2**32 - 1), st.booleans())
def test_shift2_is_one_signed_power_of_two_per_term(wbits, abits, k, seed, pot):
    rng = np.random.default_rng(seed)
    fmt = PowerFormat(wbits, "2", min(2 ** (wbits - 1) - (2 if pot else 1), 7), has_zero=pot)
    ea = 2**abits - 2
    codes = rng.choice(fmt.all_codes(), size=(2, k))
    a = rng.integers(0, 2**abits, size=(3, k))
    acc = C.accumulate(a, C.weight_terms(codes, fmt, "shift2"), "shift2", abits, ea)["acc"]
    sign, zero, kk, _ = fmt.decode(codes)
    e_total = fmt.max_shift + ea
    for p in range(3):
        for c in range(2):
            want = sum(int(sign[c, i]) << (e_total - int(kk[c, i]) - (int(a[p, i]) - 1))
                       for i in range(k) if a[p, i] and not zero[c, i])
            assert int(acc[p, c]) == want
            real = sum(Fraction(int(sign[c, i]), 2 ** (int(kk[c, i]) + int(a[p, i]) - 1))
                       for i in range(k) if a[p, i] and not zero[c, i])
            assert Fraction(int(acc[p, c]), 2**e_total) == real
    bound = C.acc_bound("shift2", k, abits, fmt, wbits, ea)
    top = np.full((1, k), 1)  # every activation at the top level (code 1), every weight +2^0
    w0 = C.weight_terms(np.zeros((1, k), np.int64), fmt, "shift2")
    assert int(C.accumulate(top, w0, "shift2", abits, ea)["acc"][0, 0]) == bound == k << e_total
    assert np.abs(acc).max() <= bound


def shift_model(wq="shift", seed=0):
    m = small_model(wq, "shift", seed=seed)
    for q in m.modules():
        if isinstance(q, ShiftQuantizer):
            q.hard.fill_(True)
    return m


@pytest.fixture(scope="module")
def shift_bytes():
    return rsq.to_bytes(export_model(shift_model(), input_shape=[1, 8, 8]))


def test_shift_model_exports_loads_and_runs(shift_bytes):
    im = rsq.from_bytes(shift_bytes)
    assert im.meta["contract"] == C.CONTRACT_VERSION == 2
    modes = {op["name"]: op["mode"] for op in im.layers()}
    assert modes.pop("conv1") == "shift" and set(modes.values()) == {"shift2"}
    for op in im.ops:
        if op["op"] == "quant" and op["name"] != "conv1.aq":
            assert op["kind"] == "shift" and op["max_exponent"] == 14 and "k_step" not in op
    x = np.random.default_rng(0).integers(0, 256, size=(4, 1, 8, 8))
    trace = {}
    golden.run(im, x, trace=trace)
    codes = trace["tensors"]["stages.0.0.conv2.a"]
    assert codes.min() >= 0 and codes.max() <= 15 and len(np.unique(codes)) > 3


def test_loader_checks_shift_ops(shift_bytes):
    def refused(edit, *frags):
        with pytest.raises(FormatError) as e:
            rsq.from_bytes(tampered(shift_bytes, edit), "s.rsq")
        for f in frags:
            assert f in str(e.value), str(e.value)

    def setf(op, field, value):
        return lambda im: im.op(op).__setitem__(field, value)
    refused(setf("stages.0.0.conv2.aq", "max_exponent", 15), "op 'stages.0.0.conv2.aq' field 'max_exponent': must be an integer in 0..14")
    refused(setf("stages.0.0.conv2.aq", "log2_alpha", 65), "field 'log2_alpha'")
    refused(setf("stages.0.0.conv2.aq", "k_step", 1000), "field 'k_step': must be absent")
    refused(setf("stages.0.0.conv2", "act_max_exponent", 13), "op 'stages.0.0.conv2' field 'act_max_exponent': is 13")
    refused(setf("stages.0.0.conv2", "mode", "shift"), "field 'mode': is shift but its quant op 'stages.0.0.conv2.aq' makes shift codes")
    refused(setf("conv1", "mode", "shift2"), "op 'conv1' field 'mode': is shift2 but its quant op 'conv1.aq' makes input8 codes")
    doc, payload, fver = split(shift_bytes)
    with pytest.raises(FormatError, match="meta field 'contract' is 2 but the header says 1"):
        rsq.from_bytes(rechecksum(doc, payload, fver=fver, cver=1))
    doc["meta"]["contract"] = 1
    with pytest.raises(FormatError, match="contract version 1 has no shift activations"):
        rsq.from_bytes(rechecksum(doc, payload, fver=fver, cver=1))


def test_contract_1_files_still_load():
    from test_rsq_format import TINY_LOGITS, TINY_PIXELS, TINY_V1

    data = TINY_V1.read_bytes()
    assert rsq.HEAD.unpack_from(data)[2] == 1
    assert golden.run(rsq.from_bytes(data), TINY_PIXELS).tolist() == TINY_LOGITS


def test_export_refuses_what_shift2_cannot_express():
    with pytest.raises(ConfigError, match="layer stages.0.0.conv1: shift activations need power-of-two weights"):
        export_model(shift_model("post"), input_shape=[1, 8, 8])
    with pytest.raises(ConfigError, match="layer stages.0.0.conv1: shift activations need power-of-two weights"):
        export_model(shift_model("lsq"), input_shape=[1, 8, 8])
    m = shift_model()
    m.stages[0][0].conv2.aq.alpha.fill_(0.75)
    with pytest.raises(ConfigError, match=r"layer stages.0.0.conv2.aq: shift scale alpha = 0.75 is not a power of two"):
        export_model(m, input_shape=[1, 8, 8])
    m = shift_model()
    m.stages[0][0].conv2.aq.hard.fill_(False)
    with pytest.raises(ConfigError, match="layer stages.0.0.conv2.aq: shift quantizer not annealed"):
        export_model(m, input_shape=[1, 8, 8])


@pytest.mark.parametrize("wq, aq, mode, want", [
    ("post", "asq", "dual", {"dual"}), ("post", "asq", "lut", {"lut"}), ("pot", "lsq", "dual", {"shift"}),
    ("shift", "asq", "dual", {"shift"}), ("lsq", "lsq", "dual", {"mult"}), ("shift", "shift", "dual", {"shift", "shift2"}),
    ("pot", "shift", "dual", {"shift", "shift2"})])
def test_inspect_product_mode_for_every_mode(wq, aq, mode, want):
    m = shift_model(wq) if aq == "shift" else small_model(wq, aq)
    if wq == "shift":
        for q in m.modules():
            if isinstance(q, ShiftQuantizer):
                q.hard.fill_(True)
    im = rsq.from_bytes(rsq.to_bytes(export_model(m, mode=mode, input_shape=[1, 8, 8])))
    rows = inspect_layers(im)
    assert {r["product_mode"] for r in rows} == want
    for r in rows:
        op = im.op(r["name"])
        assert r["product_mode"] == op["mode"]
        q = im.op(op["beta_from"])
        assert r["act_scheme"] == q["kind"]
        assert (r["product_mode"] == "shift2") == (q["kind"] == "shift")
    json.dumps(rows)


@pytest.mark.slow
def test_trained_shift_w4a4_golden_agrees_with_float(tmp_path):
    """A short shift W4A4 digits run from scratch: the golden model against the fake-quantized float model."""
    from rootshift.sw.data import load_dataset
    from rootshift.sw.export import export_checkpoint
    from rootshift.sw.train import TrainConfig, load_checkpoint, train

    out = tmp_path / "shift"
    train(TrainConfig(wq="shift", aq="shift", epochs=4, out=str(out)), progress=False)
    im = export_checkpoint(load_checkpoint(out))
    path = tmp_path / "shift.rsq"
    rsq.save(im, path)
    im = rsq.load(path)
    ds = load_dataset("digits")
    pred = golden.run(im, ds.test.x.numpy()).argmax(1)
    ref = im.meta["float_reference"]
    agreement = float((pred == ref["top1"]).mean())
    assert ref["test_acc"] > 0.5, ref["test_acc"]  # the float model learned something
    assert agreement >= 0.995, agreement
