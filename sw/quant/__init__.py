"""Quantizers. Each module carries its math in its docstring; docs/quantization.md collects it."""

from .asq import ASQActivation, ASQAdapter, check_adapters
from .levels import APoTQuantizer, PowerQuantizer, apot_magnitudes, default_max_exponent
from .lsq import InputCodes, LSQActivation, LSQWeight
from .shift import ShiftQuantizer, anneal

WEIGHT_SCHEMES = ("post", "pot", "apot", "lsq", "shift", "fp")
ACT_SCHEMES = ("asq", "lsq", "shift", "fp")

__all__ = [
    "ACT_SCHEMES", "WEIGHT_SCHEMES", "APoTQuantizer", "ASQActivation", "ASQAdapter", "InputCodes",
    "LSQActivation", "LSQWeight", "PowerQuantizer", "ShiftQuantizer", "anneal", "apot_magnitudes",
    "check_adapters", "default_max_exponent",
]
