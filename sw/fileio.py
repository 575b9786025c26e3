"""Atomic file writes: a file is either absent, or complete. Never half-written.

An OS failure (full or read-only disk, a directory in the way) raises :class:`~.errors.PathError`,
one line naming the *target* path, never the hidden temporary file's name.
"""

import io
import json
import os
import tempfile
from pathlib import Path

from .errors import PathError


def atomic_write_bytes(path, data: bytes):
    path = Path(path)
    try:
        for parent in (path.parent, *path.parent.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise NotADirectoryError(20, f"{parent} is not a directory", str(parent))
                break
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise PathError("write", path, e) from e
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise PathError("write", path, e) from e
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj):
    """Strict JSON: a NaN or infinity is refused (``ValueError``) instead of writing invalid ``NaN``."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_torch_save(path, obj):
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
