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


class PathError(RootshiftError, OSError):
    """An OS error on a named file (read-only or full disk, a directory where a file belongs, ...).

    Still an ``OSError`` (``errno``, ``filename``) for callers that handle those, but its message is one
    line that names the path and what the OS said, e.g. ``cannot write runs/x/checkpoint.pt: No space left
    on device``.
    """

    def __init__(self, action, path, err):
        OSError.__init__(self, getattr(err, "errno", None), getattr(err, "strerror", None) or str(err), str(path))
        self.message = f"cannot {action} {path}: {getattr(err, 'strerror', None) or err}"

    def __str__(self):
        return self.message


def check_bits(name, bits, lo=2, hi=8):
    """Validate a bit-width the way every layer of the stack needs it: an int in [lo, hi]."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, not {bits!r}")
    return bits
