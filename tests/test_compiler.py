"""The engine compiler (hw/engine/compiler.py): program bytes, memory plan, refusals, and the reference
executor reproducing the golden model on every tensor (docs/engine.md, docs/arithmetic.md)."""

import json

import numpy as np
import pytest

from rootshift.hw.engine.compiler import compile_model, input_codes, summary
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.engine.program import Program
from rootshift.hw.engine.reference import ReferenceEngine, run_program
from rootshift.hw.params import ArrayParams
from rootshift.sim.engine_fuzz import fuzz_params_for, random_model
from rootshift.sw import golden, rsq
from rootshift.sw.errors import ConfigError, FormatError

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def digits_params(rows, cols, **mem):
    return EngineParams(ArrayParams(wbits=8, abits=8, rows=rows, cols=cols, max_k=576, max_shift=7), **(mem or BIG))


def assert_matches_golden(im, prog, pixels):
    """Logits and every tensor the program writes equal the golden model's."""
    ref = {}
    want = golden.run(im, pixels, trace=ref)
    got = {}
    logits = run_program(prog, pixels, got)
    assert np.array_equal(logits, want)
    compared = 0
    for name, vals in got.items():
        if name in ref["tensors"]:
            g = ref["tensors"][name]
            if name == prog.steps[0]["out"]:   # the INFER payload: the pixels (a shift2 array: their bit planes)
                g = np.stack([input_codes(prog, px) for px in pixels])
            assert np.array_equal(np.stack(vals).reshape(g.shape), g), name
            compared += 1
    assert compared == len(prog.steps)
    return compared


@pytest.mark.parametrize("rows,cols", [(4, 4), (8, 8), (3, 5)])
def test_digits_program_is_bit_exact(exported, rows, cols):
    im = rsq.load(exported)
    prog = compile_model(exported, digits_params(rows, cols))
    px = np.random.default_rng(rows * cols).integers(0, 256, (6, *im.meta["input_shape"]))
    assert assert_matches_golden(im, prog, px) >= 20


def test_program_bytes_are_deterministic_and_round_trip(exported):
    p = digits_params(4, 4)
    a, b = compile_model(exported, p), compile_model(exported, p)
    data = a.to_bytes()
    assert data == b.to_bytes()
    back = Program.from_bytes(data)
    assert back.to_bytes() == data
    px = np.random.default_rng(1).integers(0, 256, (2, *rsq.load(exported).meta["input_shape"]))
    assert np.array_equal(run_program(back, px), run_program(a, px))
    # another array gives another program
    assert compile_model(exported, digits_params(8, 8)).to_bytes() != data
    # the drain is part of the program (its bubbles); the default one stays out of the bytes
    assert b'"drain"' not in data
    serial = EngineParams(p.array, **{k: v for k, v in p.to_dict().items() if k != "array"}, drain="serial")
    ser = compile_model(exported, serial).to_bytes()
    assert ser != data and Program.from_bytes(ser).params.drain == "serial"


def test_corrupt_program_bytes_give_their_own_error(exported):
    data = compile_model(exported, digits_params(4, 4)).to_bytes()
    cases = [(data[:10], "truncated", 3), (b"X" + data[1:], "not a rootshift program", 3),
             (data[:-1] + bytes([data[-1] ^ 1]), "checksum mismatch", 4)]
    body = bytearray(data[:-32])
    body[8] = 99
    import hashlib
    cases.append((bytes(body) + hashlib.sha256(bytes(body)).digest(), "program format version 99", 5))
    for blob, msg, code in cases:
        with pytest.raises(FormatError, match=msg) as e:
            Program.from_bytes(blob)
        assert e.value.exit_code == code


