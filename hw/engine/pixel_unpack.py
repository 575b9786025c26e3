"""PixelUnpacker: host protocol v4's packed ``INFER`` pixel codes into code-bank words (docs/engine.md,
"Host protocol v4").

v3 sent one stream word per code-bank word (one position's channel group), ``data_bits`` wide however
few codes it held: a 1-channel 8-bit image cost 4 bytes per pixel on the board's link (8 at 8x8). v4
packs the codes densely, so the link carries about one byte per 8-bit pixel, and this unit restores the
banks' layout at one code per cycle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw.errors import ConfigError


def codes_per_word(data_bits, abits):
    """Codes one ``data_bits``-bit stream word carries: ``data_bits // abits`` (bits above them unused)."""
    return data_bits // abits


def packed_words(codes, abits, data_bits):
    """Stream words of an ``INFER`` payload of ``codes`` codes: ``ceil(codes / (data_bits // abits))``.
    The one place this count is computed (``PortConfig.pix_words``, which the driver, the device model
    and the co-simulations read)."""
    per = codes_per_word(data_bits, abits)
    return -(-codes // per)


def unpack_tail(codes, abits, data_bits):
    """Cycles from the edge that takes the last word of an ``INFER`` payload to its last code (the image's
    start): the codes of the last word after its first, ``(codes - 1) % per``."""
    return (codes - 1) % codes_per_word(data_bits, abits)


def pack_codes(codes, abits, data_bits):
    """The ``INFER`` payload: ``codes`` (a flat sequence in (y, x, c) order, c fastest), ``data_bits //
    abits`` per word, code ``i`` of a word at bits ``[i*abits +: abits]``, the last word zero-padded."""
    per = codes_per_word(data_bits, abits)
    codes = [int(v) for v in codes]
    return [sum(v << (abits * i) for i, v in enumerate(codes[k:k + per])) for k in range(0, len(codes), per)]


def pack_image(codes, abits, data_bits):
    """The ``INFER`` payload of one image whose codes are a (C, H, W) array: :func:`pack_codes` of them in
    (y, x, c) order (the host driver's and the Amaranth testbench's one way to lay an image out)."""
    import numpy as np

    return pack_codes(np.asarray(codes).transpose(1, 2, 0).reshape(-1), abits, data_bits)


def unpack_words(words, abits, data_bits, lanes, channels, positions):
    """The inverse, as the :class:`PixelUnpacker` writes it: the code-bank words (position-major,
    ``ceil(channels / lanes)`` per position, lane ``c % lanes`` of word ``c // lanes``, unused lanes 0).
    Bits past the last code (the last word's padding, a word's bits above ``per * abits``) are ignored."""
    per, mask = codes_per_word(data_bits, abits), (1 << abits) - 1
    codes = [(int(words[i // per]) >> (abits * (i % per))) & mask for i in range(channels * positions)]
    groups = -(-channels // lanes)
    out = []
    for p in range(positions):
        px = codes[p * channels:(p + 1) * channels]
        out += [sum(v << (abits * j) for j, v in enumerate(px[g * lanes:(g + 1) * lanes])) for g in range(groups)]
    return out


class PixelUnpacker(wiring.Component):
    """Takes the ``INFER`` payload's packed codes (``channels * positions`` of them, (y, x, c) order,
    ``per = data_bits // abits`` per stream word, low code first) one per cycle and writes the code-bank
    word of each channel group when its last lane (``lanes - 1``, or channel ``channels - 1``) arrives:
    word ``p * groups + g`` (``groups = ceil(channels / lanes)``), lane ``c % lanes``, unused lanes 0.

    One code per cycle, no bubble: the first code of a word is taken straight from the stream in the
    cycle the word is accepted; the rest are shifted out of a register while ``i_stream.ready`` is 0. So
    ``channels * positions`` cycles with a stream that is always valid. Bits past the last code are
    ignored (the last word's padding and, where ``abits`` does not divide ``data_bits``, each word's top
    bits). After the last code (``done``) the unit is back at code 0 for the next image.

    Members
    -------
    i_stream : In(stream.Signature(data_bits))   -- the packed words
    w_addr : Out(range(max(2, positions * groups)))  -- the bank word, relative to the tensor's first
    w_data : Out(lanes * abits)
    w_en : Out(1)
    done : Out(1)    -- the cycle of the last code (and of the last word's write)
    """

    def __init__(self, data_bits, abits, lanes, channels, positions):
        for name, v in (("Stream width", data_bits), ("Code width", abits), ("Lane count", lanes),
                        ("Channel count", channels), ("Position count", positions)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, not {v!r}")
        if abits > data_bits:
            raise ConfigError(f"Code width {abits} exceeds the stream width {data_bits}: no code fits a word")
        self.data_bits, self.abits, self.lanes = data_bits, abits, lanes
        self.channels, self.positions = channels, positions
        self.per = codes_per_word(data_bits, abits)
        self.groups = -(-channels // lanes)
        self.bank_words = positions * self.groups
        self.words = packed_words(channels * positions, abits, data_bits)
        super().__init__({"i_stream": In(stream.Signature(data_bits)),
                          "w_addr": Out(range(max(2, self.bank_words))), "w_data": Out(lanes * abits),
                          "w_en": Out(1), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        ab, L, per = self.abits, self.lanes, self.per
        ist = self.i_stream
        held = Signal()                                       # a word whose codes 1.. are not all used
        rest = Signal(max(1, self.data_bits - ab))            # its unused codes, the next one lowest
        i = Signal(range(max(2, per)))                        # the next held code's index in its word
        j = Signal(range(max(2, L)))
        g = Signal(range(max(2, self.groups)))
        acc = [Signal(ab, name=f"acc{k}") for k in range(L - 1)]   # lanes 0 .. j-1 of the group so far
        addr = self.w_addr
        code = Signal(ab)
        m.d.comb += [ist.ready.eq(~held), code.eq(Mux(held, rest[:ab], ist.payload[:ab]))]
        step = held | ist.valid
        group_end = (j == L - 1) | ((g == self.groups - 1) & (j == (self.channels - 1) % L))
        last = group_end & (addr == self.bank_words - 1) & (g == self.groups - 1)
        # the bank word: the lanes gathered so far, this code in lane j, the lanes above j still 0
        m.d.comb += self.w_data.eq(Cat(*[Mux(j == k, code, acc[k]) for k in range(L - 1)],
                                       Mux(j == L - 1, code, 0)))
        with m.If(step):
            # the stream word
            with m.If(held):
                m.d.sync += [rest.eq(rest >> ab), i.eq(i + 1)]
                with m.If((i == per - 1) | last):
                    m.d.sync += held.eq(0)
            with m.Else():
                m.d.sync += [rest.eq(ist.payload[ab:]), i.eq(1), held.eq(~last if per > 1 else 0)]
            # the bank word
            with m.If(group_end):
                m.d.comb += self.w_en.eq(1)
                m.d.sync += [j.eq(0), addr.eq(addr + 1), g.eq(g + 1)] + [a.eq(0) for a in acc]
                with m.If(g == self.groups - 1):
                    m.d.sync += g.eq(0)
                with m.If(last):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += addr.eq(0)
            with m.Else():
                m.d.sync += j.eq(j + 1)
                for k, a in enumerate(acc):
                    with m.If(j == k):
                        m.d.sync += a.eq(code)
        return m
