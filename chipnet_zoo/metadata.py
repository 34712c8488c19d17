"""``MaskMetadata``: what a mask says about itself, typed; shared by :class:`~chipnet_zoo.mask.Mask`
(``mask.meta``) and :class:`~chipnet_zoo.registry.RegistryEntry` (``entry.meta``).

On disk (a mask file's safetensors header, an ``index.json`` row) the metadata stays the flat mapping it
always was, the budget as two keys ``budget_type`` and ``budget``; :meth:`MaskMetadata.from_dict` reads that
form (the schema checks of ``chipnet_zoo/validation.py`` run first) and :meth:`MaskMetadata.to_dict` writes
it back, keys it does not know kept in ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .budget import Budget

#: Keys of the on-disk form that are fields of :class:`MaskMetadata` (``budget_type`` + ``budget`` -> ``budget``).
_KNOWN = ("arch", "dataset", "budget_type", "budget", "num_classes", "input_size", "ratios", "metrics", "method",
          "created", "format_version", "hparams", "structure", "library_version", "torch_version")


@dataclass(frozen=True)
class MaskMetadata:
    """A mask's metadata, typed.

    Example:
        >>> meta = MaskMetadata.from_dict({"arch": "resnet8", "dataset": "cifar10", "budget_type": "flops",
        ...                                "budget": 0.25, "input_size": [3, 32, 32]})
        >>> meta.budget, meta.input_size, meta.in_chans
        (Budget(kind='flops', value=0.25), (3, 32, 32), 3)
        >>> meta.to_dict()["budget_type"], meta.to_dict()["budget"]
        ('flops', 0.25)
    """

    arch: str
    dataset: str | None = None
    budget: Budget | None = None
    num_classes: int | None = None
    #: ``(channels, height, width)`` of the inputs the mask was learned on.
    input_size: tuple[int, int, int] | None = None
    #: The four hard ratios (``channels``, ``volume``, ``params``, ``flops``) on the source model.
    ratios: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    created: str = ""
    format_version: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)
    #: ``((group, channels), ...)`` of the channel groups (empty in a registry entry).
    structure: tuple[tuple[str, int], ...] = ()
    library_version: str = ""
    torch_version: str = ""
    #: Keys of the on-disk form this version does not know, kept as read.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_chans(self) -> int:
        """Input channels (from ``input_size``; 3 when it is not recorded)."""
        return int(self.input_size[0]) if self.input_size else 3

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MaskMetadata:
        """Read the on-disk form (already schema-checked); ``budget_type`` and ``budget`` give ``budget``."""
        kind, value = raw.get("budget_type"), raw.get("budget")
        budget = Budget(str(kind), float(value)) if kind not in (None, "") and value is not None else None
        size = raw.get("input_size")
        return cls(
            arch=str(raw.get("arch") or ""), dataset=str(raw["dataset"]) if raw.get("dataset") else None,
            budget=budget, num_classes=int(raw["num_classes"]) if raw.get("num_classes") else None,
            input_size=tuple(int(x) for x in size) if size else None,  # type: ignore[arg-type]
            ratios={str(k): float(v) for k, v in dict(raw.get("ratios") or {}).items()},
            metrics=dict(raw.get("metrics") or {}), method=str(raw.get("method") or ""),
            created=str(raw.get("created") or ""), format_version=str(raw.get("format_version") or ""),
            hparams=dict(raw.get("hparams") or {}),
            structure=tuple((str(n), int(s)) for n, s in raw.get("structure") or ()),
            library_version=str(raw.get("library_version") or ""), torch_version=str(raw.get("torch_version") or ""),
            extra={k: v for k, v in raw.items() if k not in _KNOWN})

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: the fields that are set, the budget as ``budget_type`` + ``budget``."""
        out: dict[str, Any] = dict(self.extra)
        for name in ("arch", "dataset", "method", "created", "format_version", "library_version", "torch_version"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.budget is not None:
            out["budget_type"], out["budget"] = self.budget.kind, self.budget.value
        if self.num_classes is not None:
            out["num_classes"] = self.num_classes
        if self.input_size is not None:
            out["input_size"] = list(self.input_size)
        for name in ("ratios", "metrics", "hparams"):
            if getattr(self, name):
                out[name] = dict(getattr(self, name))
        if self.structure:
            out["structure"] = [[n, s] for n, s in self.structure]
        return out


def headline_accuracy(metrics: dict[str, Any]) -> tuple[str, str, float] | None:
    """``(metric key, split, value)`` of the accuracy to show for an entry: a test accuracy first, then a
    validation one, then any; ``None`` without one.

    Example:
        >>> headline_accuracy({"best_val_accuracy": 0.9, "test_accuracy": 0.88})
        ('test_accuracy', 'test', 0.88)
    """
    numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for split, words in (("test", ("test",)), ("validation", ("val",)), ("test", ("",))):
        for key in sorted(numeric):
            low = key.lower()
            if "acc" in low and any(w in low for w in words):
                return key, split, float(numeric[key])
    return None