def test_debug_plan_keeps_every_layer_readable(exported):
    """With ``debug`` no tensor shares words, so every layer can be read back after the image (the
    protocol's debug read); the default plan reuses words and is smaller."""
    im = rsq.load(exported)
    dbg, tight = compile_model(im, digits_params(4, 4), debug=True), compile_model(im, digits_params(4, 4))
    assert tight.plan["fine"] < dbg.plan["fine"] and tight.plan["codes"] < dbg.plan["codes"]
    px = np.random.default_rng(2).integers(0, 256, (1, *im.meta["input_shape"]))
    ref = {}
    golden.run(im, px, trace=ref)
    eng = ReferenceEngine(dbg)
    eng.run(px[0])
    for step in dbg.steps:
        g = ref["tensors"][step["out"]]
        assert np.array_equal(eng.read(step["out"]).reshape(g.shape), g), step["out"]


def test_summary_is_json_and_matches_the_plan(exported):
    prog = compile_model(exported, digits_params(4, 4))
    s = json.loads(json.dumps(summary(prog)))
    assert set(s["memory"]) == {"weights", "fine", "codes", "consts"}
    assert s["memory"]["weights"] == len(prog.weights)
    assert s["cycles_per_image"] == sum(r["cycles"] for r in s["layers"])
    assert s["input_cycles"] == int(np.prod(prog.tensors[prog.steps[0]["out"]]["shape"]))   # a code per cycle (v4)
    assert [r["name"] for r in s["layers"]] == [st["name"] for st in prog.steps]
    assert 0 < s["utilization"] <= 1


@pytest.mark.parametrize("drain", ["parallel", "serial"])
def test_cycle_model_on_digits(exported, drain):
    """The design's 3x3 convolutions keep a 4x4 array >= 90 % busy by the model (docs/engine.md), with one
    requantizer per column or one shared (its 16-cycle drain hides behind k_eff >= 144)."""
    p = digits_params(4, 4)
    rep = cycle_report(compile_model(exported, EngineParams(p.array, **{k: v for k, v in p.to_dict().items()
                                                                         if k != "array"}, drain=drain)))
    convs = [r for r in rep["layers"] if r["kind"] == "conv" and r["k"] >= 144]
    assert convs and all(r["utilization"] >= 0.9 for r in convs)
    for r in rep["layers"]:
        assert 0 <= r.get("utilization", 0) <= 1


@pytest.mark.parametrize("seed", range(16))
def test_random_models_are_bit_exact(seed):
    rng = np.random.default_rng(seed)
    mode = ["dual", "lut", "shift", "mult", "shift2"][seed % 5]
    im = random_model(rng, mode)
    r, c = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    prog = compile_model(im, EngineParams(fuzz_params_for(im, r, c), **BIG), debug=bool(seed % 2))
    px = rng.integers(0, 256, (3, *im.meta["input_shape"]))
    assert_matches_golden(im, prog, px)


def _small(mode="dual", seed=3):
    return random_model(np.random.default_rng(seed), mode)


def test_refusals_name_layer_quantity_need_and_limit():
    im = _small()
    ok = fuzz_params_for(im, 4, 4)
    big_k = max(op["k"] for op in im.layers())
    worst = max(im.layers(), key=lambda op: op["k"])["name"]
    with pytest.raises(ConfigError, match=rf"layer {worst}: K needs {big_k}, the hardware's limit is max_k {big_k - 1}"):
        compile_model(im, ArrayParams(**{**ok.__dict__, "max_k": big_k - 1}))
    with pytest.raises(ConfigError, match=r"layer conv1: weight bits needs 8, the hardware's limit is 4"):
        compile_model(im, ArrayParams(**{**ok.__dict__, "wbits": 4}))
    with pytest.raises(ConfigError, match=r"layer input: pixel bits needs 8"):
        compile_model(im, ArrayParams(**{**ok.__dict__, "abits": 4}))
    with pytest.raises(ConfigError, match=r"layer conv1: product mode needs dual, the hardware's limit is the array's PE mode lut"):
        compile_model(im, ArrayParams(**{**ok.__dict__, "pe": "lut", "max_shift": 4}))
    with pytest.raises(ConfigError, match=r"buffer 'weights' needs \d+ bytes, the hardware's limit is 1024 bytes"):
        compile_model(im, EngineParams(ok, weights_kib=1) if len(compile_model(im, ok).weights) > 1024
                      else EngineParams(ArrayParams(**{**ok.__dict__, "cols": 64}), weights_kib=1))


