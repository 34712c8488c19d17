"""The one atomic file writer of the package: a unique temp file in the target's folder, fsync, ``os.replace``.

A reader (or a kill at any instant) sees the old file or the new one, each complete; a failed write leaves
no temp file behind. Every file chipnet-zoo writes (masks, registry files and indexes, run folders,
checkpoints, caches, cards) goes through :func:`atomic_write`, or through :func:`atomic_path` when a library
writes the file itself (the ONNX / TorchScript / torch.export writers).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    current = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(current)
    return current


#: The mode an ``open()``-created file gets (``mkstemp`` creates 0600 files; published files must be readable).
_FILE_MODE = 0o666 & ~_umask()


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
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # disk full or a kill: no orphan temp file
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`atomic_write` of ``obj`` as indented JSON (NaN allowed, as Python writes it)."""
    return atomic_write(path, (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder for a writer that takes a file name; when the block succeeds
    the file is fsynced and renamed to ``path``; on any error it is removed.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "model.bin"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_bytes(b"weights")
        >>> target.read_bytes()
        b'weights'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
