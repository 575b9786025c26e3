"""The power-of-two weight code format shared by training, the golden model and the hardware.

A b-bit code is a word ``s | x``: the sign bit ``s`` on top and a (b-1)-bit exponent field ``x``.
With ``has_zero`` the all-ones field encodes zero (both signs), every other field value ``x = e`` is the
magnitude ``base**-e``. Without it (shift weights), every field value is a magnitude. Exponents above
``max_exponent`` (the per-layer window) are never produced and are rejected as out of range.
Base ``sqrt2`` splits ``e`` into a shift ``e // 2`` and an odd flag ``e % 2`` (times 1/sqrt 2).
"""

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, check_bits


@dataclass(frozen=True)
class PowerFormat:
    """Members: ``bits``, ``base`` (``"sqrt2"`` or ``"2"``), ``max_exponent``, ``has_zero``."""

    bits: int
    base: str = "sqrt2"
    max_exponent: int | None = None
    has_zero: bool = True

    def __post_init__(self):
        check_bits("weight bits", self.bits)
        if self.base not in ("sqrt2", "2"):
            raise ConfigError(f"base must be 'sqrt2' or '2', not {self.base!r}")
        field_max = 2 ** (self.bits - 1) - (2 if self.has_zero else 1)
        if self.max_exponent is None:
            object.__setattr__(self, "max_exponent", field_max)
        if not isinstance(self.max_exponent, int) or not 0 <= self.max_exponent <= field_max:
            raise ConfigError(f"max_exponent must be an integer in 0..{field_max} for {self.bits}-bit codes, "
                              f"not {self.max_exponent!r}")

    @property
    def zero_field(self):
        return 2 ** (self.bits - 1) - 1 if self.has_zero else None

    @property
    def max_shift(self):
        """Largest right shift ``E`` a decoded code asks for (``e // 2`` for sqrt2, ``e`` for base 2)."""
        return self.max_exponent // 2 if self.base == "sqrt2" else self.max_exponent

    def decode(self, codes):
        """codes (int array) -> (sign in {+1,-1}, zero mask, shift k, odd flag), all int64 arrays."""
        c = np.asarray(codes, dtype=np.int64)
        self.validate(c)
        field = c & (2 ** (self.bits - 1) - 1)
        sign = np.where((c >> (self.bits - 1)) & 1, -1, 1)
        zero = field == self.zero_field if self.has_zero else np.zeros(c.shape, bool)
        e = np.where(zero, 0, field)
        if self.base == "sqrt2":
            return sign, zero, e >> 1, e & 1
        return sign, zero, e, np.zeros_like(e)

    def value(self, codes):
        """Real magnitude with sign (float64), for tests and documentation only."""
        sign, zero, k, odd = self.decode(codes)
        v = sign * np.power(2.0, -k.astype(float)) * np.where(odd == 1, 2 ** -0.5, 1.0)
        return np.where(zero, 0.0, v)

    def validate(self, codes, where="codes"):
        c = np.asarray(codes, dtype=np.int64)
        if c.size == 0:
            return
        if c.min() < 0 or c.max() >= 2**self.bits:
            bad = c[(c < 0) | (c >= 2**self.bits)][0]
            raise ConfigError(f"{where}: code {bad} is out of range for {self.bits}-bit codes")
        field = c & (2 ** (self.bits - 1) - 1)
        bad = (field > self.max_exponent) & ((field != self.zero_field) if self.has_zero else True)
        if bad.any():
            raise ConfigError(f"{where}: exponent {int(field[bad][0])} is outside the window 0..{self.max_exponent}")

    def all_codes(self):
        """Every legal code, in increasing code order."""
        c = np.arange(2**self.bits)
        field = c & (2 ** (self.bits - 1) - 1)
        ok = (field <= self.max_exponent) | ((field == self.zero_field) if self.has_zero else False)
        return c[ok]
