"""Export, the .rsq format and the golden model: round trip, corruption handling, agreement."""

import json
import subprocess

import numpy as np
import pytest

from rootshift.sw import contract as C
from rootshift.sw import golden, rsq
from rootshift.sw.data import load_dataset
from rootshift.sw.errors import ConfigError, FormatError
from rootshift.sw.export import export_model
from rootshift.sw.layers import layer_schemes, quantize_model
from rootshift.sw.models import build_model


def test_golden_agrees_with_float_model(exported):
    im = rsq.load(exported)
    ds = load_dataset("digits")
    logits = golden.run(im, ds.test.x.numpy())
    assert logits.dtype == np.int64
    pred = logits.argmax(1)
    ref = im.meta["float_reference"]
    agreement = (pred == ref["top1"]).mean()
    acc = (pred == ds.test.y.numpy()).mean()
    assert agreement >= 0.995
    assert abs(acc - ref["test_acc"]) <= 0.003 + 1e-9
    assert max(im.meta["adapter_beta_error"].values()) < 1e-3


def test_golden_path_is_integer_only(exported):
    im = rsq.load(exported)
    trace = {}
    golden.run(im, load_dataset("digits").test.x[:3].numpy(), trace=trace)
    for group in ("tensors", "acc", "beta"):
        for name, v in trace[group].items():
            assert v.dtype == np.int64, (group, name, v.dtype)
    for op in im.ops:
        for key in ("codes", "bias"):
            if key in op:
                assert np.asarray(op[key]).dtype == np.int64


def test_round_trip_is_identical(exported, tmp_path):
    im = rsq.load(exported)
    again = tmp_path / "again.rsq"
    rsq.save(im, again)
    assert again.read_bytes() == exported.read_bytes()
    x = load_dataset("digits").test.x[:20].numpy()
    assert np.array_equal(golden.run(rsq.load(again), x), golden.run(im, x))


def _rewrite(data, fver=None, cver=None):
    magic, f, c, jl, pl = rsq.HEAD.unpack_from(data)
    body = rsq.HEAD.pack(magic, fver if fver is not None else f, cver if cver is not None else c, jl, pl) + data[rsq.HEAD.size:-32]
    import hashlib

    return body + hashlib.sha256(body).digest()


def _tampered(exported, edit):
    """Re-serialize the model after ``edit(im)``, bypassing the save-time validation."""
    im = rsq.load(exported)
    edit(im)
    return rsq.to_bytes(im)


def _corruptions(exported):
    data = exported.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40

    def shape(im):
        op = im.op("stages.0.0.conv2")
        op["codes"] = op["codes"][:, :8]

    def code_range(im):
        im.op("stages.1.0.conv1")["codes"][0, 0, 0, 0] = 99

    def acc_bits(im):
        im.op("fc")["acc_bits"] = 12

    def cin(im):
        op = im.op("stages.2.0.conv1")
        op["cin"] = 16
        op["codes"] = op["codes"][:, :16]
    return {
        "truncated": (data[: len(data) - 100], rsq.EXIT_TRUNCATED, "truncated"),
        "flipped byte": (bytes(flipped), rsq.EXIT_CHECKSUM, "checksum mismatch"),
        "wrong version": (_rewrite(data, fver=3), rsq.EXIT_VERSION, "format version 3; this rootshift reads versions 1 and 2"),
        "wrong contract": (_rewrite(data, cver=9), rsq.EXIT_VERSION, "contract version 9"),
        "not a model": (b"PK\x03\x04" + data[4:], rsq.EXIT_TRUNCATED, "not a rootshift model file"),
        "shape mismatch": (_tampered(exported, shape), rsq.EXIT_INVALID, "'stages.0.0.conv2' field 'codes'"),
        "code out of range": (_tampered(exported, code_range), rsq.EXIT_INVALID, "'stages.1.0.conv1' field 'codes': codes: code 99"),
        "accumulator width": (_tampered(exported, acc_bits), rsq.EXIT_INVALID, "'fc' field 'acc_bits'"),
        "channel mismatch": (_tampered(exported, cin), rsq.EXIT_INVALID, "'stages.2.0.conv1' field 'cin'"),
    }


@pytest.mark.parametrize("case", ["truncated", "flipped byte", "wrong version", "wrong contract", "not a model",
                                  "shape mismatch", "code out of range", "accumulator width", "channel mismatch"])
def test_corrupt_files_give_their_own_error(exported, tmp_path, cli, case):
    data, code, message = _corruptions(exported)[case]
    bad = tmp_path / "bad.rsq"
    bad.write_bytes(data)
    with pytest.raises(FormatError, match=message.replace("(", r"\(")):
        rsq.load(bad)
    dump = tmp_path / "dump"
    r = subprocess.run(cli + ["eval", str(bad), "--json", "--dump", str(dump)], capture_output=True, text=True, timeout=120)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not dump.exists() and not list(tmp_path.glob(".dump*"))


