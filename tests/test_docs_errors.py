"""docs/export-format.md's table "What the loader checks, and how it fails" against the real loader.

Every example message in the table is produced here from a bad file built for it (the exported test
models of tests/test_rsq_bounds.py and tests/test_shift_contract.py, edited and re-checksummed): the
loader's message must contain the example as the doc writes it, and its exit code must be the row's.
A doc row without a builder here, or a builder whose example left the doc, fails the test, so the doc
and the loader cannot drift apart.
"""

import hashlib
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_rsq_bounds import model_bytes, rechecksum, split, tampered  # noqa: F401 (fixture)
from test_shift_contract import shift_bytes  # noqa: F401 (fixture)

from rootshift.sw import rsq
from rootshift.sw.errors import FormatError

DOC = Path(__file__).resolve().parents[1] / "docs" / "export-format.md"


def doc_rows():
    """``(example, exit code)`` for every backticked example in the table's message column."""
    text = DOC.read_text()
    table = text[text.index("| check | message contains"):]
    table = table[:table.index("\n\n")]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 3, line
        code = int(cells[2])
        for ex in re.findall(r"`([^`]+)`", cells[1]):
            rows.append((ex.replace("\\|", "|"), code))
    return rows


def _raw(js, payload=b"", fver=rsq.FORMAT_VERSION, cver=2):
    body = rsq.HEAD.pack(rsq.MAGIC, fver, cver, len(js), len(payload)) + js + payload
    return body + hashlib.sha256(body).digest()


def _set(op, field, value):
    def edit(im):
        im.op(op)[field] = value
    return edit


def _set_in(op, field, key, value):
    def edit(im):
        im.op(op)[field][key] = value
    return edit


def _codes(op, fn):
    def edit(im):
        im.op(op)["codes"] = fn(np.array(im.op(op)["codes"]))
    return edit


def _code99(c):
    c.reshape(-1)[0] = 99
    return c


def _doc_edit(data, fn, **kw):
    doc, payload, fver = split(data)
    fn(doc)
    kw.setdefault("fver", fver)
    return rechecksum(doc, payload, **kw)


def _array3(doc):
    doc["arrays"][3]["nbytes"] += 1


def _contract_in_meta(doc):
    doc["meta"]["contract"] = 1


def _t(edit):
    """An edit of the loaded model, written back re-checksummed (bypassing the save-time validation)."""
    return lambda data: tampered(data, edit)


def _big_w1(im):
    ad = im.op("fc.aq")["adapter"]
    ad["w1"] = np.full(np.shape(ad["w1"]), 2**40, dtype=np.int64)


def _narrow_cin(im):
    """cin and codes agree with each other (16), not with the 32 channels that feed the layer."""
    op = im.op("stages.2.0.conv1")
    op["cin"], op["codes"] = 16, np.array(op["codes"])[:, :16]


def _scaled_bias(im):
    b = np.array(im.op("stages.1.0.conv2")["bias"], dtype=np.int64)
    b[0] = 2**63 - 2**20
    im.op("stages.1.0.conv2")["bias"] = b


