"""Generator parameters, validated, with every width derived from the integer contract.

One :class:`ArrayParams` fixes a generated accelerator: weight and activation bits, base and PE
product mode, array size, the largest K it is sized for, and the exponent window. Accumulators are
sized by the contract's worst-case bound (``sw.contract.acc_bound``) for ``max_k``.
"""

from dataclasses import asdict, dataclass

from rootshift.sw import contract as C
from rootshift.sw.errors import ConfigError, check_bits
from rootshift.sw.numfmt import PowerFormat

PROTOCOL_VERSION = 2  # 2: LOAD_REQ carries B + 2^(S-1) (the rounding half folded into the bias)
PE_MODES = ("dual", "lut", "shift", "mult", "shift2")
OUT_BITS = 32        # fine outputs (contract: 32-bit saturated)
M_BITS = C.M_BITS    # requantization multipliers
BIAS_BITS = 64


def _positive(name, value, hi=None, lo=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name} must be an integer in {rng}, not {value!r}")
    return value


@dataclass(frozen=True)
class ArrayParams:
    wbits: int = 4
    abits: int = 8
    base: str = "sqrt2"
    pe: str = "dual"
    rows: int = 8
    cols: int = 8
    max_k: int = 1152
    max_shift: int = 7

    def __post_init__(self):
        check_bits("wbits", self.wbits)
        check_bits("abits", self.abits)
        if self.pe not in PE_MODES:
            raise ConfigError(f"pe must be one of {', '.join(PE_MODES)}, not {self.pe!r}")
        if self.base not in ("sqrt2", "2"):
            raise ConfigError(f"base must be 'sqrt2' or '2', not {self.base!r}")
        if self.pe in ("dual", "lut") and self.base != "sqrt2":
            raise ConfigError(f"pe {self.pe} needs base sqrt2 (base 2 has no odd exponents: use --pe shift)")
        if self.pe in ("shift", "shift2") and self.base != "2":
            raise ConfigError(f"pe {self.pe} needs base 2 (base sqrt2 needs --pe dual or --pe lut)")
        _positive("rows", self.rows, 64)
        # one column or K = 1 would give the column counter / buffer addresses zero width, which no
        # Verilog tool accepts (Verilator: ASCRANGE); refuse them here rather than deep in a simulator
        _positive("cols", self.cols, 64, lo=2)
        _positive("max_k", self.max_k, 65535, lo=2)
        _positive("max_shift", self.max_shift, 30)
        if self.pe != "mult" and self.shift_max == 0:
            raise ConfigError(f"wbits {self.wbits} leaves pe {self.pe} no exponent window (E = 0: every weight is +-1, "
                              f"nothing to shift); use wbits >= 3")
        if self.acc_bits > C.acc_max_bits(self.pe):
            raise ConfigError(f"max_k {self.max_k} with abits {self.abits} and max_shift {self.max_shift} needs "
                              f"{self.acc_bits}-bit accumulators; the contract allows {C.acc_max_bits(self.pe)} for pe {self.pe}")

    @property
    def format(self):
        """The weight code format of this hardware (None for the multiplier PE)."""
        if self.pe == "mult":
            return None
        window = 2 * self.max_shift + 1 if self.base == "sqrt2" else self.max_shift
        if self.pe == "shift2":  # the method's shift weights: +-2^-e for every field, no zero code
            return PowerFormat(self.wbits, self.base, min(2 ** (self.wbits - 1) - 1, window), False)
        return PowerFormat(self.wbits, self.base, min(2 ** (self.wbits - 1) - 2, window), True)

    @property
    def act_exponent(self):
        """shift2: ``E_a``, the activation exponent window: codes ``c = 1 .. 2^abits - 1`` are ``2^-(c-1)``
        (docs/arithmetic.md, "Shift activations"); None for the other modes (linear activation codes)."""
        return 2 ** self.abits - 2 if self.pe == "shift2" else None

    @property
    def shift_max(self):
        """E: the largest left shift a PE applies (the decoder outputs ``E - k``)."""
        return self.format.max_shift if self.format else 0

    @property
    def n_acc(self):
        return 2 if self.pe == "dual" else 1

    @property
    def acc_bits(self):
        return C.acc_width(C.acc_bound(self.pe, self.max_k, self.abits, self.format, self.wbits, self.act_exponent))

    @property
    def data_bits(self):
        """Width of the input stream payload: one k-slice of all rows' activations or all columns' codes."""
        return max(32, self.rows * self.abits, self.cols * self.wbits)

    @property
    def k_bits(self):
        return max(1, (self.max_k - 1).bit_length())

    def manifest(self):
        fmt = self.format
        return {"params": asdict(self), "protocol_version": PROTOCOL_VERSION, "acc_bits": self.acc_bits,
                "n_acc": self.n_acc, "shift_max": self.shift_max, "data_bits": self.data_bits,
                "out_bits": OUT_BITS, "m_bits": M_BITS, "bias_bits": BIAS_BITS,
                "max_exponent": fmt.max_exponent if fmt else None, "act_exponent": self.act_exponent,
                "buffers": {"act": {"depth": self.max_k, "width": self.rows * self.abits},
                            "wgt": {"depth": self.max_k, "width": self.cols * self.wbits},
                            "out": {"depth": self.rows * self.cols, "width": OUT_BITS},
                            "req": {"depth": self.cols, "width": self.n_acc * M_BITS + BIAS_BITS}}}
