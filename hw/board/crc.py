"""CRC-16/CCITT-FALSE of one byte as an Amaranth expression (the same function as framing.crc16)."""

from functools import reduce

from amaranth.hdl import Cat, Const, Value

from .framing import crc16


def _taps():
    """CRC update is linear over GF(2): output bit i is the XOR of the input bits (16 crc bits, then
    8 byte bits) listed here, found by feeding framing.crc16 one input bit at a time."""
    base = crc16(b"\0", crc=0)
    taps = [[] for _ in range(16)]
    for j in range(24):
        crc, byte = (1 << j, 0) if j < 16 else (0, 1 << (j - 16))
        out = crc16(bytes((byte,)), crc=crc) ^ base
        for i in range(16):
            if out >> i & 1:
                taps[i].append(j)
    return taps


_TAPS = _taps()


def crc16_next(crc, byte):
    """``crc`` (16-bit value) updated with ``byte`` (8-bit value): one XOR of a few input bits per output
    bit (an unrolled shift register would duplicate its input at every step)."""
    bits = Cat(Value.cast(crc)[:16], Value.cast(byte)[:8])
    return Cat(*(reduce(lambda a, b: a ^ b, (bits[j] for j in t), Const(0, 1)) for t in _TAPS))
