"""Baseline masks that meet a budget through the same budget-exact thresholding as ChipNet (docs/architecture.md, "Budget-exact thresholding").

Each baseline is a :mod:`scorer <chipnet_zoo.scorers>` (the protocol ChipNet's gates use too) whose
scores are fed to :func:`~chipnet_zoo.threshold.threshold_scores`: ``random`` (seeded uniform), ``l1``
(filter L1 norms, Li et al. 2017) and ``slimming`` (batch-norm ``|γ|``, Liu et al. 2017).

    >>> import torch, chipnet_zoo as cz
    >>> from chipnet_zoo.baselines import baseline_mask
    >>> model = cz.create_model("resnet8", num_classes=10)
    >>> mask = baseline_mask(model, "flops:0.25", "l1", example_input=torch.randn(1, 3, 32, 32))
    >>> mask.metadata["method"], mask.ratios["flops"] <= 0.25
    ('l1', True)

Around grouped convs (RegNet, ResNeXt) the thresholding keeps whole units (one channel per conv group,
ranked by their mean score), so every baseline respects the same per-conv-group constraint as ChipNet.

``direct`` (ChipNet on the student itself) is not a score: it is a prune run then a finetune run
(see :mod:`chipnet_zoo.experiments`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .budget import Budget
from .mask import Mask

#: Score-based baselines (``direct`` is a prune run, not a score).
BASELINES = ("random", "l1", "slimming")  # the names of scorers.BASELINE_SCORERS


def channel_scores(model: nn.Module, graph, method: str, *, seed: int = 0) -> torch.Tensor:
    """One float64 score per global channel of ``graph`` (higher = more important): the baseline's
    :mod:`scorer <chipnet_zoo.scorers>` over every group.

    Args:
        model: the model ``graph`` was built from (its weights are read, not changed).
        graph: its :class:`~chipnet_zoo.groups.ChannelGraph`.
        method: ``random``, ``l1`` or ``slimming``.
        seed: the seed of ``random``.
    """
    from .scorers import baseline_scorer, score_vector

    return score_vector(baseline_scorer(method, model, graph, seed=seed), graph)


def baseline_mask(model: nn.Module, budget: Budget | str, method: str, *, example_input: torch.Tensor,
                  seed: int = 0, round_to: int | str = 1, min_keep: float = 0.0, floor: float = 0.0,
                  latency_table=None, **metadata: Any) -> Mask:
    """A hard :class:`~chipnet_zoo.mask.Mask` from a baseline's scores, meeting ``budget`` exactly.

    Args:
        model: a (trained) model; L1 and slimming read its weights.
        budget: e.g. ``"flops:0.125"`` (a ceiling: the achieved ratio is ``<=`` it, as close as possible).
        method: ``random``, ``l1`` or ``slimming``.
        example_input: one example batch (sets the spatial sizes of the volume/FLOPs costs).
        seed: the seed of ``random`` (recorded in ``hparams``).
        round_to: every group keeps a multiple of this many channels (or all of them); ``"auto"``: per group,
            widths the device runs fast (:func:`~chipnet_zoo.latency.auto_round_to`).
        min_keep: every group keeps at least this fraction of its channels (a width floor).
        floor: a width floor relative to the budget (:func:`~chipnet_zoo.threshold.floor_fraction`).
        latency_table: the :class:`~chipnet_zoo.latency.LatencyTable` of a ``latency`` budget (measured on the
            model's device at ``example_input``'s batch size when not given).
        **metadata: extra mask metadata (e.g. ``dataset="mnist5k"``).

    Raises:
        UnreachableBudgetError: the budget is below the smallest achievable ratio.
    """
    from .groups import output_classes
    from .latency import cost_setup, latency_metadata
    from .scorers import check_baseline
    from .threshold import check_min_keep, threshold_hparams, threshold_scores

    budget = Budget.parse(budget)
    check_baseline(method)  # the arguments are checked before the graph and any latency measurement
    min_keep, floor = check_min_keep(min_keep), check_min_keep(floor)
    graph, cost, round_to = cost_setup(model, example_input, budget.kind, round_to, latency_table=latency_table)
    scores = channel_scores(model, graph, method, seed=seed)
    keep = threshold_scores(scores, cost, budget, round_to=round_to, min_keep=min_keep, floor=floor)
    meta: dict[str, Any] = {
        "arch": str(getattr(model, "arch_name", type(model).__name__)),
        "num_classes": output_classes(model, graph),
        "budget_type": budget.kind, "budget": budget.value, "ratios": cost.hard_ratios(keep),
        "method": method, "metrics": {}, "hparams": {"seed": int(seed)} if method == "random" else {},
    }
    meta["hparams"].update(threshold_hparams(round_to, min_keep, floor))
    meta.update(latency_metadata(cost))
    meta.update(metadata)
    # scores are stored as float32 in the file; rank-preserving normalisation keeps them well scaled
    top = float(scores.abs().max()) or 1.0
    return Mask.from_vectors(graph, keep, (scores / top).to(torch.float32), **meta)
