"""``Budget``: what fraction of a resource the pruned model may use."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import BudgetError

#: Kinds the cost model counts exactly from the channel graph.
COUNT_KINDS = ("channels", "volume", "params", "flops")
#: Every budget kind: the counts, and ``latency`` (predicted from a measured table, :mod:`chipnet_zoo.latency`).
BUDGET_KINDS = COUNT_KINDS + ("latency",)
_ALIASES = {
    "channel": "channels", "channel_ratio": "channels",
    "volume_ratio": "volume", "activation": "volume",
    "param": "params", "parameters": "params", "parameter_ratio": "params",
    "macs": "flops", "flops_ratio": "flops",
}


@dataclass(frozen=True, order=True)
class Budget:
    """A resource budget: ``kind`` is one of ``channels``, ``volume``, ``params``, ``flops``, ``latency`` and
    ``value`` the allowed fraction of the dense model, ``0 < value <= 1``. A budget is a ceiling.
    ``latency`` is the predicted slimmed / dense inference time from a measured per-device table
    (:mod:`chipnet_zoo.latency`).

    Example:
        >>> Budget("flops", 0.25)
        Budget(kind='flops', value=0.25)
        >>> Budget.parse("params:0.1").value
        0.1
        >>> str(Budget("volume", 0.0625))
        'volume:0.0625'
        >>> Budget.parse("latency:0.3")
        Budget(kind='latency', value=0.3)
    """

    kind: str
    value: float

    def __post_init__(self) -> None:
        kind = _ALIASES.get(str(self.kind).lower(), str(self.kind).lower())
        if kind not in BUDGET_KINDS:
            raise BudgetError(f"unknown budget kind {self.kind!r}; expected one of {', '.join(BUDGET_KINDS)}")
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise BudgetError(f"budget value must be a number, got {self.value!r}") from None
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise BudgetError(f"budget value must satisfy 0 < value <= 1, got {self.value!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "value", value)

    @classmethod
    def parse(cls, text: str | float | Budget, *, default_kind: str | None = None) -> Budget:
        """The one parser of budgets (the CLI, experiment configs and the library all use it).

        ``"kind:value"`` (e.g. ``"flops:0.1"``); a bare number (or numeric string) when ``default_kind`` is
        given (an experiment config's ``budget_type``); a ``Budget`` is returned unchanged.

        Example:
            >>> Budget.parse("flops:0.25")
            Budget(kind='flops', value=0.25)
            >>> Budget.parse(0.125, default_kind="params")
            Budget(kind='params', value=0.125)
        """
        if isinstance(text, Budget):
            return text
        if default_kind is not None and not (isinstance(text, str) and ":" in text):
            if isinstance(text, bool):
                raise BudgetError(f"budget value must be a number, got {text!r}")
            return cls(default_kind, text)
        if not isinstance(text, str) or text.count(":") != 1:
            raise BudgetError(f"budget must look like 'kind:value' (e.g. 'flops:0.1'), got {text!r}")
        kind, value = (part.strip() for part in text.split(":"))
        try:
            number = float(value)
        except ValueError:
            raise BudgetError(f"budget value must be a number, got {value!r} in {text!r}") from None
        return cls(kind, number)

    def __str__(self) -> str:
        return f"{self.kind}:{format(self.value, 'g')}"

    @property
    def slug(self) -> str:
        """The registry form, ``<kind>-<value>`` (e.g. ``flops-0.1``)."""
        return f"{self.kind}-{format(self.value, 'g')}"
