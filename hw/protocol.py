"""The host <-> accelerator stream protocol (docs/hardware.md, "Protocol"). Shared by the co-simulation
driver and a board link: both only ever speak these words."""

from .params import PROTOCOL_VERSION

OP_CLEAR = 0x0      # clear the error flags and the cycle counters
OP_CONFIG = 0x1     # arg[15:0] = K, arg[21:16] = S, arg[22] = relu
OP_LOAD_ACT = 0x2   # arg[15:0] = n; n words follow, word k = a[r][k] at bits [r*abits +: abits]
OP_LOAD_WGT = 0x3   # arg[15:0] = n; n words follow, word k = w[c][k] at bits [c*wbits +: wbits]
OP_LOAD_REQ = 0x4   # arg[15:0] = n columns; per column: M0, (M1 if dual), B'[31:0], B'[63:32], B' = B + 2^(S-1)
OP_START = 0x5      # run one tile: K MAC cycles, then requantize every PE into the output buffer
OP_READ = 0x6       # arg[15:0] = n; the device sends out[0..n-1] (32-bit, index r*cols + c)
OP_STATUS = 0x7     # the device sends 3 words: magic|version|flags, total cycles, busy cycles

MAGIC = 0x5253      # "RS"
FLAG_BAD_OPCODE = 1   # an unknown opcode (ignored)
FLAG_BAD_ARG = 2      # an argument out of range, or START before a good CONFIG (ignored)
FLAG_NOT_LOADED = 4   # START before, since the last CONFIG, K activation words, K weight words and a LOAD_REQ (ignored)
FLAG_STALE_READ = 8   # READ before a START since the last CONFIG (still answered: the buffer as it is)
FLAG_NAMES = {FLAG_BAD_OPCODE: "unknown opcode", FLAG_BAD_ARG: "argument out of range or START before CONFIG",
              FLAG_NOT_LOADED: "START before K activation and weight words and LOAD_REQ since CONFIG",
              FLAG_STALE_READ: "READ before a START since CONFIG"}


def header(op, arg=0):
    if not 0 <= arg < 1 << 28:
        raise ValueError(f"command argument {arg} does not fit 28 bits")
    return (op << 28) | arg


def config(k, shift, relu):
    if not 1 <= shift <= 63:
        raise ValueError(f"requantization shift {shift} outside 1..63")
    return header(OP_CONFIG, (k & 0xFFFF) | (shift << 16) | (int(bool(relu)) << 22))


def status_word0(flags=0):
    return (MAGIC << 16) | (PROTOCOL_VERSION << 8) | flags


def slice_words(mat, lanes, bits, fill=0):
    """k-slice words of a (n, K) code matrix across ``lanes`` lanes: word k holds ``mat[i][k]`` at bits
    ``[i*bits +: bits]`` (two's complement for signed codes); lanes past n hold ``fill``."""
    import numpy as np

    mat = np.asarray(mat, np.int64)
    n, k = mat.shape
    full = np.full((lanes, k), fill, np.int64)
    full[:n] = mat & ((1 << bits) - 1)
    return [sum(int(full[i, j]) << (i * bits) for i in range(lanes)) for j in range(k)]


def req_words(mults, bias, lanes, shift):
    """``OP_LOAD_REQ`` data for ``lanes`` columns: per column M0, (M1), B'[31:0], B'[63:32] with the rounding
    half folded in, ``B' = B + 2^(S-1)`` (:func:`hw.requantizer.fold_rounding`); unused columns 0.
    ``bias`` is the contract's ``B``; a ``B'`` outside signed 64 bits raises ``ValueError``."""
    from .requantizer import fold_rounding

    words = []
    for j in range(lanes):
        ms = [int(m[j]) if j < len(bias) else 0 for m in mults]
        b = fold_rounding(bias[j], shift) if j < len(bias) else 0
        words += [x & 0xFFFFFFFF for x in ms] + [b & 0xFFFFFFFF, (b >> 32) & 0xFFFFFFFF]
    return words


def tile_words(params, a_tile, w_tile, mults, bias, shift, relu):
    """Every input-stream word for one tile, then ``OP_READ``. Host-side encoding, no hardware here.

    ``a_tile`` (R, K) activation codes with ``R <= rows``; ``w_tile`` (Ccols, K) weight codes in the
    hardware's format (two's complement for the multiplier PE) with ``Ccols <= cols``; ``mults`` list of
    ``n_acc`` arrays (Ccols,) of 32-bit signed multipliers; ``bias`` (Ccols,) 64-bit signed. Unused
    rows and columns are loaded with zero codes / zero constants.
    """
    import numpy as np

    p = params
    a_tile, w_tile = np.asarray(a_tile, np.int64), np.asarray(w_tile, np.int64)
    r, k = a_tile.shape
    c = w_tile.shape[0]
    if not (1 <= r <= p.rows and 1 <= c <= p.cols and 1 <= k <= p.max_k and w_tile.shape[1] == k):
        raise ValueError(f"tile {r}x{c} with K={k} does not fit a {p.rows}x{p.cols} array with max_k={p.max_k}")
    zero_code = (p.format.zero_field or 0) if p.format else 0  # shift2 weights have no zero code
    words = [config(k, shift, relu), header(OP_LOAD_ACT, k)] + slice_words(a_tile, p.rows, p.abits)
    words += [header(OP_LOAD_WGT, k)] + slice_words(w_tile, p.cols, p.wbits, zero_code)
    words += [header(OP_LOAD_REQ, p.cols)] + req_words(mults, bias, p.cols, shift)
    words += [header(OP_START), header(OP_READ, p.rows * p.cols)]
    return words


def unpack_outputs(params, words, r, c):
    """The (r, c) block of a tile's ``OP_READ`` answer as signed 32-bit integers."""
    import numpy as np

    v = np.array([w - (1 << 32) if w & (1 << 31) else w for w in words], np.int64)
    return v.reshape(params.rows, params.cols)[:r, :c]
