"""Budget-exact thresholding: one global threshold on the per-channel scores.

Channels are ranked by score (ties broken by index, so the result is deterministic) and every
group keeps its best channel. The threshold is the lowest one whose hard ratio is still ``<=`` the
budget (all ratios grow monotonically with the kept set, so a binary search over the ranking
is exact; the latency table is made monotone for this, :mod:`chipnet_zoo.latency`). A fill pass then adds, in rank order, lower-ranked channels that still fit, so the
mask is as close to the budget as the channel granularity allows.

``round_to=r`` keeps a multiple of ``r`` channels in every group (or the whole group): the unit of
pruning becomes a block of ``r`` channels of one group, taken in score order. CPU and GPU kernels
run much closer to their ideal speed on such widths (docs/benchmarks.md); the ratio is still a ceiling,
only coarser.

Groups around grouped convolutions (RegNet, ResNeXt) keep channels in *units*, one channel at the same
position of every convolution group (``group.granularity`` channels, see :mod:`chipnet_zoo.groups`);
a unit's score is the mean of its channels'. Such a group keeps a multiple of
``lcm(round_to, granularity)`` channels (or all of them): that is the granularity of the budget there.
"""

from __future__ import annotations

import math

import torch

from .budget import Budget
from .cost import CostModel
from .errors import UnreachableBudgetError

#: Slack for float64 round-off when comparing a ratio with its target.
_EPS = 1e-12


def check_round_to(round_to: int) -> int:
    """``round_to`` as an ``int``; ``ValueError`` unless it is a positive integer."""
    if int(round_to) != round_to or round_to < 1:
        raise ValueError(f"round_to must be a positive integer, got {round_to!r}")
    return int(round_to)


def check_min_keep(min_keep: float) -> float:
    """``min_keep`` as a ``float``; ``ValueError`` unless it is a fraction in [0, 1]."""
    if not 0.0 <= float(min_keep) <= 1.0:
        raise ValueError(f"min_keep must be a fraction in [0, 1], got {min_keep!r}")
    return float(min_keep)


def threshold_hparams(round_to: int = 1, min_keep: float = 0.0, floor: float = 0.0) -> dict[str, int | float]:
    """The thresholding settings a mask records in its ``hparams`` (only those that differ from the plain
    thresholding), so that :meth:`~chipnet_zoo.mask.Mask.rethreshold` can apply them again."""
    out: dict[str, int | float] = {}
    if round_to != 1:
        out["round_to"] = int(round_to)
    if min_keep:
        out["min_keep"] = float(min_keep)
    if floor:
        out["floor"] = float(floor)
    return out


def block_size(group, round_to: int = 1) -> int:
    """The channels of one block of ``group``: ``round_to``, or ``lcm(round_to, granularity)`` for a group
    of tied units (around grouped convs)."""
    return round_to if group.granularity == 1 else math.lcm(round_to, group.granularity)


def forced_blocks(group_size: int, round_to: int = 1, min_keep: float = 0.0) -> int:
    """How many leading blocks of ``round_to`` channels (a group's :func:`block_size`) a group of
    ``group_size`` always keeps: enough for ``ceil(min_keep · group_size)`` channels, and at least one."""
    need = max(1, math.ceil(min_keep * group_size - 1e-9))
    return max(1, min(math.ceil(need / round_to), math.ceil(group_size / round_to)))


def floor_fraction(cost: CostModel, budget: Budget | str, share: float, round_to: int = 1) -> float:
    """The width floor of a budget: the largest fraction ``w`` such that keeping ``ceil(w · size)`` channels
    of every group (a uniformly thinned model) costs at most ``share`` of ``budget``. ``share=0.5`` reserves
    half the budget for a uniform skeleton, so no group can collapse to a single channel while another
    stays full; the rest is allocated by score. Returns 0 when not even one channel per group fits."""
    budget = Budget.parse(budget)
    if share <= 0:
        return 0.0
    cache = cost.__dict__.setdefault("_floor_fractions", {})  # thresholding calls this often, same answer
    key = (budget, float(share), int(round_to))
    if key not in cache:
        cache[key] = _floor_fraction(cost, budget, share, round_to)
    return cache[key]


