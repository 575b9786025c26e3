"""The PixelUnpacker (hw/engine/pixel_unpack.py; docs/engine.md, "Host protocol v4") in amaranth.sim
against a pure-Python packing and bank layout written here: 1..8 lanes, 2..8-bit codes, channel counts
around the lane count (partial groups), stalls on the input stream, junk in the unused bits."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootshift.hw.engine.pixel_unpack import PixelUnpacker, packed_words, unpack_words
from rootshift.sw.errors import ConfigError


def py_pack(codes, abits, data_bits, junk=0):
    """The protocol's packing, independently: ``data_bits // abits`` codes per word, low first; ``junk``
    fills every bit no code uses (the padding and the top bits), which the engine must ignore."""
    per = data_bits // abits
    words = []
    for k in range(0, len(codes), per):
        chunk = codes[k:k + per]
        used = (1 << (abits * len(chunk))) - 1
        words.append(sum(v << (abits * i) for i, v in enumerate(chunk)) | (junk & ((1 << data_bits) - 1) & ~used))
    return words


def py_banks(img, lanes, abits):
    """The code-bank words of an image ``img[p][c]``: per position ``ceil(C / lanes)`` words, lane
    ``c % lanes`` of word ``c // lanes``, unused lanes 0."""
    out = []
    for px in img:
        for g in range(-(-len(px) // lanes)):
            out.append(sum(v << (abits * j) for j, v in enumerate(px[g * lanes:(g + 1) * lanes])))
    return out


def run_unpacker(dut, images, valid_p, rng):
    """Feed each image's words (``valid`` on with probability ``valid_p``); returns per image the writes
    ``{addr: data}``, the words taken, the cycles from the first word offered to ``done``, ``done`` count."""
    res = []

    async def bench(ctx):
        for words in images:
            writes, k, cyc, dones = {}, 0, 0, 0
            while True:
                v = k < len(words) and rng.random() < valid_p
                ctx.set(dut.i_stream.valid, v)
                ctx.set(dut.i_stream.payload, words[k] if k < len(words) else 0)
                await ctx.delay(1e-9)
                if ctx.get(dut.w_en):
                    assert ctx.get(dut.w_addr) not in writes, "a bank word written twice"
                    writes[ctx.get(dut.w_addr)] = ctx.get(dut.w_data)
                done = ctx.get(dut.done)
                dones += done
                k += v and ctx.get(dut.i_stream.ready)
                await ctx.tick()
                cyc += 1
                if done:
                    break
                assert cyc < 50 * (len(words) + 1) * dut.per, "the unpacker hangs"
            ctx.set(dut.i_stream.valid, 0)
            for _ in range(3):          # idle after the image: nothing written, ready for the next word
                assert not ctx.get(dut.w_en) and ctx.get(dut.i_stream.ready)
                await ctx.tick()
            res.append((writes, k, cyc, dones))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return res


@st.composite
def shapes(draw):
    cols = draw(st.sampled_from([1, 2, 3, 4, 8]))
    abits = draw(st.sampled_from([2, 3, 4, 8]))
    c = draw(st.sampled_from(sorted({v for v in (1, cols - 1, cols, cols + 1, 2 * cols + 1) if v >= 1})))
    return cols, abits, c, draw(st.integers(1, 6)), draw(st.integers(0, 2 ** 32 - 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes(), st.sampled_from([1.0, 0.6, 0.25]))
def test_unpacker_writes_the_banks_of_packed_codes(shape, valid_p):
    cols, abits, c, hw, seed = shape
    rng = np.random.default_rng(seed)
    data_bits = max(32, cols * abits)
    dut = PixelUnpacker(data_bits, abits, cols, c, hw)
    imgs = [rng.integers(0, 1 << abits, (hw, c)).tolist() for _ in range(2)]
    # image 0 with zero padding (as the driver sends it), image 1 with junk in every unused bit
    words = [py_pack(sum(imgs[0], []), abits, data_bits), py_pack(sum(imgs[1], []), abits, data_bits, junk=-1)]
    assert [len(w) for w in words] == [packed_words(hw * c, abits, data_bits)] * 2 == [dut.words] * 2
    for img, w, (writes, taken, cyc, dones) in zip(imgs, words, run_unpacker(dut, words, valid_p, rng)):
        exp = py_banks(img, cols, abits)
        assert writes == dict(enumerate(exp)) and taken == len(w) and dones == 1
        assert unpack_words(w, abits, data_bits, cols, c, hw) == exp      # the device model's unpacking
        if valid_p == 1.0:
            assert cyc == hw * c             # one code per cycle, no bubble between words


def test_unpacker_refuses_bad_parameters():
    with pytest.raises(ConfigError, match="Channel count must be a positive integer, not 0"):
        PixelUnpacker(32, 8, 4, 0, 64)
    with pytest.raises(ConfigError, match="Code width 40 exceeds the stream width 32"):
        PixelUnpacker(32, 40, 1, 1, 1)
    with pytest.raises(ConfigError, match="Lane count must be a positive integer, not True"):
        PixelUnpacker(32, 8, True, 1, 1)
