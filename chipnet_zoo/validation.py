"""Schema checks for what chipnet-zoo reads from files or the network: bounded JSON, mask metadata and
tensors, and the rows of a registry ``index.json``. Every reader goes through these, so bad input is
refused the same way everywhere, with the project's own error naming the field (docs/reliability.md).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .budget import BUDGET_KINDS
from .errors import IndexFormatError, MaskFormatError

#: Deepest JSON nesting accepted anywhere (an index row or a metadata value needs 3).
MAX_JSON_DEPTH = 32
#: Largest ``index.json`` read (bytes).
MAX_INDEX_BYTES = 64 * 2**20
#: Largest mask file read (bytes): a mask is 5 bytes per channel plus metadata, far below this.
MAX_MASK_BYTES = 256 * 2**20
#: Largest single metadata value of a mask file (bytes of JSON).
MAX_METADATA_BYTES = 4 * 2**20
#: Most channel groups / channels per group in a mask.
MAX_GROUPS, MAX_GROUP_CHANNELS = 100_000, 1_000_000
#: safetensors dtypes a mask's tensors may have.
MASK_DTYPES, SCORE_DTYPES = ("BOOL",), ("F16", "BF16", "F32", "F64")

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A JSON string (an unterminated one runs to the end: no backtracking, linear time) or a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)


# --- JSON --------------------------------------------------------------------------------------------
def json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in ``text`` (strings skipped; no parsing, no recursion)."""
    depth = deepest = 0
    for m in _TOKEN.finditer(text):
        c = m.group()[0]
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def load_json(data: bytes | str, *, what: str, error: Callable[[str], Exception], max_bytes: int,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with a size and depth bound; anything wrong becomes ``error(message)``."""
    if len(data) > max_bytes:
        raise error(f"{what} is {len(data)} bytes, more than the {max_bytes} accepted")
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else str(data)
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 ({exc})") from None
    if json_depth(text) > max_depth:
        raise error(f"{what} is nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise error(f"{what} is not valid JSON ({exc})") from None


# --- scalar checks -----------------------------------------------------------------------------------
def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _ratios_problem(ratios: Any) -> str | None:
    if not isinstance(ratios, Mapping):
        return f"must be an object of {', '.join(BUDGET_KINDS)} -> number, got {type(ratios).__name__}"
    for kind, value in ratios.items():
        if kind not in BUDGET_KINDS:
            return f"has unknown kind {kind!r} (kinds: {', '.join(BUDGET_KINDS)})"
        if not is_finite(value) or not 0 < value <= 1 + 1e-9:
            return f"{kind} must be a number in (0, 1], got {value!r}"
    return None


def _input_size_problem(size: Any) -> str | None:
    if not isinstance(size, (list, tuple)) or len(size) != 3 or not all(is_int(x) and 0 < x <= 65536 for x in size):
        return f"must be [channels, height, width] of positive integers, got {size!r}"
    return None


# --- masks -------------------------------------------------------------------------------------------
def check_mask_metadata(meta: Mapping[str, Any]) -> None:
    """Types and ranges of a mask's metadata; :class:`MaskFormatError` naming the first bad field."""
    from .budget import Budget

    def bad(field: str, problem: str) -> MaskFormatError:
        return MaskFormatError(f"mask metadata {field!r} {problem}", field=field)

    for name in ("format_version", "arch"):
        if name not in meta:
            raise MaskFormatError(f"mask metadata lacks {name!r}", field=name)
    for name in ("format_version", "arch", "dataset", "budget_type", "method", "created"):
        if name in meta and (not isinstance(meta[name], str) or (name == "arch" and not meta[name])):
            raise bad(name, f"must be a {'non-empty ' if name == 'arch' else ''}string, got {meta[name]!r}")
    structure = meta.get("structure")
    if not isinstance(structure, (list, tuple)) or not structure:
        raise bad("structure", f"must be a non-empty list of [group, channels], got {str(structure)[:80]!r}")
    if len(structure) > MAX_GROUPS:
        raise bad("structure", f"has {len(structure)} groups, more than {MAX_GROUPS}")
    seen: set[str] = set()
    for item in structure:
        if (not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str) or not item[0]
                or not is_int(item[1]) or not 0 < item[1] <= MAX_GROUP_CHANNELS):
            raise bad("structure", f"entries must be [group name, positive channel count], got {str(item)[:80]!r}")
        if item[0] in seen:
            raise bad("structure", f"names group {item[0]!r} twice")
        seen.add(item[0])
    if "budget_type" in meta or "budget" in meta:
        if not is_finite(meta.get("budget")):
            raise bad("budget", f"must be a number, got {meta.get('budget')!r}")
        try:
            Budget(meta.get("budget_type"), float(meta["budget"]))
        except (ValueError, TypeError) as exc:
            raise bad("budget_type" if meta.get("budget_type") not in BUDGET_KINDS else "budget", str(exc)) from None
    if "ratios" in meta and (problem := _ratios_problem(meta["ratios"])):
        raise bad("ratios", problem)
    if "num_classes" in meta and not (is_int(meta["num_classes"]) and meta["num_classes"] >= 1):
        raise bad("num_classes", f"must be a positive integer, got {meta['num_classes']!r}")
    if "input_size" in meta and (problem := _input_size_problem(meta["input_size"])):
        raise bad("input_size", problem)
    for name in ("metrics", "hparams"):
        if name in meta and not isinstance(meta[name], Mapping):
            raise bad(name, f"must be an object, got {type(meta[name]).__name__}")
    hparams = meta.get("hparams") or {}
    round_to = hparams.get("round_to", 1)
    if round_to in ("auto", "per-group"):
        blocks = hparams.get("round_to_groups")
        if not (isinstance(blocks, list) and blocks and all(_block_ok(b) for b in blocks)):
            raise bad("hparams", f"round_to {round_to!r} needs round_to_groups, per group a positive integer or a "
                                 f"list of them, got {str(blocks)[:200]}")
    elif not (is_int(round_to) and round_to >= 1):
        raise bad("hparams", f"round_to must be a positive integer, 'auto' or 'per-group', got {round_to!r}")