def test_export_cli_writes_nothing_on_error(cli, tmp_path):
    out = tmp_path / "m.rsq"
    r = subprocess.run(cli + ["export", str(tmp_path / "missing"), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and not out.exists()


def _quantized(wq="post", aq="asq", wbits=4, abits=4, max_shift=7, first_wbits=8):
    m = build_model("resnet8", 1, 10)
    quantize_model(m, layer_schemes(m, wq, aq, wbits, abits, first_wbits=first_wbits, max_shift=max_shift))
    import torch

    m.train()
    with torch.no_grad():
        m(torch.rand(8, 1, 8, 8))
    return m.eval()


def test_export_refuses_accumulator_overflow():
    with pytest.raises(ConfigError, match="layer conv1: accumulator would overflow: worst case 2464237486080 needs 43 bits"):
        export_model(_quantized(max_shift=30), input_shape=[1, 8, 8])


def test_export_refuses_unsupported_schemes():
    with pytest.raises(ConfigError, match="layer conv1: weight scheme apot has no integer contract"):
        export_model(_quantized(wq="apot"))
    with pytest.raises(ConfigError, match="stages.0.0.conv1.aq: shift quantizer not annealed to hard"):
        export_model(_quantized(aq="shift"))  # shift activations export once annealed (tests/test_shift_contract.py)
    with pytest.raises(ConfigError, match="weight scheme fp"):
        export_model(_quantized(wq="fp"))


def test_export_refuses_foreign_models():
    import torch

    with pytest.raises(ConfigError, match="only rootshift ResNets"):
        export_model(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("wq, aq, mode", [("post", "asq", "lut"), ("pot", "lsq", "dual"), ("lsq", "lsq", "dual")])
def test_every_product_mode_exports_and_runs(wq, aq, mode):
    im = export_model(_quantized(wq, aq), mode=mode, input_shape=[1, 8, 8])
    modes = {op["mode"] for op in im.layers()}
    assert modes == {{"post": mode, "pot": "shift", "lsq": "mult"}[wq]}
    im2 = rsq.from_bytes(rsq.to_bytes(im))
    x = np.random.default_rng(0).integers(0, 256, size=(3, 1, 8, 8))
    assert np.array_equal(golden.run(im, x), golden.run(im2, x))


def test_inspect_json(exported, cli):
    r = subprocess.run(cli + ["inspect", str(exported), "--json"], capture_output=True, text=True, timeout=120)
    rows = json.loads(r.stdout)
    assert [x["name"] for x in rows][0] == "conv1" and rows[-1]["name"] == "fc"
    for row in rows:
        for key in ("kind", "scheme", "base", "wbits", "abits", "product_mode", "acc_bits", "distinct_codes"):
            assert key in row
        assert row["base"] == "sqrt2" and row["product_mode"] == "dual"
        assert row["distinct_codes"] <= 2 ** row["wbits"]
    assert rows[0]["wbits"] == 8 and rows[0]["abits"] == 8 and rows[1]["wbits"] == 4


def test_eval_json_and_dump(exported, cli, tmp_path):
    d = tmp_path / "dump"
    r = subprocess.run(cli + ["eval", str(exported), "--json", "--dump", str(d), "--dump-images", "0,5"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["images"] == 360 and out["agreement_with_float"] >= 0.995 and 0 < out["test_acc"] <= 1
    from rootshift.sw.evaluate import load_dump

    manifest, arrays = load_dump(d)
    assert manifest["images"] == [0, 5]
    assert arrays["tensor/conv1.a"].shape == (2, 1, 8, 8)
    assert arrays["tensor/fc.y"].shape == (2, 10) and np.array_equal(arrays["tensor/fc.y"], arrays["logits"])
    assert "acc/stages.0.0.conv1.even" in arrays and "beta/stages.0.0.conv1.aq" in arrays
    im = rsq.load(exported)
    assert np.array_equal(golden.run(im, arrays["pixels"]), arrays["logits"])


def test_eval_rejects_a_mismatched_dataset(exported, cli):
    r = subprocess.run(cli + ["eval", str(exported), "--data", "mnist5k", "--images", "4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "[1, 28, 28] inputs but the model was exported for [1, 8, 8]" in r.stderr


def test_multiplier_overflow_is_an_error_not_a_wrap(exported):
    im = rsq.load(exported)
    op = im.op("stages.0.0.conv1")
    huge = np.full(1, 2**40, np.int64)  # beta = 2**24
    with pytest.raises(ConfigError, match="stages.0.0.conv1: per-sample multiplier overflows 32 bits"):
        golden.layer_multipliers(op, huge)
    assert C.M_BITS == 32
