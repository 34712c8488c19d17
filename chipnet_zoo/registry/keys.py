"""Registry keys and the paths they map to (the bottom layer of the registry: no I/O).

A key is ``<arch>/<dataset>/<budget_type>-<budget>``, the budget written with ``format(v, "g")``
(``resnet56/cifar100/flops-0.1``). Every path segment is ``[A-Za-z0-9._-]``, starts with a letter, digit
or ``_``, and holds no ``..`` or ``--``. A ``/`` inside an architecture or dataset name (torchvision's
``tv/resnet50``, a Hub dataset id ``uoft-cs/cifar10``) is written ``--`` in keys and paths
(``tv--resnet50/cifar10/flops-0.25``); the encoding is reversible because ``--`` is not allowed in a
segment. ``tv/resnet50/cifar10/flops-0.25`` is accepted too (extra leading segments belong to the
architecture).

A latency budget is measured on one machine, so a latency key carries where: its budget segment ends in a
**machine tag** (``resnet56/cifar10/latency-0.3-cpu.amd.epyc.7b13.b1.aff0a5``: device, batch size and a
digest of everything else the table's key holds, :func:`machine_tag`). Masks for the same budget measured
on two machines are two entries.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from ..budget import BUDGET_KINDS, Budget
from ..errors import InvalidKeyError

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_TAG = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
#: ``<kind>-<value>[-<machine tag>]``; the value may be written with an exponent (``flops-5e-05``).
_SLUG = re.compile(r"(?P<kind>[A-Za-z]+)-(?P<value>[0-9.]+(?:e[-+]?[0-9]+)?)(?:-(?P<machine>.+))?")
MAX_KEY_LENGTH = 200
#: Characters of the device name kept in a machine tag (the digest tells longer names apart).
_TAG_DEVICE_CHARS = 32


def machine_tag(latency: Mapping[str, Any]) -> str:
    """The machine tag of a latency mask's key from what it records (``metadata["latency"]``): the device name
    (lower case, words joined by ``.``), ``b<batch>`` and 6 hex digits of a digest of the whole record but
    the dense latency (threads, torch version, dtype, input size, memory format, model fingerprint).

    Example:
        >>> machine_tag({"device": "cpu:AMD EPYC 7B13", "batch": 1, "threads": 2})
        'cpu.amd.epyc.7b13.b1.aff0a5'
    """
    device = ".".join(re.findall(r"[a-z0-9]+", str(latency.get("device", "unknown")).lower()))
    device = device[:_TAG_DEVICE_CHARS].strip(".") or "unknown"
    record = {k: v for k, v in latency.items() if k != "dense_ms"}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{device}.b{latency.get('batch', 0)}.{digest}"


def _check_segment(segment: str, what: str) -> str:
    if (not isinstance(segment, str) or not _SEGMENT.fullmatch(segment) or ".." in segment
            or "--" in segment or segment.endswith("-")):
        raise InvalidKeyError(
            f"invalid {what} {segment!r}: use letters, digits, '.', '_' and '-' (starting with a letter, digit "
            "or '_', no '..' or '--', no trailing '-')", key=segment)
    return segment


def encode_name(name: str, what: str = "name") -> str:
    """Encode an architecture or dataset name as one path segment: ``tv/resnet50`` -> ``tv--resnet50``."""
    if not isinstance(name, str) or not name:
        raise InvalidKeyError(f"{what} must be a non-empty string, got {name!r}", key=name)
    if "\\" in name or name.startswith("/") or name.endswith("/"):
        raise InvalidKeyError(f"invalid {what} {name!r}: no backslashes, leading or trailing '/'", key=name)
    return "--".join(_check_segment(part, what) for part in name.split("/"))


def decode_name(segment: str, what: str = "name") -> str:
    """Inverse of :func:`encode_name`: ``tv--resnet50`` -> ``tv/resnet50``."""
    return "/".join(_check_segment(part, what) for part in segment.split("--"))


def make_key(*, arch: str, dataset: str, budget: Budget | str, machine: str | None = None) -> str:
    """The canonical key of ``arch`` on ``dataset`` at ``budget`` (a ``Budget`` or ``"kind:value"``);
    ``machine``: the :func:`machine_tag` of a latency budget (a latency key without one names no machine).

    Example:
        >>> make_key(arch="tv/resnet50", dataset="cifar10", budget="flops:0.25")
        'tv--resnet50/cifar10/flops-0.25'
        >>> make_key(arch="resnet8", dataset="cifar10", budget=Budget("params", 0.5))
        'resnet8/cifar10/params-0.5'
        >>> make_key(arch="resnet8", dataset="cifar10", budget="latency:0.3", machine="cpu.b1.0d7ab0")
        'resnet8/cifar10/latency-0.3-cpu.b1.0d7ab0'
    """
    b = Budget.parse(budget)
    slug = b.slug
    if machine is not None:
        slug += f"-{_check_tag(machine, b, slug)}"
    return f"{encode_name(arch, 'architecture')}/{encode_name(dataset, 'dataset')}/{slug}"


def _check_tag(machine: str, budget: Budget, key: str) -> str:
    if budget.kind != "latency":
        raise InvalidKeyError(f"invalid key {key!r}: only a latency budget names a machine ({machine!r})", key=key)
    if not isinstance(machine, str) or not _TAG.fullmatch(machine):
        raise InvalidKeyError(f"invalid machine tag {machine!r} in key {key!r}: lower-case letters and digits "
                              "joined by '.' or '-'", key=key)
    return machine


def split_key(key: str) -> tuple[str, str, Budget, str | None]:
    """:func:`parse_key` plus the key's machine tag (``None`` unless a latency key names one).

    Raises:
        InvalidKeyError: a malformed or unsafe key (absolute, ``..``, backslashes, bad characters).
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"a registry key must be a string of 1..{MAX_KEY_LENGTH} characters, got {key!r}",
                              key=key)
    if "\\" in key or key.startswith("/") or ":" in key.split("/")[0]:
        raise InvalidKeyError(f"invalid registry key {key!r}: no absolute paths or backslashes", key=key)
    parts = key.split("/")
    if len(parts) < 3:
        raise InvalidKeyError(f"invalid registry key {key!r}: expected '<arch>/<dataset>/<budget_type>-<budget>'",
                              key=key)
    slug = _check_segment(parts[-1], "budget")
    match = _SLUG.fullmatch(slug)
    if match is None:
        raise InvalidKeyError(f"invalid budget {slug!r} in key {key!r}: expected e.g. 'flops-0.1' "
                              f"(kinds: {', '.join(BUDGET_KINDS)})", key=key)
    try:
        budget = Budget(match["kind"], float(match["value"]))
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"invalid budget {slug!r} in key {key!r}: {exc}", key=key) from None
    if match["machine"]:
        _check_tag(match["machine"], budget, key)
    arch = "/".join(decode_name(p, "architecture") for p in parts[:-2])
    return arch, decode_name(parts[-2], "dataset"), budget, match["machine"] or None


