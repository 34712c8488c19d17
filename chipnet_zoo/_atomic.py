"""The one atomic file writer of the package: a unique temp file in the target's folder, fsync, ``os.replace``.

A reader (or a kill at any instant) sees the old file or the new one, each complete; a failed write leaves
no temp file behind. Every file chipnet-zoo writes (masks, registry files and indexes, run folders,
checkpoints, caches, cards) goes through :func:`atomic_write`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably; returns the path.

    Example:
        >>> import tempfile, pathlib
        >>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "sub" / "a.txt", b"hi")
        >>> p.read_bytes()
        b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # disk full or a kill: no orphan temp file
        raise
    return path
