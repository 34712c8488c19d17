"""Budget-exact thresholding: one global threshold on the per-channel scores.

Channels are ranked by score (ties broken by index, so the result is deterministic) and every
group keeps its best channel. The threshold is the lowest one whose hard ratio is still ``<=`` the
budget (all four ratios grow monotonically with the kept set, so a binary search over the ranking
is exact). A fill pass then adds, in rank order, lower-ranked channels that still fit, so the
mask is as close to the budget as the channel granularity allows.
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
    smallest = float(cost.ratio(budget.kind, forced.to(torch.float64)))
    if smallest > budget.value + _EPS:
        raise UnreachableBudgetError(budget.kind, budget.value, smallest)
    # rank: descending score, ties by ascending index (stable sort on the negated scores)
    order = torch.sort(-scores, stable=True).indices
    free = order[~forced[order]]
    mask = _with(forced, free[:_longest_fitting_prefix(forced, free, cost, budget)])
    return _fill(mask, order, cost, budget)


def _with(mask: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
    out = mask.clone()
    out[added] = True
    return out


def _longest_fitting_prefix(base: torch.Tensor, additions: torch.Tensor, cost: CostModel, budget: Budget) -> int:
    """The largest ``k`` such that ``base`` plus ``additions[:k]`` meets the budget (binary search;
    the ratio grows monotonically with ``k``; ``base`` itself must meet it)."""
    lo, hi = 0, additions.numel()
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = _with(base, additions[:mid]).to(torch.float64)
        if float(cost.ratio(budget.kind, trial)) <= budget.value + _EPS:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _fill(mask: torch.Tensor, order: torch.Tensor, cost: CostModel, budget: Budget,
          max_rounds: int = 32) -> torch.Tensor:
    """Add, in rank order, lower-ranked channels that still fit under the budget.

    After the threshold, the next-ranked channel may be expensive (e.g. a wide early residual stream
    counted in many layers) while cheaper ones below it would fit. Each round adds the best-ranked
    candidates whose exact single-channel cost fits the remaining slack, keeping the longest prefix
    of them that still meets the budget exactly; it stops when no candidate fits.
    """
    dense = float(cost.dense[budget.kind])
    for _ in range(max_rounds):
        keep = mask.to(torch.float64)
        slack = (budget.value - float(cost.ratio(budget.kind, keep))) * dense
        if slack <= 0:
            break
        delta = cost.marginal(keep, budget.kind)
        candidates = order[~mask[order]]
        candidates = candidates[delta[candidates] <= slack + _EPS * dense]
        if candidates.numel() == 0:
            break
        chosen = candidates[torch.cumsum(delta[candidates], 0) <= slack + _EPS * dense]
        chosen = chosen if chosen.numel() else candidates[:1]
        k = _longest_fitting_prefix(mask, chosen, cost, budget)
        if k == 0:
            break
        mask = _with(mask, chosen[:k])
    return mask
