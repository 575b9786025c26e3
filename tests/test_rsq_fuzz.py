"""Fuzz of the .rsq loader (hypothesis): random bytes and random mutations of a valid file, re-checksummed or
not, give a named FormatError, or a model that loads and runs through the golden model (which may refuse a
sample with a named ConfigError). Nothing else: no other exception type, no crash."""

import hashlib
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootshift.sw import golden, rsq
from rootshift.sw.errors import ConfigError, FormatError
from rootshift.sw.export import export_model

from test_rsq_bounds import small_model
from test_shift_contract import shift_model

PIXELS = np.random.default_rng(0).integers(0, 256, size=(2, 1, 8, 8))
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def valid():
    im = export_model(small_model(), input_shape=[1, 8, 8])
    im.meta["float_reference"] = {"data": "digits", "split": "test", "top1": np.arange(10) % 10, "test_acc": 0.5}
    shift = export_model(shift_model(), input_shape=[1, 8, 8])  # shift W4A4: shift quant ops, shift2 layers
    return rsq.to_bytes(im, version=1), rsq.to_bytes(im), rsq.to_bytes(shift)


def _checksummed(body):
    return body + hashlib.sha256(body).digest()


def check(data):
    """The loader's only outcomes: a named FormatError, or a model the golden model runs."""
    try:
        im = rsq.from_bytes(data, "fuzz.rsq")
    except FormatError as e:
        assert "fuzz.rsq" in str(e) and e.exit_code in (3, 4, 5, 6)
        return "refused"
    try:
        logits = golden.run(im, PIXELS)
    except ConfigError:
        return "refused at run"
    assert logits.dtype == np.int64 and logits.shape == (2, im.meta["num_classes"])
    return "loaded"


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data):
    assert check(data) == "refused"


@FUZZ
@given(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.binary(max_size=300))
def test_random_bytes_behind_a_valid_header(fver, cver, jl, pl, rest):
    body = rsq.HEAD.pack(rsq.MAGIC, fver, cver, jl, pl) + rest
    assert check(_checksummed(body)) == "refused"
    assert check(body) == "refused"


@FUZZ
@given(st.data(), st.booleans(), st.sampled_from([0, 1, 2]))
def test_flipped_bytes(valid, data, rechecksum, which):
    buf = bytearray(valid[which])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    if rechecksum:
        buf = bytearray(_checksummed(bytes(buf[:-32])))
    check(bytes(buf))


INTERESTING = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 7, 8, 9, 15, 16, 2**15 - 1, 2**15, 2**22 - 1, -(2**22), 2**31 - 1, 2**31,
                     2**61 - 1, 2**61, 2**62, 2**63 - 2**20, 2**63 - 1, -(2**63), 2**64, 0.5, -0.0, True, False,
                     None, "", "x", "dual", "lut", "shift", "mult", "2", "sqrt2", "input", "conv1.y", "fc.y",
                     [], [1], [3, 3], [1, 8, 8], {}, {"$array": 0}, {"$array": -1}, {"$array": 10**6}]),
    st.integers(), st.text(max_size=8))


def _paths(obj, prefix=()):
    """Every place in the JSON document that holds a value (scalars, and the containers themselves)."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _split(blob):
    _, fver, cver, jl, pl = rsq.HEAD.unpack_from(blob)
    return fver, cver, json.loads(blob[rsq.HEAD.size:rsq.HEAD.size + jl]), blob[rsq.HEAD.size + jl:rsq.HEAD.size + jl + pl]


def _join(fver, cver, doc, payload):
    js = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return _checksummed(rsq.HEAD.pack(rsq.MAGIC, fver, cver, len(js), len(payload)) + js + payload)


@FUZZ
@given(st.data(), st.sampled_from([0, 1, 2]))
def test_mutated_graph_rechecksummed(valid, data, which):
    fver, cver, doc, payload = _split(valid[which])
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        path = paths[data.draw(st.integers(0, len(paths) - 1))]
        d = doc
        try:
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = data.draw(INTERESTING)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed the place
            pass
    check(_join(fver, cver, doc, payload))


@FUZZ
@given(st.data(), st.sampled_from([0, 1, 2]))
def test_mutated_arrays_rechecksummed(valid, data, which):
    """Array contents replaced by extreme integers: bounds, code ranges and shapes must catch them."""
    fver, cver, doc, payload = _split(valid[which])
    payload = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        a = doc["arrays"][data.draw(st.integers(0, len(doc["arrays"]) - 1))]
        size = a["nbytes"] // max(1, int(np.prod(a["shape"]))) if a["nbytes"] else 0
        if not size:
            continue
        i = data.draw(st.integers(0, a["nbytes"] // size - 1))
        v = data.draw(st.one_of(st.sampled_from([0, -1, 1, 2**7 - 1, -(2**7), 2**15, 2**22, -(2**22), 2**31, 2**61,
                                                 2**63 - 2**20, -(2**63)]), st.integers(-(2**63), 2**63 - 1)))
        raw = (v % (1 << (8 * size))).to_bytes(size, "little")
        payload[a["offset"] + i * size:a["offset"] + (i + 1) * size] = raw
    check(_join(fver, cver, doc, bytes(payload)))
