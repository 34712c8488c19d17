"""The local-folder backend of :class:`~chipnet_zoo.registry.MaskRegistry`, and helpers on the bytes a
registry stores (safetensors headers, weights, the kept-channels plot). Only safetensors and JSON are read."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .errors import (
    EntryNotFoundError,
    IndexFormatError,
    IntegrityError,
    InvalidKeyError,
    MaskFormatError,
    MaskMismatchError,
    RegistryError,
    RegistryNotFoundError,
    RegistryWriteError,
)
from .registry import INDEX_FILE, dump_index, parse_index, sha256_hex, verify_bytes
from .validation import MAX_INDEX_BYTES

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .mask import Mask
    from .registry import Mutator, RegistryEntry

#: Largest safetensors header accepted (the format's own limit).
_MAX_HEADER = 100_000_000


# --- local folder backend --------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalBackend:
    """A registry in a local folder.

    Files are stored content-addressed next to their logical path (``masks/a/d/flops-0.25.<sha256>.safetensors``
    for ``masks/a/d/flops-0.25.safetensors``), so a push never modifies a file a reader may be reading. The
    atomic replacement of ``index.json`` is the single commit point; files no longer referenced are collected
    afterwards, under the same lock. A kill at any instant leaves the old or the new index, each complete.
    Folders written before content addressing (and the built-in zoo) keep files at their logical paths;
    those are still read.
    """

    writes_card = False
    #: Files of replaced entries are removed, so a reader holding an older index may have to re-read it.
    collects_garbage = True

    def __init__(self, root: Path, missing_ok: bool = False, lock_timeout: float = 120.0):
        self.root, self.missing_ok, self.lock_timeout = Path(root), missing_ok, lock_timeout

    def __str__(self) -> str:
        return str(self.root)

    def _file(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise InvalidKeyError(f"path {rel!r} escapes the registry folder {self.root}")
        return path

    def stored_path(self, rel: str, sha256: str) -> Path:
        """Where the file ``rel`` with content ``sha256`` is stored (content-addressed)."""
        p = PurePosixPath(rel)
        return self._file(str(p.with_name(f"{p.stem}.{sha256}{p.suffix}")))

    def read_index(self) -> dict[str, RegistryEntry]:
        if not self.root.is_dir():
            if self.root.exists():
                raise RegistryNotFoundError(f"the registry location {self.root} is not a folder")
            if self.missing_ok:
                return {}
            raise RegistryNotFoundError(f"no mask registry at {self.root} (the folder does not exist)")
        index = self.root / INDEX_FILE
        if not index.exists():
            return {}
        if not index.is_file():
            raise IndexFormatError(f"corrupt registry index {index}: it is not a regular file", where=str(index))
        try:
            if index.stat().st_size > MAX_INDEX_BYTES:  # refused before it is read
                raise IndexFormatError(f"corrupt registry index {index}: {index.stat().st_size} bytes, more than the "
                                       f"{MAX_INDEX_BYTES} accepted", where=str(index))
            data = index.read_bytes()
        except OSError as exc:
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(f"cannot read the registry index {index}: {exc.strerror or exc}") from None
        return parse_index(data, str(index))

    def read_file(self, rel: str, sha256: str, size: int | None) -> bytes:
        for path in (self.stored_path(rel, sha256), self._file(rel)):
            try:
                return verify_bytes(path.read_bytes(), sha256, size, f"{path}")
            except (FileNotFoundError, NotADirectoryError):
                continue
            except IsADirectoryError:
                raise IntegrityError(f"{path} is a folder, not the file the index of {self.root} lists") from None
        raise EntryNotFoundError(f"{rel} is listed in the index of {self.root} but the file is missing")

    def existing_plots(self, paths: list[str]) -> set[str]:
        return {p for p in paths if (self.root / p).is_file()}

    def update(self, mutate: Mutator, message: str) -> None:
        """Write the new files (content-addressed), then ``index.json`` (the commit), then collect garbage.
        A file-system error (disk full, ...) is a :class:`RegistryWriteError`; what was written is removed."""
        from filelock import FileLock, Timeout

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.root / f".{INDEX_FILE}.lock"), timeout=self.lock_timeout)
            with lock:
                entries, files = mutate(self.read_index())
                written: list[Path] = []
                try:
                    for rel, data in files.items():
                        target = self.stored_path(rel, sha256_hex(data))
                        if not (target.is_file() and sha256_hex(target.read_bytes()) == sha256_hex(data)):
                            atomic_write(target, data)
                            written.append(target)
                    atomic_write(self.root / INDEX_FILE, dump_index(entries))  # the commit point
                except BaseException:
                    for path in written:
                        path.unlink(missing_ok=True)
                    raise
                try:
                    self.collect_garbage(entries)
                except OSError:
                    pass  # published already; what is left is collected by the next push
        except Timeout:
            raise RegistryError(f"timed out after {self.lock_timeout:g} s waiting for the lock on {self.root}") from None
        except OSError as exc:
            if isinstance(exc, RegistryError):
                raise
            where = exc.filename or self.root
            raise RegistryWriteError(f"cannot write to the registry {self.root}: {exc.strerror or exc} ({where}); "
                                     "nothing was published", path=str(where)) from None

    def collect_garbage(self, entries: dict[str, RegistryEntry]) -> list[Path]:
        """Remove stored files no entry references and temp files of killed writers (call under the lock)."""
        keep: set[Path] = set()
        for e in entries.values():
            for rel, sha in ((e.path, e.sha256), *(((e.weights["path"], e.weights["sha256"]),) if e.weights else ())):
                stored = self.stored_path(rel, sha)
                keep.add(stored if stored.is_file() else self._file(rel))
        removed: list[Path] = []
        for top in ("masks", "weights"):
            base = self.root / top
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*"), reverse=True):
                try:
                    if path.is_dir():
                        if not any(path.iterdir()):
                            path.rmdir()
                    elif (path.suffix == ".tmp" or path.suffix == ".safetensors") and path.resolve() not in keep:
                        path.unlink()
                        removed.append(path)
                except OSError:
                    pass  # best effort: garbage never affects what readers see
        for path in self.root.glob(f".{INDEX_FILE}.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed


# --- helpers on mask and weights bytes -------------------------------------------------------------
def safetensors_header(data: bytes, what: str) -> dict[str, Any]:
    """The JSON header of a safetensors blob (no tensor is read); :class:`MaskFormatError` if malformed."""
    if len(data) < 8:
        raise MaskFormatError(f"{what} is not a safetensors file (too short)")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > min(_MAX_HEADER, len(data) - 8):
        raise MaskFormatError(f"{what} is not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MaskFormatError(f"{what} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise MaskFormatError(f"{what} is not a safetensors file (header is not an object)")
    return header


def weights_to_bytes(weights: Any) -> bytes:
    """Safetensors bytes from a path, bytes, an ``nn.Module`` or a state dict."""
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        data = path.read_bytes()
    elif isinstance(weights, (bytes, bytearray, memoryview)):
        data = bytes(weights)
    else:
        from safetensors.torch import save

        state = weights.state_dict() if hasattr(weights, "state_dict") else dict(weights)
        data = save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})
    safetensors_header(data, "weights")
    return data


def weights_kind(data: bytes, mask: Mask, expected: str = "auto") -> str:
    """``"slim"`` or ``"dense"``: whether the weights' group root layers have the kept or all channels
    (``expected`` other than ``"auto"`` must agree with the shapes)."""
    if expected not in ("auto", "slim", "dense"):
        raise ValueError(f"weights kind must be 'auto', 'slim' or 'dense', got {expected!r}")
    shapes = {k: v.get("shape") for k, v in safetensors_header(data, "weights").items() if k != "__metadata__"}
    votes: dict[str, str] = {}
    for group, keep in mask.keep.items():
        kept, total = int(keep.sum()), int(keep.numel())
        shape = shapes.get(f"{group}.weight")
        if not shape:
            continue
        if shape[0] not in (kept, total):
            raise MaskMismatchError(f"weights do not fit the mask: {group}.weight has {shape[0]} channels, the mask "
                                    f"keeps {kept} of {total}")
        if kept != total:
            votes[group] = "slim" if shape[0] == kept else "dense"
    kinds = set(votes.values())
    if len(kinds) > 1:
        raise MaskMismatchError(f"weights do not fit the mask: some groups are slimmed and others dense ({votes})")
    if kinds:
        kind = kinds.pop()
        if expected not in ("auto", kind):
            raise MaskMismatchError(f"weights were given as {expected} but their shapes are {kind}")
        return kind
    if all(bool(k.all()) for k in mask.keep.values()):
        return "slim" if expected == "auto" else expected  # nothing pruned: slim == dense
    if expected != "auto":
        return expected
    raise MaskMismatchError("cannot tell whether the weights are slimmed or dense (no group root layer found "
                            "in them); pass weights_as='slim' or 'dense'")


def check_weights_fit_arch(data: bytes, mask: Mask, kind: str) -> None:
    """Check the weights' tensor names and shapes against a fresh model of the mask's architecture
    (dense: equal shapes; slim: same names, no dimension larger). Skipped for architectures that
    ``create_model`` does not know (nothing to compare with)."""
    from .models import create_model, is_model

    meta = mask.metadata
    if not meta.get("num_classes") or not is_model(mask.arch):
        return
    in_chans = int((meta.get("input_size") or [3])[0])
    expected = {k: tuple(v.shape) for k, v in
                create_model(mask.arch, num_classes=int(meta["num_classes"]), in_chans=in_chans).state_dict().items()}
    got = {k: tuple(v.get("shape", ())) for k, v in safetensors_header(data, "weights").items() if k != "__metadata__"}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise MaskMismatchError(f"weights do not fit {mask.arch}: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, shape in expected.items():
        g = got[name]
        bad = g != shape if kind == "dense" else (len(g) != len(shape) or any(a > b for a, b in zip(g, shape)))
        if bad:
            raise MaskMismatchError(f"{kind} weights do not fit {mask.arch}: {name} has shape {g}, the dense model "
                                    f"{shape}")


def load_state_strict(model: nn.Module, state: dict[str, Any], what: str) -> None:
    """``model.load_state_dict(state)`` after checking keys and shapes, with a message naming the first mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise MaskMismatchError(f"{what} do not fit the model: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise MaskMismatchError(f"{what} do not fit the model: {name} has shape {tuple(state[name].shape)}, "
                                    f"the model expects {tuple(tensor.shape)}")
    model.load_state_dict(state, strict=True)


def kept_channels_png(mask: Mask, title: str = "") -> bytes:
    """A bar chart of kept / total channels per group, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    names = list(mask.keep)
    kept = [int(v.sum()) for v in mask.keep.values()]
    total = [int(v.numel()) for v in mask.keep.values()]
    fig = Figure(figsize=(max(4.0, 0.22 * len(names) + 1.5), 3.0), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), total, color="#d0d0d0", label="total")
    ax.bar(range(len(names)), kept, color="#1f77b4", label="kept")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("channels")
    ax.set_title(title or "kept channels per group", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
