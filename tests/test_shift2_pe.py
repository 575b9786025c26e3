"""The shift2 PE (shift weight x shift activation, no multiplier) against the contract's own functions
(docs/arithmetic.md, "shift2"; sw.contract.accumulate with mode shift2 as the oracle)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootshift.hw.params import ArrayParams
from rootshift.hw.pe import PE_LATENCY, ProcessingElement
from rootshift.hw.testbench import simulate
from rootshift.sw import contract as C

SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))


def signed(v, bits):
    v = int(v) & ((1 << bits) - 1)
    return v - (1 << bits) if v >> (bits - 1) else v


def oracle(p, a, w):
    terms = C.weight_terms(w[None, :], p.format, "shift2")
    return int(C.accumulate(a[None, :], terms, "shift2", p.abits, act_max_exponent=p.act_exponent)["acc"][0, 0])


def worst(p, k):
    """All-top activations (c = 1) with every top weight (k = 0, both signs), the smallest terms, zeros."""
    fmt = p.format
    codes = fmt.all_codes()
    sign, zero, kk, _ = fmt.decode(codes)
    top = [int(c) for c, e in zip(codes, kk) if e == 0]
    low = [int(c) for c, e in zip(codes, kk) if e == fmt.max_shift]
    amax = 2**p.abits - 1
    out = [(np.full(k, 1), np.full(k, c)) for c in top]                      # the bound, both signs
    out += [(np.full(k, amax), np.full(k, c)) for c in low]                  # the smallest magnitude
    out += [(np.zeros(k, np.int64), np.full(k, top[0])), (np.arange(k) % (amax + 1), np.resize(codes, k))]
    return out


@pytest.mark.parametrize("wbits, abits", [(4, 4), (2, 2), (3, 3), (8, 4), (4, 2)])
@SETTINGS
@given(data=st.data())
def test_shift2_pe_matches_contract(wbits, abits, data):
    p = ArrayParams(wbits=wbits, abits=abits, base="2", pe="shift2", rows=1, cols=2, max_k=64)
    vectors = worst(p, 64)
    for _ in range(6):
        k = data.draw(st.integers(1, 24))
        a = np.array(data.draw(st.lists(st.integers(0, 2**abits - 1), min_size=k, max_size=k)))
        w = np.array(data.draw(st.lists(st.sampled_from(p.format.all_codes().tolist()), min_size=k, max_size=k)))
        vectors.append((a, w))
    dut = ProcessingElement(p)

    async def bench(ctx):
        got = []
        for a, w in vectors:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            for ai, wi in zip(a, w):
                ctx.set(dut.a, int(ai))
                ctx.set(dut.w, int(wi))
                ctx.set(dut.valid, 1)
                await ctx.tick()
            ctx.set(dut.valid, 0)
            await ctx.tick().repeat(PE_LATENCY)
            got.append(signed(ctx.get(dut.acc), p.acc_bits))
        return got

    got = simulate(dut, bench)
    for (a, w), g in zip(vectors, got):
        assert g == oracle(p, a, w), (a.tolist(), w.tolist())


def test_shift2_bound_is_reached_and_fits():
    """The worst case (all c = 1, all top weights of one sign, K = max_k) is the contract's bound."""
    p = ArrayParams(wbits=4, abits=4, base="2", pe="shift2", rows=1, cols=2, max_k=576)
    assert p.shift_max == 7 and p.act_exponent == 14
    bound = C.acc_bound("shift2", 576, 4, p.format, 4, 14)
    assert bound == 576 << 21 and p.acc_bits == C.acc_width(bound) == 32
    top = int([c for c in p.format.all_codes() if c == 0][0])
    assert oracle(p, np.ones(576, np.int64), np.full(576, top)) == bound


def test_shift2_accelerator_lints_clean_and_has_no_multiplier_in_the_array(tmp_path):
    from rootshift.hw.generate import component_verilog, generate
    from rootshift.hw.pe_array import PEArray
    from rootshift.hw.tools import lint, synth

    p = ArrayParams(wbits=4, abits=4, base="2", pe="shift2", rows=2, cols=3, max_k=100)
    man = generate(p, tmp_path)
    lint(tmp_path / man["verilog"])
    assert man["act_exponent"] == 14
    (tmp_path / "arr.v").write_text(component_verilog(PEArray(p), "pe_array"))
    cells = synth(tmp_path / "arr.v", "ice40", top="pe_array")["cells"]
    assert cells.get("SB_MAC16", 0) == 0 and not any(c.startswith("$mul") for c in cells)