def key_for(meta) -> str:
    """The key a mask with this :class:`~chipnet_zoo.metadata.MaskMetadata` is published under (a latency mask's
    names the machine its table was measured on)."""
    latency = meta.extra.get("latency")
    machine = machine_tag(latency) if meta.budget.kind == "latency" and isinstance(latency, Mapping) else None
    return make_key(arch=meta.arch, dataset=meta.dataset, budget=meta.budget, machine=machine)


def parse_key(key: str) -> tuple[str, str, Budget]:
    """``"tv--resnet50/cifar10/flops-0.25"`` -> ``("tv/resnet50", "cifar10", Budget("flops", 0.25))``.

    Raises:
        InvalidKeyError: a malformed or unsafe key (absolute, ``..``, backslashes, bad characters).
    """
    return split_key(key)[:3]


def canonical_key(key: str) -> str:
    """The canonical spelling of ``key`` (``tv/resnet50/c10/flops-0.250`` -> ``tv--resnet50/c10/flops-0.25``)."""
    arch, dataset, budget, machine = split_key(key)
    return make_key(arch=arch, dataset=dataset, budget=budget, machine=machine)


def key_from(*, key: str | None = None, arch: str | None = None, dataset: str | None = None,
             budget: Budget | str | None = None) -> str:
    """The canonical key from ``key``, or from ``arch``, ``dataset`` and ``budget`` (``"flops:0.1"`` or
    ``"flops-0.1"``)."""
    if key is None:
        if not (arch and dataset and budget):
            raise InvalidKeyError("pass a key, or arch=, dataset= and budget= (e.g. budget='flops:0.1')")
        return make_key(arch=arch, dataset=dataset, budget=budget.replace("-", ":", 1) if isinstance(budget, str)
                        and ":" not in budget else budget)
    return canonical_key(key)


def mask_path(key: str) -> str:
    """``masks/<key>.safetensors``."""
    return f"masks/{canonical_key(key)}.safetensors"


def weights_path(key: str, kind: str = "slim") -> str:
    """``weights/<key>.safetensors`` (slimmed) or ``weights/<arch>/<dataset>/dense.safetensors``."""
    key = canonical_key(key)
    return f"weights/{key.rsplit('/', 1)[0]}/dense.safetensors" if kind == "dense" else f"weights/{key}.safetensors"


def plot_path(key: str) -> str:
    """``plots/<key>.png`` (Hub registries: kept channels per group)."""
    return f"plots/{canonical_key(key)}.png"
