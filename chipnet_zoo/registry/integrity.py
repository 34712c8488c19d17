"""Content checks of registry files: every file is read against the sha256 and size the index lists."""

from __future__ import annotations

import hashlib

from ..errors import IntegrityError


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, *, sha256: str, size: int | None, what: str) -> bytes:
    """Return ``data`` if it matches the index, else raise :class:`IntegrityError` (``path`` = ``what``)."""
    actual = sha256_hex(data)
    if actual != sha256 or (size is not None and len(data) != size):
        raise IntegrityError(
            f"{what}: sha256 {actual} ({len(data)} bytes) does not match the index ({sha256}, {size} bytes); "
            "the file was changed or corrupted after it was published - refusing it",
            path=what, expected=sha256, actual=actual)
    return data
