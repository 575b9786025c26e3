"""shift2 through the whole accelerator: random and worst-case tiles in amaranth.sim and through
cocotb + Verilator, and the host's bit-serial mapping of linear activation codes, all against
sw.contract (docs/arithmetic.md, "shift2")."""

import numpy as np
import pytest

from rootshift.hw import protocol as P
from rootshift.hw.accelerator import Accelerator
from rootshift.hw.params import ArrayParams
from rootshift.hw.testbench import run_words, simulate
from rootshift.sim.driver import Request, expand_bits
from rootshift.sw import contract as C


def oracle(p, a, w, mults, bias, shift, relu):
    terms = C.weight_terms(w, p.format, "shift2")
    acc = C.accumulate(a, terms, "shift2", p.abits, p.act_exponent)["acc"]
    return C.requantize([acc], mults, bias, shift, 0 if relu else C.FINE_MIN, C.FINE_MAX)


def tiles(p, n, seed):
    rng = np.random.default_rng(seed)
    codes = p.format.all_codes()
    out = []
    for _ in range(n):
        k = int(rng.integers(1, p.max_k + 1))
        r, c = int(rng.integers(1, p.rows + 1)), int(rng.integers(1, p.cols + 1))
        a = rng.integers(0, 2**p.abits, size=(r, k))
        w = rng.choice(codes, size=(c, k))
        # multipliers as the contract allows them for shift2 (|M| = |M_base| < 2^22), and any 32-bit one
        m = rng.integers(-(2**22) + 1, 2**22, size=c) if rng.integers(2) else rng.integers(-(2**31), 2**31, size=c)
        out.append((a, w, [m], rng.integers(-(2**50), 2**50, size=c), int(rng.integers(1, 48)), bool(rng.integers(2))))
    # worst cases: the accumulator bound of both signs (top activation code 1, top weights), K = max_k
    sign, zero, kk, _ = p.format.decode(codes)
    for wc in [int(x) for x, e in zip(codes, kk) if e == 0]:
        for m, relu in ((2**31 - 1, False), (-(2**31), True), (2**22 - 1, False)):
            out.append((np.ones((p.rows, p.max_k), np.int64), np.full((p.cols, p.max_k), wc), [np.full(p.cols, m)],
                        np.zeros(p.cols, np.int64), 1, relu))
    out.append((np.zeros((p.rows, 5), np.int64), np.full((p.cols, 5), int(codes[0])), [np.full(p.cols, 7)],
                np.full(p.cols, -5), 3, False))
    return out


def test_shift2_tiles_in_amaranth_sim():
    p = ArrayParams(wbits=4, abits=4, base="2", pe="shift2", rows=2, cols=3, max_k=40)
    ts = tiles(p, 4, seed=1)
    dut = Accelerator(p)

    async def bench(ctx):
        return [await run_words(ctx, dut, P.tile_words(p, *t), p.rows * p.cols) for t in ts]

    for t, out in zip(ts, simulate(dut, bench)):
        assert np.array_equal(P.unpack_outputs(p, out, t[0].shape[0], t[1].shape[0]), oracle(p, *t))


@pytest.mark.parametrize("wbits, abits, rows, cols", [(4, 4, 2, 3), (3, 2, 3, 2)])
def test_shift2_tiles_on_verilator(wbits, abits, rows, cols):
    from rootshift.sim.cosim import run_job

    p = ArrayParams(wbits=wbits, abits=abits, base="2", pe="shift2", rows=rows, cols=cols, max_k=48)
    ts = tiles(p, 0, seed=wbits + abits)
    values = 0
    seed = 0
    while values < 1200:
        seed += 1
        extra = tiles(p, 20, seed=100 * wbits + seed)[:20]
        ts += extra
        values += sum(t[0].shape[0] * t[1].shape[0] for t in extra)
    res = run_job(p, {"kind": "tiles", "requests": [Request(P.tile_words(p, *t), p.rows * p.cols) for t in ts]}, "verilator")
    compared = 0
    for i, (t, out) in enumerate(zip(ts, res["outputs"])):
        got = P.unpack_outputs(p, out, t[0].shape[0], t[1].shape[0])
        exp = oracle(p, *t)
        assert np.array_equal(got, exp), f"tile {i}: first difference at {np.argwhere(got != exp)[0].tolist()}"
        compared += exp.size
    assert compared >= 1200


def test_linear_codes_run_bit_serially_on_shift2_hardware():
    """The stem's 8-bit pixel codes times shift weights (mode shift) equal, exactly, the shift2 product
    of the bit-expanded codes with each weight repeated per bit (sim/driver.py: expand_bits)."""
    p = ArrayParams(wbits=4, abits=4, base="2", pe="shift2", rows=2, cols=2, max_k=80)
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(6, 9))
    w = rng.choice(p.format.all_codes(), size=(3, 9))
    lin = C.accumulate(a, C.weight_terms(w, p.format, "shift"), "shift", 8)["acc"]
    ex = expand_bits(a, 8, p.act_exponent)
    assert ex.shape == (6, 72) and ex.max() <= 2**p.abits - 1
    s2 = C.accumulate(ex, C.weight_terms(np.repeat(w, 8, axis=1), p.format, "shift2"), "shift2", 4, p.act_exponent)["acc"]
    assert np.array_equal(lin, s2)