def _floor_fraction(cost: CostModel, budget: Budget, share: float, round_to: int) -> float:
    limit = share * budget.value
    zeros = torch.zeros(cost.graph.num_channels, dtype=torch.float64)
    # each group's blocks in one fixed order (the ratio depends only on how many blocks a group keeps)
    groups = [(g.size, block_size(g, round_to), _group_blocks(zeros, g, round_to)) for g in cost.graph.groups]

    def fits(w: float) -> bool:
        keep = torch.zeros(cost.graph.num_channels, dtype=torch.float64)
        for size, block, blocks in groups:
            keep[torch.cat(blocks[:forced_blocks(size, block, w)])] = 1.0
        return float(cost.ratio(budget.kind, keep)) <= limit + _EPS

    if not fits(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def smallest_mask(scores: torch.Tensor, cost: CostModel, round_to: int = 1, min_keep: float = 0.0) -> torch.Tensor:
    """The mask that keeps only the best-scoring channel (``round_to``: block) of every group, or with
    ``min_keep`` the best-scoring ``ceil(min_keep · size)`` channels (rounded up to whole blocks)."""
    forced = torch.zeros(scores.numel(), dtype=torch.bool)
    for group in cost.graph.groups:
        blocks = _group_blocks(scores, group, round_to)
        forced[torch.cat(blocks[:forced_blocks(group.size, block_size(group, round_to), min_keep)])] = True
    return forced


def _group_blocks(scores: torch.Tensor, group, round_to: int) -> list[torch.Tensor]:
    """A group's channels (global indices) in descending score order (ties by index), cut into blocks
    of ``round_to``. With tied units (grouped convs) the units are ranked by their mean score and a
    block is ``lcm(round_to, granularity)`` channels of whole units."""
    t = group.granularity
    if t == 1:
        local = torch.sort(-scores[group.indices].double(), stable=True).indices
        return list((local + group.offset).split(round_to))
    units = group.units()
    order = torch.sort(-scores[units].double().mean(1), stable=True).indices
    return list(units[order].flatten().split(math.lcm(round_to, t)))


def _block_scores(scores: torch.Tensor, group, round_to: int) -> list[float]:
    """The score of each of :func:`_group_blocks`' blocks: its weakest unit's (mean) score, so a group's
    blocks rank in order (vectorised: the last unit of each block in descending order)."""
    t = group.granularity
    unit_scores = scores[group.indices].double() if t == 1 else scores[group.units()].double().mean(1)
    ranked = -torch.sort(-unit_scores, stable=True).values
    per_block = round_to if t == 1 else math.lcm(round_to, t) // t
    n = ranked.numel()
    return ranked[torch.arange(per_block, n + per_block, per_block).clamp(max=n) - 1].tolist()


def threshold_scores(scores: torch.Tensor, cost: CostModel, budget: Budget | str, *,
                     round_to: int = 1, min_keep: float = 0.0, floor: float = 0.0,
                     latency_table=None) -> torch.Tensor:
    """The boolean keep-mask over all channels that meets ``budget`` exactly (a ceiling).

    Args:
        scores: one score per global channel (higher = more important), e.g. ChipNet's gate z.
        cost: the model's cost model.
        budget: the budget, e.g. ``Budget("flops", 0.25)`` or ``"flops:0.25"``.
        round_to: keep a multiple of this many channels per group (or the whole group); groups around
            grouped convs keep a multiple of ``lcm(round_to, group.granularity)``.
        min_keep: every group keeps at least this fraction of its channels (its best-scoring ones),
            a width floor; ``0`` keeps at least one channel (unit).
        floor: a width floor relative to the budget (see :func:`floor_fraction`): every group keeps at
            least the width of a uniformly thinned model that spends this share of the budget.
        latency_table: a :class:`~chipnet_zoo.latency.LatencyTable` of the model, for a ``latency`` budget when
            ``cost`` has none (the latency ratio is monotone in the kept set, so the search stays exact).

    Raises:
        UnreachableBudgetError: the target is below the smallest achievable ratio (named in the message).
        LatencyTableError: a latency budget and neither ``cost`` nor ``latency_table`` has a table.
    """
    budget = Budget.parse(budget)
    if latency_table is not None:
        cost = CostModel(cost.graph, latency_table)
    scores = scores.detach().to("cpu", torch.float64).flatten()
    if scores.numel() != cost.graph.num_channels:
        raise ValueError(f"expected {cost.graph.num_channels} scores, got {scores.numel()}")
    round_to, min_keep = check_round_to(round_to), check_min_keep(min_keep)
    if check_min_keep(floor) > 0:
        min_keep = max(min_keep, floor_fraction(cost, budget, floor, round_to))
    forced = smallest_mask(scores, cost, round_to, min_keep)
    smallest = float(cost.ratio(budget.kind, forced.to(torch.float64)))
    if smallest > budget.value + _EPS:
        raise UnreachableBudgetError(budget.kind, budget.value, smallest, round_to, min_keep, cost.graph.tied)
    if round_to > 1 or cost.graph.tied:
        return _threshold_blocks(scores, cost, budget, round_to, forced, min_keep)
    # rank: descending score, ties by ascending index (stable sort on the negated scores)
    order = torch.sort(-scores, stable=True).indices
    free = order[~forced[order]]
    mask = _with(forced, free[:_longest_fitting_prefix(forced, free, cost, budget)])
    return _fill(mask, order, cost, budget)


def _threshold_blocks(scores: torch.Tensor, cost: CostModel, budget: Budget, round_to: int,
                      forced: torch.Tensor, min_keep: float = 0.0) -> torch.Tensor:
    """:func:`threshold_scores` over blocks of ``round_to`` channels. A block's score is its lowest
    channel's, so each group's blocks rank in order and any prefix of the global ranking keeps a
    prefix of every group's blocks; a fill pass then adds, in rank order, next blocks that still fit."""
    blocks: list[tuple[float, int, int, torch.Tensor]] = []  # (score, group, position, indices)
    kept = []  # per group: how many of its blocks are kept (a prefix); the forced ones first
    for g, group in enumerate(cost.graph.groups):
        kept.append(forced_blocks(group.size, block_size(group, round_to), min_keep))
        group_blocks = _group_blocks(scores, group, round_to)
        for pos, (block, score) in enumerate(zip(group_blocks, _block_scores(scores, group, round_to))):
            if pos >= kept[g]:  # the leading blocks of every group are forced
                blocks.append((score, g, pos, block))
    blocks.sort(key=lambda b: (-b[0], b[1], b[2]))
    if not blocks:
        return forced
    ranked = torch.cat([b[3] for b in blocks])
    ends = torch.cumsum(torch.tensor([b[3].numel() for b in blocks]), 0).tolist()
    k = _longest_fitting_prefix(forced, ranked, cost, budget, ends)
    mask = _with(forced, ranked[:ends[k - 1]]) if k else forced
    for _, g, pos, _ in blocks[:k]:
        kept[g] = max(kept[g], pos + 1)
    dense = float(cost.dense[budget.kind])
    delta, slack = None, 0.0
    for _, g, pos, block in blocks[k:]:  # fill: next blocks of a group, in rank order, while they fit
        if pos != kept[g]:
            continue
        if delta is None:  # exact single-channel costs at the current mask: their sum is a lower bound
            keep = mask.to(torch.float64)
            slack = (budget.value - float(cost.ratio(budget.kind, keep))) * dense
            delta = cost.marginal(keep, budget.kind)
        if float(delta[block].sum()) > slack + _EPS * dense:
            continue  # cannot fit: skip the exact evaluation
        trial = _with(mask, block)
        if _fits(trial, cost, budget):
            mask, kept[g], delta = trial, pos + 1, None
    return mask


def _fits(mask: torch.Tensor, cost: CostModel, budget: Budget) -> bool:
    return float(cost.ratio(budget.kind, mask.to(torch.float64))) <= budget.value + _EPS


def _with(mask: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
    out = mask.clone()
    out[added] = True
    return out


def _longest_fitting_prefix(base: torch.Tensor, additions: torch.Tensor, cost: CostModel, budget: Budget,
                            ends: list[int] | None = None) -> int:
    """The largest ``k`` such that ``base`` plus the first ``k`` units of ``additions`` meets the budget
    (binary search; the ratio grows monotonically with ``k``; ``base`` itself must meet it). A unit is
    one channel, or with ``ends`` (cumulative unit sizes) unit ``i`` ends at ``additions[ends[i] - 1]``."""
    lo, hi = 0, additions.numel() if ends is None else len(ends)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(_with(base, additions[:mid if ends is None else ends[mid - 1]]), cost, budget):
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