def _block_ok(block: Any) -> bool:
    """One group's entry of ``round_to_groups``: a block size, or the widths the group may keep."""
    return (is_int(block) and block >= 1) or (
        isinstance(block, list) and bool(block) and all(is_int(w) and w >= 1 for w in block))


def check_mask_header(header: Mapping[str, Any]) -> None:
    """dtype and shape of every tensor in a mask file's safetensors header (before any tensor is read)."""
    for name, info in header.items():
        if name == "__metadata__":
            continue
        kind = name.partition("/")[0]
        if kind not in ("mask", "score") or not isinstance(info, Mapping):
            raise MaskFormatError(f"unexpected tensor {name!r} in mask file", field=name)
        allowed = MASK_DTYPES if kind == "mask" else SCORE_DTYPES
        if info.get("dtype") not in allowed:
            raise MaskFormatError(f"tensor {name!r} has dtype {info.get('dtype')!r}; a mask file needs "
                                  f"{' or '.join(allowed)}", field=name)
        shape = info.get("shape")
        if not isinstance(shape, list) or len(shape) != 1:
            raise MaskFormatError(f"tensor {name!r} has shape {shape!r}; a mask file needs 1-D tensors", field=name)


def check_mask_tensors(keep: Mapping[str, Any], scores: Mapping[str, Any]) -> None:
    """Mask tensors 1-D and 0/1, score tensors 1-D and finite (tensors already in memory)."""
    import torch

    for name, t in keep.items():
        if t.dim() != 1:
            raise MaskFormatError(f"mask of group {name!r} has shape {tuple(t.shape)}; it must be 1-D",
                                  field=f"mask/{name}")
        if t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all()):
            raise MaskFormatError(f"mask of group {name!r} holds values other than 0 and 1", field=f"mask/{name}")
    for name, t in scores.items():
        if t.dim() != 1:
            raise MaskFormatError(f"scores of group {name!r} have shape {tuple(t.shape)}; they must be 1-D",
                                  field=f"score/{name}")
        if t.dtype == torch.bool or t.is_complex():
            raise MaskFormatError(f"scores of group {name!r} have dtype {t.dtype}; they must be real numbers",
                                  field=f"score/{name}")
        if not bool(torch.isfinite(t.to(torch.float64)).all()):
            raise MaskFormatError(f"scores of group {name!r} hold NaN or infinite values", field=f"score/{name}")


# --- the registry index ------------------------------------------------------------------------------
_ENTRY_STRINGS = ("key", "arch", "dataset", "budget_type", "path", "method", "created", "format_version")


