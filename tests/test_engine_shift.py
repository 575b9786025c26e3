"""shift2 on the network engine (issue 10): the shift activation quantizer in QuantLanes/QuantStep against
``sw.contract.shift_act_codes`` (hypothesis, every tie and boundary), the compiler and reference executor on
random shift networks against ``sw.golden``, and whole random shift networks on the RTL Engine in
amaranth.sim: logits, every tensor through the debug read, cycles equal to the model
(docs/arithmetic.md, "Shift activations and the shift2 product")."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from rootshift.hw.engine.compiler import compile_model, expand_pixels, input_codes
from rootshift.hw.engine.cycles import cycle_report
from rootshift.hw.engine.engine import MAGIC, rtl_check
from rootshift.hw.engine.params import EngineParams
from rootshift.hw.engine.quant_lanes import QuantLanes
from rootshift.hw.engine.quant_step import QuantStep, schemes_for
from rootshift.hw.engine.reference import ReferenceEngine
from rootshift.hw.params import ArrayParams
from rootshift.hw.testbench import engine_image
from rootshift.sim.engine_fuzz import fuzz_params_for, random_model
from rootshift.sw import contract as C
from rootshift.sw import golden
from rootshift.sw.errors import ConfigError

BIG = dict(weights_kib=256, fine_kib=256, codes_kib=256, consts_kib=64)


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def shift_lanes_hw(words, t, n, abits=8, lanes=3, schemes=("shift",)):
    """QuantLanes in the shift scheme: one code list per input word (lanes values)."""
    dut = QuantLanes(lanes, abits, schemes)
    out = []

    async def bench(ctx):
        ctx.set(dut.shift, 1)
        ctx.set(dut.t, t)
        ctx.set(dut.n, n)
        ctx.set(dut.r, 12345)
        ctx.set(dut.qmax, 1)
        pending = list(words)
        while len(out) < len(words):
            if pending:
                w = pending.pop(0)
                for c in range(lanes):
                    ctx.set(dut.x[c], w[c])
                ctx.set(dut.i_valid, 1)
            else:
                ctx.set(dut.i_valid, 0)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                v = ctx.get(dut.codes)
                out.append([(v >> (abits * c)) & ((1 << abits) - 1) for c in range(lanes)])

    simulate(dut, bench)
    return out


def edge_values(t, n):
    """Every tie and boundary of the level set 2^(t-e), e = 0..n, in fine units: the levels, the
    midpoints 1.5 * 2^q and half the smallest level, each +-1, and the extremes."""
    vals = {C.FINE_MIN, -1, 0, 1, 2, 3, C.FINE_MAX, C.FINE_MAX - 1, 1 << 30}
    for q in range(t - n - 2, t + 2):
        for base in ((1 << q) if q >= 0 else 0, (3 << q) >> 1 if q >= 1 else 0):
            vals.update(v for v in (base - 1, base, base + 1) if C.FINE_MIN <= v <= C.FINE_MAX)
    return sorted(vals)


@pytest.mark.parametrize("log2_alpha,bits,n", [(2, 4, 14), (-16, 2, 2), (14, 8, 254), (0, 3, 0), (-64, 4, 5),
                                                (64, 4, 14), (-3, 5, 30)])
def test_shift_quantizer_hits_every_tie_and_boundary(log2_alpha, bits, n):
    t = log2_alpha + C.FINE_FRAC
    vals = edge_values(t, n)
    words = [vals[i:i + 3] + [0] * (3 - len(vals[i:i + 3])) for i in range(0, len(vals), 3)]
    got = shift_lanes_hw(words, t, n)
    exp = C.shift_act_codes(np.array(words), log2_alpha, n)
    assert np.array_equal(np.array(got), exp), [(w, g, e) for w, g, e in zip(words, got, exp.tolist()) if g != e][:3]


FINE = st.integers(C.FINE_MIN, C.FINE_MAX)
POS = st.integers(0, 31).flatmap(lambda b: st.integers(1 << b >> 1, min(C.FINE_MAX, (1 << b) * 2)))


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.one_of(FINE, POS), POS, POS), min_size=1, max_size=6),
       st.integers(-C.LOG2_ALPHA_MAX, C.LOG2_ALPHA_MAX), st.integers(2, 8), st.data())
def test_shift_quantizer_matches_the_contract(words, log2_alpha, bits, data):
    n = data.draw(st.integers(0, 2**bits - 2))
    got = shift_lanes_hw([list(w) for w in words], log2_alpha + C.FINE_FRAC, n, schemes=("linear", "shift"))
    assert np.array_equal(np.array(got), C.shift_act_codes(np.array(words), log2_alpha, n))


def test_schemes_are_validated():
    with pytest.raises(TypeError, match="schemes must be a non-empty tuple of distinct linear, shift, not 'shift'"):
        QuantLanes(2, 4, "shift")
    with pytest.raises(TypeError, match="schemes must be"):
        QuantStep(2, 4, 8, ())
    assert schemes_for(ArrayParams(wbits=4, abits=4, base="2", pe="shift2")) == ("shift",)
    assert schemes_for(ArrayParams()) == ("linear",)


def shift_program(seed, rows, cols, rtl=False):
    """A random shift network (``random_model(.., "shift2")``) compiled for a shift2 array."""
    for s in range(seed, seed + 100):
        rng = np.random.default_rng(s)
        im = random_model(rng, "shift2", in_shape=[int(rng.integers(1, 3)), 4, 4 if rtl else 6],
                          max_channels=6 if rtl else 10, maxpool=not rtl)
        prog = compile_model(im, EngineParams(fuzz_params_for(im, rows, cols), **BIG), debug=True)
        if rtl:
            try:
                rtl_check(prog)
            except ConfigError:
                continue
        return im, prog, rng
    raise AssertionError("no model")


@pytest.mark.parametrize("seed,rows,cols", [(0, 2, 2), (1, 3, 4), (2, 4, 3), (3, 1, 5), (4, 2, 3), (5, 5, 2)])
def test_random_shift_networks_are_bit_exact_in_the_reference(seed, rows, cols):
    im, prog, rng = shift_program(seed, rows, cols)
    assert prog.params.array.pe == "shift2" and prog.steps[0]["expand"] == 8
    assert {s.get("scheme") for s in prog.steps if s["kind"] == "quant"} == {"shift"}
    px = rng.integers(0, 256, (2, *im.meta["input_shape"]))
    tr = {}
    gold = golden.run(im, px, trace=tr)
    for i in range(2):
        t = {}
        assert np.array_equal(ReferenceEngine(prog).run(px[i], t), gold[i])
        for step in prog.steps:
            exp = input_codes(prog, px[i]) if step["kind"] == "input" else tr["tensors"][step["out"]][i]
            assert np.array_equal(t[step["out"]], np.reshape(exp, t[step["out"]].shape)), step["name"]


def test_pixel_bit_planes_are_exact():
    """8-bit pixels as bit planes of shift codes: ``sum_j f(code_j) = pixel`` for every pixel value."""
    px = np.arange(256).reshape(1, 16, 16)
    for e_a in (7, 14, 30):
        planes = expand_pixels(px, e_a)
        assert planes.shape == (8, 16, 16) and planes.max() <= e_a + 1
        assert np.array_equal(C.shift_act_factor(planes, e_a).sum(0), px[0])


def _shift_im(seed=0):
    return shift_program(seed, 2, 2)[0]


def test_shift_refusals_name_layer_quantity_need_and_limit():
    im = _shift_im()
    p = fuzz_params_for(im, 2, 2)
    s2 = next(op for op in im.layers() if op["mode"] == "shift2")
    q = next(op for op in im.ops if op.get("name") == s2["beta_from"])
    with pytest.raises(ConfigError, match=r"layer conv1: product mode needs shift, the hardware's limit is "
                                          "the array's PE mode dual"):
        compile_model(im, ArrayParams(wbits=8, abits=8, rows=2, cols=2, max_k=p.max_k))
    with pytest.raises(ConfigError, match=r"layer b.conv1.aq: activation quantizer needs shift, the hardware's limit "
                                          "is input8, lsq or asq in the engine"):
        compile_model(im, ArrayParams(wbits=8, abits=8, base="2", pe="shift", rows=2, cols=2, max_k=p.max_k))
    small = ArrayParams(**{**p.__dict__, "abits": 3})     # E_a = 6 < 7: the pixels' bit planes do not fit
    with pytest.raises(ConfigError, match=r"layer input: activation exponent window needs 7 \(8-bit pixels, one shift "
                                          r"code per bit\), the hardware's limit is 0..6"):
        compile_model(im, small)
    q2 = dict(q, max_exponent=15, bits=5)
    im2 = type(im)(im.meta, [q2 if op is q else op for op in im.ops])
    with pytest.raises(ConfigError, match=rf"layer {q['name']}: activation bits needs 5, the hardware's limit is 4"):
        compile_model(im2, p)
    b = s2["wbits"]   # a POT format with a zero code: its all-ones field is zero
    zero = dict(s2, format=dict(s2["format"], has_zero=True, max_exponent=min(2 ** (b - 1) - 2, s2["format"]["max_exponent"])),
                codes=np.full_like(s2["codes"], 2 ** (b - 1) - 1))
    im3 = type(im)(im.meta, [zero if op is s2 else op for op in im.ops])
    with pytest.raises(ConfigError, match=rf"layer {s2['name']}: weight code needs a zero code, the hardware's limit "
                                          r"is shift weights \(the shift2 PE has no zero code\)"):
        compile_model(im3, p)


def run_engine(prog, pixels):
    return engine_image(prog, pixels)


@pytest.mark.parametrize("seed,rows,cols", [(0, 2, 2), (7, 3, 2)])
def test_engine_runs_whole_shift_networks_exactly(seed, rows, cols):
    im, prog, rng = shift_program(seed, rows, cols, rtl=True)
    px = rng.integers(0, 256, im.meta["input_shape"])
    res = run_engine(prog, px)
    assert res["logits"] == golden.run(im, px[None]).reshape(-1).tolist()
    ref = ReferenceEngine(prog)
    ref.run(px)
    tr = {}
    golden.run(im, px[None], trace=tr)
    for name, t in prog.tensors.items():      # every layer, through the debug read, against golden's tensor
        got = res[t["kind"]][t["addr"]:t["addr"] + t["words"]]
        assert np.array_equal(got, getattr(ref, t["kind"])[t["addr"]:t["addr"] + t["words"]]), name
        c, h, w = t["shape"]
        dec = got.reshape(h, w, -1)[:, :, :c].transpose(2, 0, 1)
        exp = input_codes(prog, px) if name == prog.steps[0]["out"] else tr["tensors"][name][0]
        assert np.array_equal(dec, np.reshape(exp, dec.shape)), name
    assert res["status"][0] >> 16 == MAGIC and res["status"][0] & 0xFF == 0
    assert res["status"][1] == cycle_report(prog)["cycles_per_image"]


def cosim_shift(im, pixels, rows=4, cols=4, sim="verilator"):
    """A shift network on the engine's Verilog through protocol v2 (``sim/engine_cosim.py``'s build and
    cocotb bench, the INFER payload being the pixels' bit planes): every tensor from the debug reads, the
    logits and STATUS against ``sw.golden``. Returns ``(mismatches, compared, images' answers, program)``."""
    from rootshift.sim.engine_cosim import compile_for_cosim, run_job, tensor_from_words

    prog = compile_for_cosim(im, rows, cols)
    res = run_job(prog, [input_codes(prog, p) for p in pixels], sim)
    tr = {}
    gold = golden.run(im, pixels, trace=tr)
    L = prog.params.lanes
    bad = compared = 0
    for i, r in enumerate(res["images"]):
        mem = {k: np.asarray(r[k], np.int64).reshape(-1, L) for k in ("fine", "codes")}
        for step in prog.steps:
            name = step["out"]
            got = tensor_from_words(prog, name, mem[prog.tensors[name]["kind"]])
            exp = input_codes(prog, pixels[i]) if step["kind"] == "input" else tr["tensors"][name][i]
            bad += int((got != np.reshape(exp, got.shape)).sum())
            compared += got.size
        bad += int((np.asarray(r["logits"], np.int64) != gold[i]).sum())
        compared += gold[i].size
        st = r["status"]
        bad += int(st.magic != MAGIC or st.flags != 0)
    return bad, compared, res, prog


@pytest.fixture(scope="module")
def shift_w4a4(tmp_path_factory):
    """A digits ResNet-8, shift weights x shift activations W4A4 (stem and fc 8-bit shift weights), one epoch."""
    from rootshift.sw import rsq
    from rootshift.sw.export import export_checkpoint
    from rootshift.sw.train import TrainConfig, load_checkpoint, train

    d = tmp_path_factory.mktemp("engine_shift44")
    train(TrainConfig(epochs=1, wq="shift", aq="shift", wbits=4, abits=4, out=str(d / "run")), progress=False)
    path = d / "model.rsq"
    rsq.save(export_checkpoint(load_checkpoint(d / "run")), path)
    return path


@pytest.mark.slow
def test_digits_shift_w4a4_on_the_engine_in_verilator(shift_w4a4):
    """Whole-network co-simulation (cocotb + Verilator, protocol v2) of a shift W4A4 digits ResNet-8 on a
    4x4 shift2 engine: every tensor and the logits equal sw.golden, cycles equal the model, every step's
    measured cycles equal the model's (measured: 0 mismatches, 54,962 cycles per image)."""
    from rootshift.sw import rsq
    from rootshift.sw.data import load_dataset

    im = rsq.load(shift_w4a4)
    px = load_dataset("digits").test.batch(range(2))[0].numpy().astype(np.int64)
    bad, compared, res, prog = cosim_shift(im, px)
    assert prog.params.array.pe == "shift2" and bad == 0 and compared > 25_000
    model = cycle_report(prog)
    assert all(r["status"].image_cycles == model["cycles_per_image"] for r in res["images"])
    assert all(r["step_cycles"] == [x["cycles"] for x in model["layers"]] for r in res["images"] if r.get("step_cycles"))


def test_shift_quantizer_has_no_multiplier():
    """Built for shift activations only, QuantLanes and QuantStep contain no multiplication (the linear
    path has one per lane, as four 18x18 partial products, and the divider); the shift2 array's engine
    needs nothing else."""
    from amaranth.back import rtlil

    def muls(component):
        return rtlil.convert(component).count("cell $mul")

    assert muls(QuantLanes(4, 4, ("shift",))) == 0 and muls(QuantLanes(4, 4, ("linear",))) == 4 * 4
    assert muls(QuantStep(4, 4, 16, ("shift",))) == 0 and muls(QuantStep(4, 4, 16, ("linear",))) > 4


def test_shift_program_bytes_are_deterministic_and_round_trip():
    """The shift fields (quant scheme, log2_alpha, max_exponent, the input's bit-plane expansion) survive the
    program's bytes: the loaded program runs bit-exact."""
    from rootshift.hw.engine.program import Program

    im, prog, rng = shift_program(11, 3, 3)
    again = compile_model(im, prog.params, debug=True)
    assert again.to_bytes() == prog.to_bytes()
    loaded = Program.from_bytes(prog.to_bytes())
    px = rng.integers(0, 256, im.meta["input_shape"])
    assert np.array_equal(ReferenceEngine(loaded).run(px), golden.run(im, px[None])[0])
    assert [s.get("scheme") for s in loaded.steps if s["kind"] == "quant"] == ["shift"] * 4
