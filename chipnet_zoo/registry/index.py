"""``index.json``: the list of a registry's entries (:class:`RegistryEntry`), parsed strictly and bounded
(``chipnet_zoo/validation.py``), written deterministically. One row per entry, keys sorted::

    {"format": "chipnet-zoo-registry", "version": 1, "entries": [
      {"key", "arch", "dataset", "budget_type", "budget", "path", "sha256", "size", "ratios", "metrics",
       "method", "created", "num_classes", "input_size", "format_version", "weights"}, ...]}

``weights`` is ``null`` or ``{"path", "sha256", "size", "kind": "slim"|"dense"}``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..budget import Budget
from ..errors import IndexFormatError, InvalidKeyError
from ..metadata import MaskMetadata
from ..validation import MAX_INDEX_BYTES, check_index_document, check_index_row, load_json
from .keys import make_key, mask_path, split_key, weights_path

INDEX_FILE = "index.json"
INDEX_FORMAT = "chipnet-zoo-registry"
INDEX_VERSION = 1
#: The metadata fields an index row carries (in its flat on-disk form).
ROW_METADATA = ("arch", "dataset", "budget_type", "budget", "ratios", "metrics", "method", "created", "num_classes",
                "input_size", "format_version", "latency")


@dataclass
class RegistryEntry:
    """One registry entry (a row of ``index.json``): where the mask file is, its sha256 and size, the
    mask's metadata (:class:`~chipnet_zoo.metadata.MaskMetadata`, without ``structure`` and ``hparams``),
    and the weights pushed with it, if any.

    Example:
        >>> e = RegistryEntry.from_dict({"key": "resnet8/cifar10/flops-0.5", "arch": "resnet8",
        ...     "dataset": "cifar10", "budget_type": "flops", "budget": 0.5,
        ...     "path": "masks/resnet8/cifar10/flops-0.5.safetensors", "sha256": "0" * 64, "size": 10})
        >>> e.budget, e.meta.arch
        (Budget(kind='flops', value=0.5), 'resnet8')
    """

    key: str
    path: str
    sha256: str
    size: int
    meta: MaskMetadata
    #: ``{"path", "sha256", "size", "kind": "slim"|"dense"}`` when weights were pushed with the mask.
    weights: dict[str, Any] | None = None

    # the metadata, read through
    @property
    def arch(self) -> str:
        return self.meta.arch

    @property
    def dataset(self) -> str:
        return str(self.meta.dataset)

    @property
    def budget(self) -> Budget:
        assert self.meta.budget is not None  # every entry has one (checked on parse and push)
        return self.meta.budget

    @property
    def ratios(self) -> dict[str, float]:
        return self.meta.ratios

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta.metrics

    @property
    def method(self) -> str:
        return self.meta.method

    @property
    def num_classes(self) -> int | None:
        return self.meta.num_classes

    @property
    def input_size(self) -> tuple[int, int, int] | None:
        return self.meta.input_size

    @property
    def measured_on(self) -> str | None:
        """Where a latency mask's table was measured (``"<device>, 2 threads, batch 64"``); ``None`` otherwise."""
        record = self.meta.extra.get("latency")
        if not isinstance(record, dict):
            return None
        return f"{record.get('device', '?')}, {record.get('threads', '?')} threads, batch {record.get('batch', '?')}"

    def to_dict(self) -> dict[str, Any]:
        """The ``index.json`` row."""
        m = self.meta
        return {"key": self.key, "arch": m.arch, "dataset": m.dataset, "budget_type": self.budget.kind,
                "budget": self.budget.value, "path": self.path, "sha256": self.sha256, "size": self.size,
                "ratios": dict(m.ratios), "metrics": copy.deepcopy(m.metrics), "method": m.method,
                "created": m.created, "num_classes": m.num_classes,
                "input_size": list(m.input_size) if m.input_size else None, "format_version": m.format_version,
                "weights": dict(self.weights) if self.weights is not None else None,
                **({"latency": dict(m.extra["latency"])} if isinstance(m.extra.get("latency"), dict) else {})}

    def copy(self) -> RegistryEntry:
        return RegistryEntry.from_dict(self.to_dict(), "(copy)")

    @classmethod
    def from_dict(cls, raw: Any, where: str = "index.json") -> RegistryEntry:
        """Parse and validate one index row; anything inconsistent is an :class:`IndexFormatError`."""
        check_index_row(raw, where)  # types, ranges (chipnet_zoo/validation.py)
        key = raw["key"]

        def bad(field: str, problem: str) -> IndexFormatError:
            return IndexFormatError(f"corrupt registry index {where}: entry {key[:120]!r}: {problem}",
                                    where=where, field=field)

        try:
            arch, dataset, budget, machine = split_key(key)
        except InvalidKeyError as exc:
            raise bad("key", str(exc)) from None
        if key != make_key(arch=arch, dataset=dataset, budget=budget, machine=machine):
            raise bad("key", f"key {key!r} is not canonical")
        if machine is not None and not isinstance(raw.get("latency"), dict):
            raise bad("key", f"machine tag {machine!r} but the entry records no latency measurement")
        for name, expected in (("arch", arch), ("dataset", dataset), ("budget_type", budget.kind)):
            if raw[name] != expected:
                raise bad(name, f"{name} {raw[name]!r} does not match the key ({expected!r})")
        if float(raw["budget"]) != budget.value:
            raise bad("budget", f"budget {raw['budget']!r} does not match the key ({budget.value:g})")
        if raw["path"] != mask_path(key):
            raise bad("path", f"path {raw['path']!r} is not {mask_path(key)!r}")
        weights = raw.get("weights")
        if weights is not None and weights["path"] != weights_path(key, weights["kind"]):
            raise bad("weights", f"weights path {weights['path']!r} is not {weights_path(key, weights['kind'])!r}")
        meta = MaskMetadata.from_dict({k: raw[k] for k in ROW_METADATA if k in raw})
        return cls(key=key, path=raw["path"], sha256=raw["sha256"], size=raw["size"], meta=meta,
                   weights=dict(weights) if weights is not None else None)


#: ``mutate(entries) -> (entries, {path: bytes})``: what a push does to the index, under the backend's lock.
Mutator = Callable[[dict[str, RegistryEntry]], tuple[dict[str, RegistryEntry], dict[str, bytes]]]


def parse_index(data: bytes, where: str) -> dict[str, RegistryEntry]:
    """Parse ``index.json`` bytes into ``{key: entry}``; anything malformed is an :class:`IndexFormatError`
    naming the field (size and nesting depth are bounded before parsing)."""
    doc = load_json(data, what=f"registry index {where}", max_bytes=MAX_INDEX_BYTES,
                    error=lambda msg: IndexFormatError(f"corrupt {msg}", where=where))
    rows = check_index_document(doc, where, fmt=INDEX_FORMAT, version=INDEX_VERSION)
    entries: dict[str, RegistryEntry] = {}
    for raw in rows:
        entry = RegistryEntry.from_dict(raw, where)
        if entry.key in entries:
            raise IndexFormatError(f"corrupt registry index {where}: duplicate key {entry.key!r}", where=where,
                                   field="key")
        entries[entry.key] = entry
    return entries


def dump_index(entries: dict[str, RegistryEntry]) -> bytes:
    doc = {"format": INDEX_FORMAT, "version": INDEX_VERSION,
           "entries": [entries[k].to_dict() for k in sorted(entries)]}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
