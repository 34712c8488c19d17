"""Budget-exact thresholding: one global threshold on the per-channel scores.

Channels are ranked by score (ties broken by index, so the result is deterministic) and every
group keeps its best channel. The threshold is the lowest one whose hard ratio is still ``<=`` the
budget, so the mask meets the budget and is as close to it as the channel granularity allows.
All four ratios grow monotonically with the number of kept channels, which makes a binary search
over the ranking exact.
"""

from __future__ import annotations

import torch

from .budget import Budget
from .cost import CostModel
from .errors import UnreachableBudgetError

#: Slack for float64 round-off when comparing a ratio with its target.
_EPS = 1e-12


def smallest_mask(scores: torch.Tensor, cost: CostModel) -> torch.Tensor:
    """The mask that keeps only the best-scoring channel of every group."""
    forced = torch.zeros(scores.numel(), dtype=torch.bool)
    for group in cost.graph.groups:
        forced[group.offset + int(torch.argmax(scores[group.indices]))] = True
    return forced


def threshold_scores(scores: torch.Tensor, cost: CostModel, budget: Budget | str) -> torch.Tensor:
    """The boolean keep-mask over all channels that meets ``budget`` exactly (a ceiling).

    Args:
        scores: one score per global channel (higher = more important), e.g. ChipNet's gate z.
        cost: the model's cost model.
        budget: the budget, e.g. ``Budget("flops", 0.25)`` or ``"flops:0.25"``.

    Raises:
        UnreachableBudgetError: the target is below the smallest achievable ratio (named in the message).
    """
    budget = Budget.parse(budget)
    scores = scores.detach().to("cpu", torch.float64).flatten()
    if scores.numel() != cost.graph.num_channels:
        raise ValueError(f"expected {cost.graph.num_channels} scores, got {scores.numel()}")
    forced = smallest_mask(scores, cost)
    # rank: descending score, ties by ascending index (stable sort on the negated scores)
    order = torch.sort(-scores, stable=True).indices
    free = order[~forced[order]]

    def ratio_at(k: int) -> float:
        mask = forced.clone()
        mask[free[:k]] = True
        return float(cost.ratio(budget.kind, mask.to(torch.float64)))

    smallest = ratio_at(0)
    if smallest > budget.value + _EPS:
        raise UnreachableBudgetError(budget.kind, budget.value, smallest)
    lo, hi = 0, free.numel()  # invariant: ratio_at(lo) <= target; answer in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ratio_at(mid) <= budget.value + _EPS:
            lo = mid
        else:
            hi = mid - 1
    mask = forced.clone()
    mask[free[:lo]] = True
    return mask