# example (exactly as docs/export-format.md writes it) -> (test model, how to break it)
BUILDERS = {
    "truncated (40 bytes, not even a header)": ("model", lambda d: d[:40]),
    "not a rootshift model file (magic b'PK\\x03\\x04ODEL')": ("model", lambda d: b"PK\x03\x04" + d[4:]),
    "truncated (9900 of 10000 bytes)":
        ("model", lambda d: rsq.HEAD.pack(rsq.MAGIC, 2, 2, 0, 10000 - rsq.HEAD.size - 32) + bytes(9900 - rsq.HEAD.size)),
    "12 unexpected trailing bytes": ("model", lambda d: d + bytes(12)),
    "checksum mismatch: the file is corrupt": ("model", lambda d: d[:-40] + bytes([d[-40] ^ 1]) + d[-39:]),
    "format version 3; this rootshift reads versions 1 and 2": ("model", lambda d: _doc_edit(d, lambda doc: None, fver=3)),
    "arithmetic contract version 9; this rootshift implements 2 (and reads 1, 2)":
        ("model", lambda d: _doc_edit(d, lambda doc: None, cver=9)),
    "malformed graph: ...": ("model", lambda d: _raw(b'{"meta": ')),
    "array 3 has an inconsistent size or dtype": ("model", lambda d: _doc_edit(d, _array3)),
    "op 'fc' field 'in': tensor 'x' is used before it is defined": ("model", _t(_set("fc", "in", "x"))),
    "op 'stages.0.0.conv1' field 'in': a conv layer reads activation codes, not fine tensor 'conv1.y'":
        ("model", _t(_set("stages.0.0.conv1", "in", "conv1.y"))),
    "op 'stages.0.0.conv2' field 'codes': shape [16, 8, 3, 3] does not match the expected [16, 16, 3, 3]":
        ("model", _t(_codes("stages.0.0.conv2", lambda c: c[:, :8]))),
    "op 'stages.2.0.conv1' field 'cin': layer takes 16 channels but its input has 32":
        ("model", _t(_narrow_cin)),
    "op 'stages.1.0.conv1' field 'stride': must be an integer in 1..4096, not 0": ("model", _t(_set("stages.1.0.conv1", "stride", 0))),
    "op 'stages.1.0.conv1' field 'codes': codes: code 99 is out of range for 4-bit codes":
        ("model", _t(_codes("stages.1.0.conv1", _code99))),
    "op 'stages.0.0.conv2' field 'beta_from': is 'stages.0.0.conv1.aq' but the quant op feeding the layer is "
    "'stages.0.0.conv2.aq'": ("model", _t(_set("stages.0.0.conv2", "beta_from", "stages.0.0.conv1.aq"))),
    "op 'stages.0.0.conv2' field 'abits': is 3 but its quant op 'stages.0.0.conv2.aq' makes 4-bit codes":
        ("model", _t(_set("stages.0.0.conv2", "abits", 3))),
    "op 'stages.1.0.conv2' field 'bias': |value| 9223372036853727232 exceeds the contract bound 2305843009213693951":
        ("model", _t(_scaled_bias)),
    "op 'fc' field 'm_base.even': |value| 4194304 exceeds the contract bound 4194303":
        ("model", _t(_set_in("fc", "m_base", "even", np.full(10, 2**22, dtype=np.int64)))),
    "op 'fc.aq' field 'adapter.w1'": ("model", _t(_big_w1)),
    "op 'fc' field 'shift': must be an integer in": ("model", _t(_set("fc", "shift", 64))),
    "op 'fc.aq' field 'k_step': must be an integer in 1..2305843009213693951, not 0": ("model", _t(_set("fc.aq", "k_step", 0))),
    "op 'stages.0.0.conv2' field 'mode': is shift but its quant op 'stages.0.0.conv2.aq' makes shift codes":
        ("shift", _t(_set("stages.0.0.conv2", "mode", "shift"))),
    "op 'stages.0.0.conv2' field 'act_max_exponent': is 13 but its quant op's window is 14":
        ("shift", _t(_set("stages.0.0.conv2", "act_max_exponent", 13))),
    "arithmetic contract version 1 has no shift activations or shift2 layers":
        ("shift", lambda d: _doc_edit(d, _contract_in_meta, cver=1)),
    "meta field 'contract' is 2 but the header says 1": ("shift", lambda d: _doc_edit(d, lambda doc: None, cver=1)),
    "op 'fc' field 'acc_bits': is 12 but the worst case needs 18": ("model", _t(_set("fc", "acc_bits", 12))),
}


def _build(example, model_bytes, shift_bytes):
    which, fn = BUILDERS[example]
    return fn(model_bytes if which == "model" else shift_bytes)


def test_every_doc_example_has_a_builder_and_back():
    examples = [ex for ex, _ in doc_rows()]
    assert len(examples) == len(set(examples))
    assert set(examples) == set(BUILDERS), (set(examples) ^ set(BUILDERS))


@pytest.mark.parametrize("example, code", doc_rows(), ids=[ex[:60] for ex, _ in doc_rows()])
def test_doc_example_is_the_loaders_message_and_exit_code(example, code, model_bytes, shift_bytes, tmp_path):
    data = _build(example, model_bytes, shift_bytes)
    bad = tmp_path / "bad.rsq"
    bad.write_bytes(data)
    with pytest.raises(FormatError) as e:
        rsq.load(bad)
    msg = str(e.value)
    want = example[:-3] if example.endswith("...") else example
    assert msg.startswith(f"{bad}: ") and want in msg, f"doc: {example}\nreal: {msg}"
    assert e.value.exit_code == code, f"{example}: exit {e.value.exit_code}, the doc says {code}"


def test_the_cli_exits_with_the_docs_codes(model_bytes, shift_bytes, tmp_path, cli):
    """One example per exit code through `rootshift inspect`: the CLI prints the loader's message and exits
    with the code the doc gives (the CLI maps FormatError.exit_code)."""
    per_code = {}
    for ex, code in doc_rows():
        per_code.setdefault(code, ex)
    assert set(per_code) == {3, 4, 5, 6}
    for code, ex in sorted(per_code.items()):
        bad = tmp_path / f"bad{code}.rsq"
        bad.write_bytes(_build(ex, model_bytes, shift_bytes))
        r = subprocess.run(cli + ["inspect", str(bad)], capture_output=True, text=True, timeout=300)
        assert r.returncode == code, (ex, r.returncode, r.stderr)
        want = ex[:-3] if ex.endswith("...") else ex
        assert want in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("rootshift inspect: error: ") and len(r.stderr.strip().splitlines()) == 1


def test_minimum_file_size_is_as_documented():
    """docs/export-format.md: "The smallest file the loader reads past the header check is 56 bytes"."""
    assert "is 56 bytes" in DOC.read_text() and rsq.HEAD.size + 32 == 56
    with pytest.raises(FormatError, match=r"truncated \(55 bytes, not even a header\)"):
        rsq.from_bytes(bytes(55), "x")
    with pytest.raises(FormatError, match="not a rootshift model file"):
        rsq.from_bytes(bytes(56), "x")
