"""Channel scorers: ONE protocol for every way of ranking channels (ChipNet's gates and the baselines).

A scorer has Torch-Pruning's ``Importance`` shape: ``scorer(group)`` returns one score per channel of a
:class:`~chipnet_zoo.groups.ChannelGroup` (higher = more important). :func:`score_vector` assembles the
scores of every group into the global channel vector that
:func:`~chipnet_zoo.threshold.threshold_scores` turns into a budget-exact keep mask - the same
thresholding for all of them.

* :class:`GateScorer`: ChipNet's learned gates ``z`` (the pruner's ranking);
* :class:`RandomScorer`: seeded uniform scores;
* :class:`L1Scorer`: the L1 norm of every producing conv/linear filter of the channel (Li et al. 2017),
  summed over the layers of the channel's group (a residual stream has several producers);
* :class:`SlimmingScorer`: ``|γ|`` of every batch-norm on the channel (Network Slimming, Liu et al. 2017),
  summed over the group's batch-norms.

    >>> import torch, chipnet_zoo as cz
    >>> from chipnet_zoo.groups import build_channel_graph
    >>> model = cz.create_model("resnet8", num_classes=10)
    >>> graph = build_channel_graph(model, torch.zeros(1, 3, 32, 32))
    >>> scorer = L1Scorer(model, graph)
    >>> scorer(graph.groups[0]).shape == (graph.groups[0].size,)
    True
    >>> score_vector(scorer, graph).shape == (graph.num_channels,)
    True
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from .groups import ChannelGraph, ChannelGroup


class ChannelScorer(Protocol):
    """Scores the channels of one group (``Importance.__call__(group)`` in Torch-Pruning)."""

    def __call__(self, group: ChannelGroup) -> torch.Tensor:
        """One score per channel of ``group`` (a float tensor of ``group.size``; higher = keep)."""
        ...


def score_vector(scorer: ChannelScorer, graph: ChannelGraph) -> torch.Tensor:
    """The scores of every group of ``graph``, placed at their global channel indices (in the scorer's dtype)."""
    parts = {group.offset: scorer(group) for group in graph.groups}
    dtype = next(iter(parts.values())).dtype if parts else torch.float64
    out = torch.zeros(graph.num_channels, dtype=dtype)
    for group in graph.groups:
        out[group.indices] = parts[group.offset]
    return out


class _GlobalScorer:
    """A scorer whose scores are computed once over the global channel vector and sliced per group."""

    def __init__(self, scores: torch.Tensor):
        self._scores = scores

    def __call__(self, group: ChannelGroup) -> torch.Tensor:
        return self._scores[group.indices]


class GateScorer(_GlobalScorer):
    """ChipNet: the pruner's current gate values ``z`` (a snapshot taken at construction)."""

    def __init__(self, pruner: Any):
        super().__init__(pruner.z())


class RandomScorer(_GlobalScorer):
    """Seeded uniform scores (float64), the same for the same seed and channel count."""

    def __init__(self, graph: ChannelGraph, seed: int = 0):
        gen = torch.Generator().manual_seed(int(seed))
        super().__init__(torch.rand(graph.num_channels, generator=gen, dtype=torch.float64))


class _WeightScorer(_GlobalScorer):
    """Per-channel magnitudes of the weights of some layers, summed over the layers of a group."""

    name = ""
    kinds: tuple[str, ...] = ()
    needs = ""

    def __init__(self, model: nn.Module, graph: ChannelGraph):
        modules = dict(model.named_modules())
        scores = torch.zeros(graph.num_channels, dtype=torch.float64)
        found = False
        for layer in graph.layers:
            if not len(layer.out_global) or layer.is_classifier or layer.kind not in self.kinds:
                continue
            weight = getattr(modules[layer.name], "weight", None)
            if weight is None:
                continue
            w = weight.detach().to("cpu", torch.float64)
            scores.index_add_(0, layer.out_global, self.per_channel(w)[layer.out_local])
            found = True
        if not found:
            raise ValueError(f"baseline {self.name!r} needs {self.needs} on the prunable channels; the model has none")
        super().__init__(scores)

    @staticmethod
    def per_channel(weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class L1Scorer(_WeightScorer):
    """Li et al. 2017: the L1 norm of each output filter of every conv/linear producing the channel."""

    name, kinds, needs = "l1", ("conv", "linear"), "conv/linear layers"

    @staticmethod
    def per_channel(weight: torch.Tensor) -> torch.Tensor:
        return weight.abs().reshape(weight.shape[0], -1).sum(1)


class SlimmingScorer(_WeightScorer):
    """Network Slimming (Liu et al. 2017): ``|γ|`` of every batch-norm on the channel."""

    name, kinds, needs = "slimming", ("bn",), "batch-norm layers with affine weights"

    @staticmethod
    def per_channel(weight: torch.Tensor) -> torch.Tensor:
        return weight.abs()


#: The baseline scorers by name.
BASELINE_SCORERS = {"random": RandomScorer, "l1": L1Scorer, "slimming": SlimmingScorer}


def check_baseline(method: str) -> str:
    """``method`` if it names a baseline scorer, else a ``ValueError`` listing them."""
    if method not in BASELINE_SCORERS:
        raise ValueError(f"unknown baseline {method!r}; expected one of {', '.join(BASELINE_SCORERS)}")
    return method


def baseline_scorer(method: str, model: nn.Module, graph: ChannelGraph, *, seed: int = 0) -> ChannelScorer:
    """The scorer of a baseline (``random``, ``l1`` or ``slimming``) on ``model``."""
    if check_baseline(method) == "random":
        return RandomScorer(graph, seed)
    return BASELINE_SCORERS[method](model, graph)
