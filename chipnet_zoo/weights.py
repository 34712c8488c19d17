"""Weights as safetensors bytes: reading their header, telling slimmed from dense weights, checking them
against a mask's architecture, and THE strict loader (:func:`load_weights_into`) that runs and the registry
share. Only safetensors is ever read; nothing here can run code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MaskFormatError, MaskMismatchError, WeightsMismatchError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from .mask import Mask

#: Largest safetensors header accepted (the format's own limit).
_MAX_HEADER = 100_000_000


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


def weights_kind(data: bytes, mask: Mask, *, expected: str = "auto") -> str:
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
                                    f"keeps {kept} of {total}", group=group)
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


def check_weights_fit_arch(data: bytes, mask: Mask, *, kind: str) -> None:
    """Check the weights' tensor names and shapes against a fresh model of the mask's architecture
    (dense: equal shapes; slim: same names, no dimension larger). Skipped for architectures that
    ``create_model`` does not know (nothing to compare with)."""
    from .models import create_model, is_model

    meta = mask.meta
    if not meta.num_classes or not is_model(meta.arch):
        return
    expected = {k: tuple(v.shape) for k, v in
                create_model(meta.arch, num_classes=meta.num_classes, in_chans=meta.in_chans).state_dict().items()}
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


def load_weights_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> nn.Module:
    """``model.load_state_dict(state, strict=True)`` after checking names and shapes; returns ``model``.

    Raises:
        WeightsMismatchError: (a ``MaskMismatchError`` and a ``RunError``) naming what does not fit:
            how many tensors are missing, unexpected or of another shape, with the first of each.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        arch = str(getattr(model, "arch_name", type(model).__name__))
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[0]})")
        raise WeightsMismatchError(f"weights {source} do not fit {arch}: " + "; ".join(parts), source=source,
                                   missing=missing, unexpected=unexpected, shapes=shapes, arch=arch)
    model.load_state_dict(dict(state), strict=True)
    return model
