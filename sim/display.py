"""How numbers are shown to people, in one place: the CLI's tables and the HTML report use the same
rules, so a figure reads the same in the terminal and in the report."""

import math

RATE_KEYS = ("acc", "agreement", "utilization")


def value_text(v, key=""):
    """Rates (a key naming accuracy, agreement or utilization, value in [0, 1]) as percentages with 2
    decimals; other floats to 4 significant digits; large integers with thousands separators."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if any(w in key for w in RATE_KEYS) and 0 <= v <= 1:
            return f"{100 * v:.2f} %"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 1_000 else str(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(value_text(x) for x in v)
    return str(v)
