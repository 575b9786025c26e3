"""`.rsq` format versions (docs/export-format.md): version 2 stores each array in its narrowest integer
type; version 1 (every array int64) is still read. ``tests/data/tiny_v1.rsq`` was written by the
version-1 writer (commit 53fc930) before version 2 existed."""

from pathlib import Path

import numpy as np
import pytest

from rootshift.sw import golden, rsq
from rootshift.sw.export import export_model

from test_rsq_bounds import small_model, split

TINY_V1 = Path(__file__).parent / "data" / "tiny_v1.rsq"
TINY_PIXELS = np.random.default_rng(1).integers(0, 256, size=(3, 1, 5, 5))
TINY_LOGITS = [[50485, -41784, -10395, -8291, -91011, 17729, 74824, -95199, 6368, 110157],
               [51338, -38145, -8001, -8361, -90118, 20938, 75694, -94533, 6238, 106962],
               [46498, -47320, -10693, -7840, -94847, 19631, 75814, -94702, 6267, 109449]]


def _same(a, b):
    """Two IntModels hold the same graph and the same integers."""
    assert rsq.to_bytes(a, version=1) == rsq.to_bytes(b, version=1)


def test_old_writer_file_still_loads_and_runs():
    data = TINY_V1.read_bytes()
    assert rsq.HEAD.unpack_from(data)[1] == 1
    im = rsq.from_bytes(data)
    assert golden.run(im, TINY_PIXELS).tolist() == TINY_LOGITS
    assert rsq.to_bytes(im, version=1) == data  # the v1 writer is byte-identical to the old one
    v2 = rsq.to_bytes(im)
    assert len(v2) < len(data) and rsq.HEAD.unpack_from(v2)[1] == 2
    assert golden.run(rsq.from_bytes(v2), TINY_PIXELS).tolist() == TINY_LOGITS


@pytest.mark.parametrize("wq, aq, mode", [("post", "asq", "dual"), ("post", "asq", "lut"), ("pot", "lsq", "dual"),
                                          ("lsq", "lsq", "dual")])
def test_v1_and_v2_round_trips(wq, aq, mode):
    im = export_model(small_model(wq, aq), mode=mode, input_shape=[1, 8, 8])
    x = np.random.default_rng(0).integers(0, 256, size=(4, 1, 8, 8))
    ref = golden.run(im, x)
    for version in (1, 2):
        data = rsq.to_bytes(im, version=version)
        back = rsq.from_bytes(data)
        _same(back, im)
        assert rsq.to_bytes(back, version=version) == data
        assert np.array_equal(golden.run(back, x), ref)
        for op in back.ops:  # arrays come back as int64 whatever they were stored as
            if "codes" in op:
                assert op["codes"].dtype == np.int64


def test_v2_stores_the_narrowest_type():
    im = export_model(small_model(), input_shape=[1, 8, 8])
    doc, _, fver = split(rsq.to_bytes(im))
    assert fver == 2
    dtypes = {}
    for op in doc["ops"]:
        for key in ("codes", "bias"):
            if key in op:
                dtypes.setdefault(key, set()).add(doc["arrays"][op[key]["$array"]]["dtype"])
    assert dtypes["codes"] == {"|u1"}        # 4- and 8-bit sign|exponent codes are unsigned bytes
    assert dtypes["bias"] <= {"<i4", "<i8"}
    for a in (np.array([], np.int64), np.array([-128, 127]), np.array([0, 255]), np.array([-1, 255]),
              np.array([0, 65535]), np.array([-(2**31), 2**31 - 1]), np.array([0, 2**32 - 1]), np.array([2**40])):
        dt = np.dtype(rsq.narrowest(a))
        assert all(np.iinfo(dt).min <= v <= np.iinfo(dt).max for v in a.tolist())
        smaller = [d for d in rsq.DTYPES if np.dtype(d).itemsize < dt.itemsize]
        assert not any(np.iinfo(np.dtype(d)).min <= a.min(initial=0) and a.max(initial=0) <= np.iinfo(np.dtype(d)).max
                       for d in smaller)


def test_v1_file_with_narrow_dtype_is_refused():
    data = TINY_V1.read_bytes()
    doc, payload, _ = split(data)
    doc["arrays"][0]["dtype"] = "|u1"
    doc["arrays"][0]["nbytes"] //= 8
    from test_rsq_bounds import rechecksum

    with pytest.raises(rsq.FormatError, match="array 0 has an inconsistent size or dtype"):
        rsq.from_bytes(rechecksum(doc, payload, fver=1))