def test_engine_params_validate():
    with pytest.raises(ConfigError, match="fine_kib must be an integer number of KiB"):
        EngineParams(fine_kib=0)
    with pytest.raises(ConfigError, match="array must be ArrayParams"):
        EngineParams(array="8x8")
    with pytest.raises(ConfigError, match="params must be ArrayParams or EngineParams"):
        compile_model(_small(), None)


def test_engine_bench_rows():
    """sim/engine_bench.py: one row per array, utilization in (0, 1], the totals of the summary."""
    from rootshift.sim.engine_bench import rows

    out = rows(_small(), "fuzz")
    assert [r["array"] for r in out] == ["4x4", "8x8"]
    for r in out:
        assert 0 < r["utilization"] <= 1 and 0 < r["conv3x3_min"] <= r["conv3x3_max"] <= 1
        assert set(r["memory"]) == {"weights", "fine", "codes", "consts"}


def test_engine_bench_names_a_bad_model_file(tmp_path, capsys):
    """``python -m rootshift.sim.engine_bench`` answers a missing or corrupt model with one line and exit
    2, before any work (it was a traceback)."""
    from rootshift.sim.engine_bench import main

    bad = tmp_path / "bad.rsq"
    bad.write_bytes(b"not a model")
    for path, words in ((tmp_path / "none.rsq", "does not exist"), (bad, "bad.rsq")):
        assert main([str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and "Traceback" not in err


def test_stem_k_slices_skip_the_padded_lanes():
    """k_eff = kh * kw * cin: a 1-channel stem on 4 lanes issues 9 k-slices per tile, and its weight image
    holds 9 words per column tile, not 36 (program version 2)."""
    from rootshift.hw.engine.program import PROGRAM_VERSION

    im = random_model(np.random.default_rng(0), "dual", in_shape=[1, 6, 6], max_channels=4, maxpool=False)
    prog = compile_model(im, EngineParams(fuzz_params_for(im, 4, 4), **BIG))
    for s in prog.steps:
        if s["kind"] in ("conv", "linear"):
            assert s["k_eff"] == s["kh"] * s["kw"] * s["cin"] == s["k"]
            assert s["wgt_words"] == s["tiles_c"] * s["k_eff"]
    assert PROGRAM_VERSION == 3 and prog.version == 3


def test_activation_addresses_are_checked():
    """A plan past the engine's 16-bit activation addresses is refused, naming the buffer."""

    im = random_model(np.random.default_rng(3), "dual", in_shape=[1, 300, 300], max_channels=4)
    p = EngineParams(fuzz_params_for(im, 2, 2), weights_kib=1 << 20, fine_kib=1 << 20, codes_kib=1 << 20,
                     consts_kib=1 << 20)
    with pytest.raises(ConfigError, match=r"buffer '(fine|codes)' needs \d+ words, the hardware's limit is 65536 words"):
        compile_model(im, p)


def test_ops_the_engine_does_not_run_are_refused():
    im = _small()
    ok = EngineParams(fuzz_params_for(im, 2, 2), **BIG)
    q = next(op for op in im.ops if op["op"] == "quant" and op["kind"] == "asq")
    q["kind"] = "shift"
    with pytest.raises(ConfigError, match=rf"layer {q['name']}: activation quantizer needs shift, the hardware's limit is input8, lsq or asq"):
        compile_model(im, ok)
    q["kind"] = "asq"
    im.layers()[1]["mode"] = "shift2"
    with pytest.raises(ConfigError, match="product mode needs shift2"):
        compile_model(im, ok)
