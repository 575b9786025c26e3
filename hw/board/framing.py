"""The link's message format, shared by the gateware (deframer, framer) and the host (sim/transport.py).

Request (host -> device)::

    0xA5 | n_words (u16 LE) | n_out (u16 LE) | n_words words of word_bytes bytes (LE) | CRC-16 (u16 LE)

Answer (device -> host)::

    0x5A | status (u8) | n_words (u16 LE) | n_words 32-bit words (LE) | CRC-16 (u16 LE)

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) over every byte after the sync
byte. A request with ``n_words = 0`` is a *reset*: the device resets the engine and its buffers and
answers OK with no words; the host sends one after any error, because a request split over several
frames may have lost a frame after the engine had taken the first ones. ``status`` is :data:`OK` or one of the error codes below, which the device sends (with no words)
instead of an answer. docs/boards.md explains why a corrupted or dropped byte always ends in one of them.
"""

SYNC_REQUEST = 0xA5
SYNC_ANSWER = 0x5A
REQUEST_HEADER = 5          # sync, n_words, n_out
ANSWER_HEADER = 4           # sync, status, n_words
CRC_BYTES = 2
ANSWER_WORD_BYTES = 4

CRC_POLY = 0x1021
CRC_INIT = 0xFFFF

OK = 0
ERR_BAD_CRC = 1        # the request's CRC did not match: a byte was corrupted
ERR_SHORT = 2          # the line went quiet in the middle of a request: a byte was dropped
ERR_BAD_SYNC = 3       # a byte arrived outside a request: a sync byte was corrupted or dropped, or junk
ERR_TOO_LONG = 4       # n_words was more than the device buffers
ERR_LINE = 5           # a UART stop bit was low or a byte was overrun

ERROR_NAMES = {
    ERR_BAD_CRC: "bad CRC (a byte was corrupted on the way to the board)",
    ERR_SHORT: "short frame (the line went quiet mid-request: a byte was dropped)",
    ERR_BAD_SYNC: "bad sync (a byte arrived outside a request: a corrupted or dropped sync byte)",
    ERR_TOO_LONG: "bad length (a request frame longer than the device's buffer)",
    ERR_LINE: "UART line error (a low stop bit or an overrun: wrong baud rate or noise)",
}


def word_bytes(data_bits):
    """Bytes per request word for an engine whose input stream is ``data_bits`` wide."""
    return (data_bits + 7) // 8


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE; ``crc16(b"123456789") == 0x29B1``."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _u16(v):
    return bytes((v & 0xFF, v >> 8))


def encode_request(words, n_out, wbytes):
    if not 1 <= len(words) < 1 << 16 or not 0 <= n_out < 1 << 16:
        raise ValueError(f"a request frame holds 1..65535 words and answers 0..65535, not {len(words)} / {n_out}")
    body = _u16(len(words)) + _u16(n_out) + b"".join(int(w).to_bytes(wbytes, "little") for w in words)
    return bytes((SYNC_REQUEST,)) + body + _u16(crc16(body))


def encode_reset():
    """The reset request: no words, no answer words."""
    body = _u16(0) + _u16(0)
    return bytes((SYNC_REQUEST,)) + body + _u16(crc16(body))


def encode_answer(status, words=()):
    body = bytes((status,)) + _u16(len(words)) + b"".join(int(w).to_bytes(ANSWER_WORD_BYTES, "little") for w in words)
    return bytes((SYNC_ANSWER,)) + body + _u16(crc16(body))
