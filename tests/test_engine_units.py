"""The engine's arithmetic units in amaranth.sim against sw.contract (docs/arithmetic.md): QuantLanes,
StepDivider, GapDivider, BetaMultiplier, the VectorUnit's average pool. Hypothesis draws operands; worst
cases are always included."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from rootshift.hw.engine.beta_mult import BetaMultiplier
from rootshift.hw.engine.divider import StepDivider
from rootshift.hw.engine.gap_divider import GapDivider
from rootshift.hw.engine.quant_lanes import QuantLanes
from rootshift.sw import contract as C


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _back_to_back(dut, inputs, drive, out):
    """One input per cycle (``drive(ctx, item)`` sets the operands) with ``i_valid``, then ``latency`` + 2
    idle cycles; returns ``{cycle: out}`` for every cycle whose ``o_valid`` was high."""
    got = {}

    async def bench(ctx):
        for t in range(len(inputs) + dut.latency + 2):
            if t < len(inputs):
                drive(ctx, inputs[t])
            ctx.set(dut.i_valid, int(t < len(inputs)))
            await ctx.tick()
            if ctx.get(dut.o_valid):
                got[t + 1] = ctx.get(out)

    simulate(dut, bench)
    return got


def quant_hw(words, r, bits, lanes=3):
    dut = QuantLanes(lanes, 8)
    out = []

    async def bench(ctx):
        ctx.set(dut.r, r)
        ctx.set(dut.qmax, 2**bits - 1)
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
                out.append([(v >> (8 * c)) & 0xFF for c in range(lanes)])

    simulate(dut, bench)
    return out


FINE = st.integers(C.FINE_MIN, C.FINE_MAX)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(FINE, FINE, FINE), min_size=1, max_size=6), st.integers(0, C.R_MAX), st.integers(2, 8))
def test_quant_lanes_match_the_contract(words, r, bits):
    worst = [(C.FINE_MAX, C.FINE_MIN, 0), (2**31 - 1, 1, -1)]
    words = worst + words
    got = quant_hw(words, r, bits)
    want = C.quant_codes(np.array(words, np.int64), np.int64(r), 2**bits - 1)
    assert got == want.tolist()


def run_divider(dut, pairs, ports, result, check_busy=False):
    """A divider on operand pairs, back to back (``ports``: the two operand ports' names, ``result``: the
    output's): the results and the start-to-done cycles; ``check_busy``: ``busy`` must hold until ``done``."""
    out, cycles = [], []

    async def bench(ctx):
        for pair in pairs:
            for name, v in zip(ports, pair):
                ctx.set(getattr(dut, name), v)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            n = 1
            while not ctx.get(dut.done):
                assert not check_busy or ctx.get(dut.busy)
                await ctx.tick()
                n += 1
            out.append(ctx.get(getattr(dut, result)))
            cycles.append(n)
            await ctx.tick()

    simulate(dut, bench)
    return out, cycles


def divide_hw(pairs):
    return run_divider(StepDivider(), pairs, ("k_step", "beta"), "r")


@settings(max_examples=6, deadline=None)
@given(st.lists(st.tuples(st.integers(1, C.K_STEP_MAX), st.integers(0, 2**40)), min_size=1, max_size=3))
def test_step_divider_matches_the_contract(pairs):
    worst = [(C.K_STEP_MAX, 1), (1, 2**40), (2**41, 2**16), (5173540249874, 3 * 2**15), (7, 0), (1, 2**62 - 1)]
    pairs = worst + pairs
    got, cycles = divide_hw(pairs)
    want = [int(C.step_multiplier(k, np.array([b]))[0]) for k, b in pairs]
    assert got == want
    assert set(cycles) == {StepDivider.CYCLES}


def gap_divide_hw(pairs, dut=None):
    """``GapDivider`` on ``(sum, n)`` pairs, back to back; the quotients and the start-to-done cycles."""
    return run_divider(dut or GapDivider(), pairs, ("sum", "n"), "q", check_busy=True)


N_MAX = 2**24 - 1      # the descriptor's 24-bit positions


def _mean_sum(n, frac):
    """A sum of ``n`` fine values (any integer in ``[n FINE_MIN, n FINE_MAX]`` is one), at ``frac`` of the way."""
    lo, hi = n * C.FINE_MIN, n * C.FINE_MAX
    return lo + int((hi - lo) * frac)


GAP_WORST = [(N_MAX * C.FINE_MAX, N_MAX), (N_MAX * C.FINE_MIN, N_MAX), (C.FINE_MAX, 1), (C.FINE_MIN, 1), (0, 1),
             (-1, 1), (49 * C.FINE_MAX, 49), (49 * C.FINE_MIN, 49), (784 * C.FINE_MIN, 784), (784 * C.FINE_MAX, 784),
             (392, 784), (-392, 784), (-393, 784), (391, 784), (24, 49), (25, 49), (-24, 49), (-25, 49), (-74, 49),
             (1, 3), (-1, 3), (2, 3), (-2, 3), (3 * C.FINE_MAX - 1, 3), (3 * C.FINE_MIN + 1, 3), (-1, 2), (-3, 2), (3, 2),
             (2**23 * C.FINE_MIN, 2**23), (2**23 * C.FINE_MAX, 2**23), (-(2**22), 2**23), (2**22 - 1, 2**23),
             ((N_MAX - 1) * C.FINE_MIN, N_MAX - 1), (N_MAX * C.FINE_MAX - N_MAX // 2 - 1, N_MAX),
             (N_MAX * C.FINE_MIN + N_MAX // 2, N_MAX)]


@settings(max_examples=8, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(1, 1024), st.integers(1, N_MAX), st.sampled_from([49, 196, 784, 3, 7])),
                          st.floats(0, 1)), min_size=1, max_size=4))
def test_gap_divider_matches_the_contract(draws):
    """``rdiv(sum, n)`` exactly for any count (powers of two, 49, 784, 3, up to ``2^24 - 1``) and sums of
    either sign up to the contract's bound (``|sum| <= 2^55``), in ``GapDivider.CYCLES`` each."""
    pairs = GAP_WORST + [(_mean_sum(n, f), n) for n, f in draws]
    got, cycles = gap_divide_hw(pairs)
    want = [int(C.rdiv(a, n)) for a, n in pairs]
    assert got == want
    assert set(cycles) == {GapDivider().CYCLES} == {GapDivider.cycles(32)} == {33}
    assert all(abs(a) <= 2**55 for a, _ in pairs)


def test_gap_divider_other_widths_and_validation():
    """Narrow widths (8-bit values, 4-bit counts): every sum of every count exhaustively."""
    dut = GapDivider(12, 4, 8)
    pairs = [(a, n) for n in range(1, 16) for a in range(n * -128, n * 127 + 1, max(1, n // 3))]
    got, cycles = gap_divide_hw(pairs, dut)
    assert got == [int(C.rdiv(a, n)) for a, n in pairs]
    assert set(cycles) == {dut.CYCLES} == {9}
    with pytest.raises(TypeError, match="Count width must be an integer of at least 2 bits, not 0"):
        GapDivider(56, 0, 32)
    with pytest.raises(ValueError, match="Sum width must hold n values of 32 bits with n of 24 bits: at least 56 bits, not 55"):
        GapDivider(55, 24, 32)


def beta_hw(items):
    dut = BetaMultiplier()
    out = []

    async def bench(ctx):
        pending = list(items)
        while len(out) < len(items):
            if pending:
                mb, b = pending.pop(0)
                ctx.set(dut.m_base, mb)
                ctx.set(dut.beta, b)
                ctx.set(dut.i_valid, 1)
            else:
                ctx.set(dut.i_valid, 0)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                out.append((ctx.get(dut.m), ctx.get(dut.overflow)))

    simulate(dut, bench)
    return out


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.integers(-C.M_BASE_MAX, C.M_BASE_MAX),
                          st.one_of(st.integers(1, 2**26), st.integers(1, 2**63 - 1))), min_size=1, max_size=6))
def test_beta_multiplier_matches_the_contract(items):
    worst = [(C.M_BASE_MAX, 2**25), (-C.M_BASE_MAX, 2**25), (C.M_BASE_MAX, 2**25 + 2**20), (-1, 1), (1, 2**15),
             (-3, 2**15), (1, 2**47 - 1), (-1, 2**47), (-1, 2**47 - 2**16), (1, 2**47 - 2**15 - 1),
             (C.M_BASE_MAX, 2**63 - 1), (-C.M_BASE_MAX, 2**63 - 1),     # the range check's edges, the widest beta
             # only beta's low BETA_MUL_BITS = 47 bits reach the DSPs: a higher bit overflows unless M_base = 0
             (0, 2**47), (0, 2**63 - 1), (0, 2**47 - 1), (1, 2**47 + 1), (-1, 2**62 + 2**46), (1, 2**48 - 1),
             (2, 2**46 - 1), (-2, 2**46 - 2**15)]
    items = worst + items
    got = beta_hw(items)
    for (mb, b), (m, ovf) in zip(items, got):
        exact = (mb * b + 2**15) >> 16      # rshift_round in Python integers, to know the overflow cases
        assert ovf == (abs(exact) >= 2**31), (mb, b)
        if not ovf:
            assert m == int(C.beta_multiplier(np.array([mb]), np.array([b]))[0, 0]) == exact, (mb, b)


def test_beta_multiplier_holds_beta_while_beta_en_is_low():
    """MultSetup loads each multiplier's beta register under its own enable (so synthesis keeps one per
    multiplier): with ``beta_en`` low the register keeps the loaded beta, whatever ``beta`` shows."""
    dut, beta, out = BetaMultiplier(), 3 * 2**20 + 12345, []
    m_bases = [C.M_BASE_MAX, -C.M_BASE_MAX, 1, -7, 0, 12345]

    async def bench(ctx):
        ctx.set(dut.beta, beta)
        ctx.set(dut.beta_en, 1)
        await ctx.tick()
        ctx.set(dut.beta_en, 0)
        for i in range(len(m_bases) + BetaMultiplier.LATENCY + 1):
            ctx.set(dut.beta, (2**63 - 1) if i % 2 else 2**16)      # junk the register must not take
            ctx.set(dut.m_base, m_bases[i] if i < len(m_bases) else 0)
            ctx.set(dut.i_valid, i < len(m_bases))
            await ctx.tick()
            if ctx.get(dut.o_valid):
                out.append((ctx.get(dut.m), ctx.get(dut.overflow)))

    simulate(dut, bench)
    want = [int(C.beta_multiplier(np.array([mb]), np.array([beta]))[0, 0]) for mb in m_bases]
    assert out == [(w, 0) for w in want]


def test_units_validate():
    with pytest.raises(TypeError, match="Lane count must be a positive integer, not 0"):
        QuantLanes(0, 4)
    with pytest.raises(TypeError, match="Activation bits must be an integer in 2..8, not 9"):
        QuantLanes(2, 9)


def adapter_hw(g, w1, b1, f1, w2, b2, f2, lanes=1, registered=False):
    """The AdapterUnit on memories laid out as the engine's (``adapter_weight_words``); ``registered``:
    behind ``RegisteredMemory`` s (the ECP5 configuration). Returns beta and start-to-done cycles."""
    from amaranth.hdl import Module, signed
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory

    from rootshift.hw.engine.adapter import AdapterUnit, adapter_weight_words
    from rootshift.hw.engine.bram_outreg import RegisteredMemory

    hidden = 0 if w1 is None else len(w1)
    weights = adapter_weight_words(w1, w2, lanes)
    biases = ([] if b1 is None else [int(v) for v in b1]) + [int(b2[0])]
    unit = AdapterUnit(max(1, hidden), lanes, registered_reads=registered)

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({})

        def elaborate(self, platform):
            m = Module()
            m.submodules.unit = unit
            for name, init, width, addr, dat in (("g", [int(v) for v in g], 32, unit.g_addr, unit.g_data),
                                                 ("w", weights, 16 * lanes, unit.w_addr, unit.w_data),
                                                 ("b", biases, 64, unit.b_addr, unit.b_data)):
                init = [v & ((1 << width) - 1) for v in init]
                if registered:
                    m.submodules[name] = mem = RegisteredMemory(width, max(2, len(init)), init=init)
                else:
                    m.submodules[name] = mem = Memory(shape=width, depth=max(2, len(init)), init=init)
                rd = mem.read_port()
                m.d.comb += [rd.addr.eq(addr), dat.eq(rd.data if name == "w" else rd.data.as_signed())]
            return m

    out = {}

    async def bench(ctx):
        ctx.set(unit.channels, len(g))
        ctx.set(unit.hidden, hidden)
        ctx.set(unit.f1, f1 or 0)
        ctx.set(unit.f2, f2)
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        n = 1
        while not ctx.get(unit.done):
            await ctx.tick()
            n += 1
            assert n < 100_000
        out["beta"], out["cycles"] = ctx.get(unit.beta), n

    simulate(Top(), bench)
    return out


WMAX = 2**15 - 1       # |Wq| < 2^15


def _adapter_operands(rng, ch, worst):
    """Adapter constants for ``ch`` channels (a hidden layer of ``ch // 4`` from 8 channels), random or
    (``worst``) at the extremes: |W| = 2^15 - 1 with signs that make every product of a sum add up, g and
    the biases as large as keep each layer's sum within the contract's 2^62 - 1."""
    hidden = ch // 4 if ch >= 8 else 0
    n1 = hidden or ch
    if worst:
        gmax = 2**31 - 1
        g = np.where(rng.integers(0, 2, ch) == 1, gmax, -gmax)
        w1 = (np.sign(g)[None, :] * WMAX * np.where(rng.integers(0, 4, (hidden, ch)) == 0, -1, 1)).astype(np.int64)
        sign = lambda n: np.where(rng.integers(0, 2, n) == 1, 1, -1)  # noqa: E731
        b1 = sign(hidden) * (2**62 - 1 - ch * WMAX * gmax)
        if hidden:     # the hidden values are below 2^(62 - f1), f1 >= 20: layer 2's sum below 2^60
            w2, b2 = np.full((1, n1), WMAX, np.int64), sign(1) * 2**61
        else:
            w2, b2 = (np.sign(g) * WMAX)[None, :].astype(np.int64), sign(1) * (2**62 - 1 - ch * WMAX * gmax)
    else:
        g = rng.integers(-(2**24), 2**24, ch)
        w1 = rng.integers(-WMAX, WMAX + 1, (hidden, ch))
        b1 = rng.integers(-(2**40), 2**40, hidden)
        w2, b2 = rng.integers(-WMAX, WMAX + 1, (1, n1)), rng.integers(-(2**40), 2**40, 1)
    return g, (w1, b1) if hidden else (None, None), w2, b2


@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
@pytest.mark.parametrize("registered", [False, True])
@settings(max_examples=3, deadline=None)
@given(ch=st.sampled_from([1, 3, 7, 8, 9, 11, 20, 33]), seed=st.integers(0, 2**32), f1=st.integers(0, 62),
       f2=st.integers(0, 40), worst=st.booleans())
def test_adapter_unit_matches_the_contract(lanes, registered, ch, seed, f1, f2, worst):
    """beta equal to ``sw.contract.adapter_beta_int`` and start-to-done cycles equal to
    ``cycles.adapter_cycles``, with layer 1 ``lanes`` hidden outputs at a time: hidden counts not a multiple
    of the lanes (20 channels: 5, 33: 8, 9: 2), fewer channels than lanes, the single-layer adapter
    (``C < 8``), and worst-case operands (every |W| = 2^15 - 1, |g| = 2^31 - 1, the sums near 2^62)."""
    from rootshift.hw.engine.cycles import adapter_cycles

    rng = np.random.default_rng(seed)
    g, (w1, b1), w2, b2 = _adapter_operands(rng, ch, worst)
    hidden = 0 if w1 is None else len(w1)
    if worst and hidden:      # layer 2's sum: the hidden values are at most 2^62 / 2^f1
        f1 = max(f1, 20)
    got = adapter_hw(g, w1, b1, None if w1 is None else f1, w2, b2, f2, lanes, registered)
    want = int(C.adapter_beta_int(g[None, :], w1, b1, None if w1 is None else f1, w2, b2, f2)[0])
    assert got["beta"] == want
    assert got["cycles"] == adapter_cycles(ch, hidden, lanes, registered)


def _requantize_exact(a0, a1, m0, m1, b, s, relu, n_acc):
    """The contract's requantization (docs/arithmetic.md, "Requantization") through sw.contract."""
    accs, ms = [np.array([[a0]])], [np.array([m0])]
    if n_acc == 2:
        accs.append(np.array([[a1]]))
        ms.append(np.array([m1]))
    return int(C.requantize(accs, ms, np.array([b]), s, 0 if relu else C.FINE_MIN, C.FINE_MAX)[0, 0])


@pytest.mark.parametrize("acc_bits, n_acc", [(26, 2), (30, 1), (12, 2), (17, 2), (18, 1), (39, 1)])
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_deep_requantizer_matches_the_contract_back_to_back(acc_bits, n_acc, data):
    """The engine's requantizer (``deep=True``: 18x18 partial products, 9 stages) takes an input every
    cycle and gives each result exactly ``DEEP_LATENCY`` cycles later, equal to the contract; the limb
    split is checked at widths below, at and above one and two 17-bit limbs (40: the whole-multiply
    fallback, shift2's widest accumulator), with the extreme operands that make every partial product and the 66-bit sum largest."""
    from rootshift.hw.requantizer import Requantizer, fold_rounding

    amax = 2 ** (acc_bits - 1)
    acc = st.integers(-amax, amax - 1)
    m32 = st.integers(-(2**31), 2**31 - 1)
    vectors = [(-amax, -amax, -(2**31), -(2**31), 2**62, 1, 0), (amax - 1, amax - 1, 2**31 - 1, 2**31 - 1, -(2**62), 63, 0),
               (-amax, amax - 1, -(2**31), 2**31 - 1, 0, 0, 1), (amax - 1, -amax, 2**31 - 1, -(2**31), -1, 7, 0),
               (-1, -1, -1, -1, 0, 8, 1), (0, 0, 0, 0, 0, 63, 0)]
    vectors += data.draw(st.lists(st.tuples(acc, acc, m32, m32, st.integers(-(2**61), 2**61), st.integers(0, 63),
                                            st.integers(0, 1)), min_size=12, max_size=12))
    dut = Requantizer(acc_bits, n_acc, deep=True)
    assert dut.latency == Requantizer.DEEP_LATENCY

    def drive(ctx, vec):
        a0, a1, m0, m1, b, s, relu = vec
        for sig, v in ((dut.acc0, a0), (dut.acc1, a1), (dut.m0, m0), (dut.m1, m1),
                       (dut.bias, fold_rounding(b, s)), (dut.shift, s), (dut.relu, relu)):
            ctx.set(sig, v)
    got = _back_to_back(dut, vectors, drive, dut.y)
    assert sorted(got) == [i + dut.latency for i in range(len(vectors))]
    for i, (a0, a1, m0, m1, b, s, relu) in enumerate(vectors):
        v = a0 * m0 + (a1 * m1 if n_acc == 2 else 0) + b          # exact Python integers
        exp = min(max((v + (1 << (s - 1)) if s else v) >> s, 0 if relu else C.FINE_MIN), C.FINE_MAX)
        assert got[i + dut.latency] == exp, (i, vectors[i])
        if acc_bits <= 30:                                          # the contract's own domain
            assert exp == _requantize_exact(a0, a1, m0, m1, b, s, relu, n_acc)


@pytest.mark.parametrize("a_shape, b_shape", [((23, True), (63, False)), ((32, True), (31, False)),
                                              ((16, True), (63, False)), ((5, True), (9, True)), ((17, False), (34, True))])
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_pipelined_multiplier_is_exact_back_to_back(a_shape, b_shape, data):
    """Every product exact, one per cycle, each exactly ``latency`` cycles after its input; the operands'
    extremes (most negative, largest) are always included."""
    from amaranth.hdl import signed, unsigned

    from rootshift.hw.engine.pipe_mult import PipelinedMultiplier

    def rng(w, s):
        return (-(2 ** (w - 1)), 2 ** (w - 1) - 1) if s else (0, 2**w - 1)

    (alo, ahi), (blo, bhi) = rng(*a_shape), rng(*b_shape)
    pairs = [(alo, bhi), (ahi, bhi), (alo, blo), (ahi, blo), (-1 if a_shape[1] else 1, bhi), (0, bhi)]
    pairs += data.draw(st.lists(st.tuples(st.integers(alo, ahi), st.integers(blo, bhi)), min_size=10, max_size=10))
    mk = lambda w, s: signed(w) if s else unsigned(w)  # noqa: E731
    dut = PipelinedMultiplier(mk(*a_shape), mk(*b_shape))

    def drive(ctx, pair):
        ctx.set(dut.a, pair[0])
        ctx.set(dut.b, pair[1])
    got = _back_to_back(dut, pairs, drive, dut.p)
    assert sorted(got) == [i + dut.latency for i in range(len(pairs))]
    for i, (a, b) in enumerate(pairs):
        assert got[i + dut.latency] == a * b, (a, b)


def test_adapter_validates_and_counts_its_words():
    """The lane count is checked; the compiler's ``aw_addr`` advance (``adapter_weight_count``) is the
    number of words the layout has, and a word holds the lanes' weights in order, zero past ``hidden``."""
    from rootshift.hw.engine.adapter import AdapterUnit, adapter_weight_count, adapter_weight_words
    from rootshift.hw.engine.cycles import adapter_cycles

    with pytest.raises(TypeError, match="Lane count must be a positive integer, not 0"):
        AdapterUnit(4, 0)
    with pytest.raises(TypeError, match="Lane count must be a positive integer, not 0"):
        adapter_cycles(20, 5, 0)
    rng = np.random.default_rng(2)
    for ch, lanes in ((20, 4), (20, 8), (33, 3), (7, 2), (8, 1)):
        hidden = ch // 4 if ch >= 8 else 0
        w1 = rng.integers(-WMAX, WMAX + 1, (hidden, ch)) if hidden else None
        w2 = rng.integers(-WMAX, WMAX + 1, (1, hidden or ch))
        words = adapter_weight_words(w1, w2, lanes)
        assert len(words) == adapter_weight_count(ch, hidden, lanes)
        lane = lambda word, i: ((word >> (16 * i)) & 0xFFFF) - ((word >> (16 * i)) & 0x8000) * 2  # noqa: E731
        blocks = -(-hidden // lanes)
        for b in range(blocks):
            for c in range(ch):
                for i in range(lanes):
                    want = int(w1[b * lanes + i, c]) if b * lanes + i < hidden else 0
                    assert lane(words[b * ch + c], i) == want
        for j in range(hidden or ch):
            assert lane(words[blocks * ch + j // lanes], j % lanes) == int(w2[0, j])


@pytest.mark.parametrize("ch", [8, 9, 11])
@pytest.mark.parametrize("lanes, registered", [(1, False), (2, True), (4, False), (8, True)])
def test_adapter_second_layer_waits_for_the_last_hidden_value(ch, lanes, registered):
    """Hidden outputs of fewer terms than the adapter's pipeline is deep (8..11 channels: 8..11 terms, a
    dozen stages): layer 2 must start after the *last* hidden value is written, not after the first
    sum that finishes once every output is issued; beta and the cycle count equal the contract and model."""
    from rootshift.hw.engine.cycles import adapter_cycles

    rng = np.random.default_rng(6)
    g = rng.integers(-(2**24), 2**24, ch)
    w1, b1 = rng.integers(-(2**15) + 1, 2**15, (ch // 4, ch)), rng.integers(-(2**40), 2**40, ch // 4)
    w2, b2 = rng.integers(-(2**15) + 1, 2**15, (1, ch // 4)), rng.integers(-(2**40), 2**40, 1)
    got = adapter_hw(g, w1, b1, 16, w2, b2, 16, lanes, registered)
    assert got["beta"] == int(C.adapter_beta_int(g[None, :], w1, b1, 16, w2, b2, 16)[0])
    assert got["cycles"] == adapter_cycles(ch, ch // 4, lanes, registered)


@pytest.mark.parametrize("acc_bits, n_acc", [(26, 2), (39, 1)])
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_deep_requantizer_with_registered_constants(acc_bits, n_acc, data):
    """``consts_registered=True`` (the ConvUnit behind ``RegisteredMemory`` s): ``m0``, ``m1`` and ``bias``
    arrive a cycle after the accumulators, shift and ReLU of the same input, and the results are those of
    the plain deep requantizer, the same cycles."""
    from rootshift.hw.requantizer import Requantizer, fold_rounding

    amax = 2 ** (acc_bits - 1)
    acc = st.integers(-amax, amax - 1)
    m32 = st.integers(-(2**31), 2**31 - 1)
    vectors = [(-amax, -amax, -(2**31), -(2**31), 2**62, 1, 0), (amax - 1, amax - 1, 2**31 - 1, 2**31 - 1, -(2**62), 63, 0)]
    vectors += data.draw(st.lists(st.tuples(acc, acc, m32, m32, st.integers(-(2**61), 2**61), st.integers(0, 63),
                                            st.integers(0, 1)), min_size=10, max_size=10))
    dut = Requantizer(acc_bits, n_acc, deep=True, consts_registered=True)
    feed = vectors + [(0, 0, 0, 0, 0, 0, 0)]      # one more cycle: it carries the last input's constants
    prev = [None]

    def drive(ctx, vec):
        a0, a1, _, _, _, s, relu = vec
        for sig, v in ((dut.acc0, a0), (dut.acc1, a1), (dut.shift, s), (dut.relu, relu)):
            ctx.set(sig, v)
        if prev[0] is not None:
            _, _, m0, m1, b, s0, _ = prev[0]
            for sig, v in ((dut.m0, m0), (dut.m1, m1), (dut.bias, fold_rounding(b, s0))):
                ctx.set(sig, v)
        prev[0] = vec
    got = _back_to_back(dut, feed, drive, dut.y)
    for i, (a0, a1, m0, m1, b, s, relu) in enumerate(vectors):
        v = a0 * m0 + (a1 * m1 if n_acc == 2 else 0) + b
        exp = min(max((v + (1 << (s - 1)) if s else v) >> s, 0 if relu else C.FINE_MIN), C.FINE_MAX)
        assert got[i + dut.latency] == exp, (i, vectors[i])
    with pytest.raises(TypeError, match="True only with deep=True"):
        Requantizer(acc_bits, n_acc, consts_registered=True)


def avgpool_hw(x, lanes, registered):
    """The VectorUnit's global average pool over ``x`` (C, H, W) fine values, laid out as the compiler
    does (word ``pos * groups + g``, lane ``c % lanes``); the output words and the start-to-done cycles."""

    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory

    from rootshift.hw.engine.bram_outreg import RegisteredMemory
    from rootshift.hw.engine.desc import VecDesc, gap_shift
    from rootshift.hw.engine.vector_unit import VectorUnit

    c, h, w = x.shape
    groups = -(-c // lanes)
    xp = np.zeros((groups * lanes, h * w), np.int64)
    xp[:c] = x.reshape(c, -1)
    words = [[int(xp[g * lanes + j, p]) for j in range(lanes)] for p in range(h * w) for g in range(groups)]
    init = [sum((v & 0xFFFFFFFF) << (32 * j) for j, v in enumerate(row)) for row in words]
    out_addr = len(words)
    unit = VectorUnit(lanes, registered_reads=registered)

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({})

        def elaborate(self, platform):
            m = Module()
            m.submodules.unit = unit
            if registered:
                m.submodules.fine = mem = RegisteredMemory(32 * lanes, len(init) + groups, init=init)
            else:
                m.submodules.fine = mem = Memory(shape=32 * lanes, depth=len(init) + groups, init=init)
            r = mem.read_port()
            m.d.comb += r.addr.eq(unit.a_addr)
            for j in range(lanes):
                m.d.comb += unit.a_data[j].eq(r.data[32 * j:32 * (j + 1)].as_signed())
            return m

    n = h * w
    desc = {"avg": 1, "a_addr": 0, "b_addr": 0, "out_addr": out_addr, "words": len(words), "positions": n,
            "groups": groups, "shift": gap_shift(n) or 0, "div": int(gap_shift(n) is None)}
    got, res = {}, {}

    async def bench(ctx):
        ctx.set(unit.desc, VecDesc.const(desc))
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        k = 1
        while not ctx.get(unit.done):
            if ctx.get(unit.out_en):
                v = ctx.get(unit.out_data)
                got[ctx.get(unit.out_addr) - out_addr] = [((v >> (32 * j)) & 0xFFFFFFFF) for j in range(lanes)]
            await ctx.tick()
            k += 1
            assert k < 100_000
        res["cycles"] = k

    simulate(Top(), bench)
    pooled = [[v - (1 << 32) if v >> 31 else v for v in got[g]][j] for g in sorted(got) for j in range(lanes)][:c]
    return pooled, sorted(got), len(words), groups, res["cycles"]


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("c,h,w,lanes", [(5, 7, 7, 2), (3, 5, 7, 3), (4, 1, 3, 4), (2, 4, 4, 2), (1, 1, 1, 1)])
def test_vector_unit_average_pool_matches_the_contract(c, h, w, lanes, registered):
    """``rdiv(sum_hw X, H*W)`` per channel over any ``H*W`` (49, 35, 3: the GapDivider, lane by lane; 16, 1:
    the rounding shift), with saturated, negative and tie values; cycles == ``cycles.avgpool_cycles``."""
    from rootshift.hw.engine.cycles import avgpool_cycles

    rng = np.random.default_rng(c * 100 + h * 10 + w)
    x = rng.integers(C.FINE_MIN, C.FINE_MAX + 1, (c, h, w))
    x[0] = C.FINE_MAX                                  # the largest sum
    if c > 1:
        x[1] = C.FINE_MIN                              # the most negative sum
    if c > 2:
        x[2] = -1                                      # a negative mean of -1
        x[2].flat[: (h * w) // 2] = 0                  # a negative tie when H*W is even
    if c > 3:
        x[3] = rng.integers(-3, 4, (h, w))             # near zero, of either sign
    got, addrs, words, groups, cycles = avgpool_hw(x, lanes, registered)
    assert got == [int(v) for v in C.rdiv(x.reshape(c, -1).sum(-1), h * w)]
    assert addrs == list(range(groups))
    assert cycles == avgpool_cycles(words, groups, h * w, lanes, registered)
