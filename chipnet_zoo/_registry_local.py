"""The local-folder backend of :class:`~chipnet_zoo.registry.MaskRegistry`, and helpers on the bytes a
registry stores (safetensors headers, weights, the kept-channels plot). Only safetensors and JSON are read."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    EntryNotFoundError,
    InvalidKeyError,
    MaskFormatError,
    MaskMismatchError,
    RegistryError,
    RegistryNotFoundError,
)
from .registry import INDEX_FILE, dump_index, parse_index, verify_bytes

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
    """A registry in a local folder; writes are atomic and the index is updated under a file lock."""

    writes_card = False

    def __init__(self, root: Path, missing_ok: bool = False, lock_timeout: float = 120.0):
        self.root, self.missing_ok, self.lock_timeout = Path(root), missing_ok, lock_timeout

    def __str__(self) -> str:
        return str(self.root)

    def _file(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise InvalidKeyError(f"path {rel!r} escapes the registry folder {self.root}")
        return path

    def read_index(self) -> dict[str, RegistryEntry]:
        if not self.root.is_dir():
            if self.missing_ok:
                return {}
            raise RegistryNotFoundError(f"no mask registry at {self.root} (the folder does not exist)")
        index = self.root / INDEX_FILE
        return parse_index(index.read_bytes(), str(index)) if index.is_file() else {}

    def read_file(self, rel: str, sha256: str, size: int | None) -> bytes:
        path = self._file(rel)
        if not path.is_file():
            raise EntryNotFoundError(f"{rel} is listed in the index of {self.root} but the file is missing")
        return verify_bytes(path.read_bytes(), sha256, size, f"{path}")

    def existing_plots(self, paths: list[str]) -> set[str]:
        return {p for p in paths if (self.root / p).is_file()}

    def update(self, mutate: Mutator, message: str) -> None:
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(self.root / f".{INDEX_FILE}.lock"), timeout=self.lock_timeout):
                entries, files = mutate(self.read_index())
                for rel, data in files.items():
                    atomic_write(self._file(rel), data)
                atomic_write(self.root / INDEX_FILE, dump_index(entries))
        except Timeout:
            raise RegistryError(f"timed out after {self.lock_timeout:g} s waiting for the lock on {self.root}") from None


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