def check_index_document(doc: Any, where: str, *, fmt: str, version: int) -> list[Any]:
    """The ``entries`` list of a parsed ``index.json`` after checking its envelope."""
    if not isinstance(doc, dict):
        raise IndexFormatError(f"corrupt registry index {where}: expected a JSON object", where=where)
    if doc.get("format") != fmt:
        raise IndexFormatError(f"corrupt registry index {where}: 'format' must be {fmt!r}, got "
                               f"{str(doc.get('format'))[:60]!r}", where=where, field="format")
    v = doc.get("version")
    if not is_int(v) or v < 1:
        raise IndexFormatError(f"corrupt registry index {where}: 'version' must be a positive integer, got {v!r}",
                               where=where, field="version")
    if v > version:
        raise IndexFormatError(f"registry index {where} has version {v}; this chipnet-zoo reads version {version} "
                               "- upgrade chipnet-zoo", where=where, field="version")
    if not isinstance(doc.get("entries"), list):
        raise IndexFormatError(f"corrupt registry index {where}: 'entries' must be a list", where=where,
                               field="entries")
    return doc["entries"]


def _latency_record_problem(record: Any) -> str | None:
    """Where a latency mask was measured (device, threads, batch, ...): a small object of scalars and lists."""
    if not isinstance(record, dict) or len(record) > 32:
        return "must be an object of at most 32 fields"
    for k, v in record.items():
        scalar = isinstance(v, (str, int, float)) and not isinstance(v, bool)
        listed = isinstance(v, list) and len(v) <= 8 and all(is_int(x) for x in v)
        if not isinstance(k, str) or not (scalar or listed) or (isinstance(v, str) and len(v) > 256):
            return f"field {str(k)[:40]!r} must be a short string, a number or a list of integers"
    return None


def check_index_row(raw: Any, where: str) -> None:
    """Types of one index row (key consistency is checked by ``RegistryEntry.from_dict``)."""
    def bad(field: str, problem: str) -> IndexFormatError:
        key = raw.get("key") if isinstance(raw, dict) and isinstance(raw.get("key"), str) else None
        at = f"entry {key[:120]!r}" if key else "an entry"
        return IndexFormatError(f"corrupt registry index {where}: {at}: {field!r} {problem}", where=where,
                                field=field)

    if not isinstance(raw, dict):
        raise IndexFormatError(f"corrupt registry index {where}: an entry must be a JSON object, got "
                               f"{type(raw).__name__}", where=where)
    for name in ("key", "arch", "dataset", "budget_type", "budget", "path", "sha256", "size"):
        if name not in raw:
            raise bad(name, "is missing")
    for name in _ENTRY_STRINGS:
        if name in raw and not isinstance(raw[name], str):
            raise bad(name, f"must be a string, got {type(raw[name]).__name__}")
    if not is_finite(raw["budget"]):
        raise bad("budget", f"must be a number, got {raw['budget']!r}")
    if not isinstance(raw["sha256"], str) or not _SHA256.fullmatch(raw["sha256"]):
        raise bad("sha256", "must be 64 lowercase hex digits")
    if not is_int(raw["size"]) or raw["size"] < 0:
        raise bad("size", f"must be a non-negative integer, got {raw['size']!r}")
    if "ratios" in raw and (problem := _ratios_problem(raw["ratios"])):
        raise bad("ratios", problem)
    if "metrics" in raw and not isinstance(raw["metrics"], dict):
        raise bad("metrics", f"must be an object, got {type(raw['metrics']).__name__}")
    if raw.get("num_classes") is not None and not (is_int(raw["num_classes"]) and raw["num_classes"] >= 1):
        raise bad("num_classes", f"must be a positive integer or null, got {raw['num_classes']!r}")
    if raw.get("input_size") is not None and (problem := _input_size_problem(raw["input_size"])):
        raise bad("input_size", problem)
    if raw.get("latency") is not None and (problem := _latency_record_problem(raw["latency"])):
        raise bad("latency", problem)
    w = raw.get("weights")
    if w is not None:
        if not isinstance(w, dict) or w.get("kind") not in ("slim", "dense"):
            raise bad("weights", "must be an object with kind 'slim' or 'dense'")
        if not isinstance(w.get("path"), str):
            raise bad("weights", "path must be a string")
        if not isinstance(w.get("sha256"), str) or not _SHA256.fullmatch(w["sha256"]):
            raise bad("weights", "sha256 must be 64 lowercase hex digits")
        if w.get("size") is not None and not (is_int(w["size"]) and w["size"] >= 0):
            raise bad("weights", f"size must be a non-negative integer, got {w['size']!r}")
