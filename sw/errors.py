"""One exception type for every user-facing failure, so the CLI can print it without a traceback."""


class RootshiftError(Exception):
    """A problem with the user's input (arguments, files, configuration). The message names it."""


class ConfigError(RootshiftError, ValueError):
    """An argument or configuration value is outside what is supported."""


class FormatError(RootshiftError):
    """A file is corrupt, truncated, of another version or inconsistent."""

    def __init__(self, message, *, exit_code=3):
        super().__init__(message)
        self.exit_code = exit_code


def check_bits(name, bits, lo=2, hi=8):
    """Validate a bit-width the way every layer of the stack needs it: an int in [lo, hi]."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {bits!r}")
    return bits
