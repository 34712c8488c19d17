"""Budget-exact thresholding: one global threshold on the per-channel scores.

Channels are ranked by score (ties broken by index, so the result is deterministic) and every
group keeps its best channel. The threshold is the lowest one whose hard ratio is still ``<=`` the
budget (all ratios grow monotonically with the kept set, so a binary search over the ranking
is exact; the latency table is made monotone for this, :mod:`chipnet_zoo.latency`). A fill pass then adds, in rank order, lower-ranked channels that still fit, so the
mask is as close to the budget as the channel granularity allows.

``round_to=r`` keeps a multiple of ``r`` channels in every group (or the whole group): the unit of
pruning becomes a block of ``r`` channels of one group, taken in score order. CPU and GPU kernels
run much closer to their ideal speed on such widths (docs/benchmarks.md); the ratio is still a ceiling,
only coarser. ``round_to`` may also be a tuple with one block size per group (what ``round_to="auto"``
resolves to: per group, the widths a latency table shows are fast, :func:`chipnet_zoo.latency.auto_round_to`).

Groups around grouped convolutions (RegNet, ResNeXt) keep channels in *units*, one channel at the same
position of every convolution group (``group.granularity`` channels, see :mod:`chipnet_zoo.groups`);
a unit's score is the mean of its channels'. Such a group keeps a multiple of
``lcm(round_to, granularity)`` channels (or all of them): that is the granularity of the budget there.
"""

from __future__ import annotations

import math

import torch

from .budget import COUNT_KINDS, Budget
from .cost import CostModel
from .errors import UnreachableBudgetError

#: Slack for float64 round-off when comparing a ratio with its target.
_EPS = 1e-12


#: ``round_to`` as the thresholding takes it: one block size for every group, or per group a block size or
#: the widths it may keep (:func:`group_widths`).
RoundTo = int | tuple[int | tuple[int, ...], ...]
#: The ``round_to`` that is resolved per group from a measured latency table.
AUTO = "auto"
#: How a mask records per-group widths that were given, not measured.
PER_GROUP = "per-group"


class AutoWidths(tuple):
    """Per-group widths resolved from ``round_to="auto"`` (a mask records them as ``round_to: "auto"``)."""


def check_round_to(round_to: int | str | tuple) -> int | str | tuple:
    """``round_to`` as an ``int``, ``"auto"`` or a per-group tuple (of block sizes or of tuples of widths);
    ``ValueError`` otherwise."""
    if isinstance(round_to, str):
        if round_to.strip().lower() == AUTO:
            return AUTO
        try:
            round_to = int(round_to)
        except ValueError:
            raise ValueError(f"round_to must be a positive integer or 'auto', got {round_to!r}") from None
    if isinstance(round_to, (tuple, list)):
        out = tuple(tuple(sorted({_check_block(w) for w in r})) if isinstance(r, (tuple, list)) and r
                    else _check_block(r) for r in round_to)
        return AutoWidths(out) if isinstance(round_to, AutoWidths) else out
    return _check_block(round_to)


def _check_block(round_to: object) -> int:
    """One block size or width: a positive integer (``ValueError`` otherwise)."""
    if isinstance(round_to, bool) or not isinstance(round_to, (int, float)) or int(round_to) != round_to \
            or round_to < 1:
        raise ValueError(f"round_to must be a positive integer or 'auto', got {round_to!r}")
    return int(round_to)


def per_group(graph, round_to: RoundTo) -> tuple[int | tuple[int, ...], ...]:
    """The block size (or widths) of every group of ``graph`` (``ValueError`` for a tuple of another length)."""
    if isinstance(round_to, tuple):
        if len(round_to) != len(graph.groups):
            raise ValueError(f"round_to has {len(round_to)} block sizes, the model has {len(graph.groups)} groups")
        return round_to
    return (int(round_to),) * len(graph.groups)


def describe_round_to(round_to: RoundTo) -> str:
    """``round_to`` for messages: ``"4"``, or ``"per group"``."""
    return "per group" if isinstance(round_to, tuple) else str(round_to)


def check_min_keep(min_keep: float) -> float:
    """``min_keep`` as a ``float``; ``ValueError`` unless it is a fraction in [0, 1]."""
    if not 0.0 <= float(min_keep) <= 1.0:
        raise ValueError(f"min_keep must be a fraction in [0, 1], got {min_keep!r}")
    return float(min_keep)


#: The ``hparams`` keys :func:`threshold_hparams` writes.
THRESHOLD_KEYS = ("round_to", "round_to_groups", "min_keep", "floor")


def threshold_hparams(round_to: RoundTo = 1, min_keep: float = 0.0, floor: float = 0.0) -> dict[str, object]:
    """The thresholding settings a mask records in its ``hparams`` (only those that differ from the plain
    thresholding), so that :meth:`~chipnet_zoo.mask.Mask.rethreshold` can apply them again. Per-group block
    sizes or widths are recorded as ``round_to_groups: [...]`` with ``round_to: "auto"`` when they came from
    ``round_to="auto"`` (:class:`AutoWidths`), else ``round_to: "per-group"``."""
    out: dict[str, object] = {}
    if isinstance(round_to, tuple):
        out["round_to"] = AUTO if isinstance(round_to, AutoWidths) else PER_GROUP
        out["round_to_groups"] = [list(r) if isinstance(r, tuple) else int(r) for r in round_to]
    elif round_to != 1:
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


def group_widths(group, spec: int | tuple[int, ...] = 1) -> tuple[int, ...]:
    """The channel counts ``group`` may keep, ascending and ending at its size: the multiples of its
    :func:`block_size` for an ``int`` ``spec``, or the given widths (``round_to="auto"``'s fast widths)."""
    if isinstance(spec, tuple):
        widths = tuple(sorted({int(w) for w in spec if int(w) < group.size} | {group.size}))
        if widths[0] < 1 or any(w % group.granularity for w in widths):
            raise ValueError(f"group {group.name!r}: widths {spec} must be positive multiples of "
                             f"{group.granularity} up to {group.size}")
        return widths
    block = block_size(group, spec)
    return tuple(range(block, group.size, block)) + (group.size,)


def forced_blocks(widths: tuple[int, ...], min_keep: float = 0.0) -> int:
    """How many leading blocks of a group with kept widths ``widths`` (:func:`group_widths`) are always
    kept: enough for ``ceil(min_keep · size)`` channels, and at least one."""
    need = max(1, math.ceil(min_keep * widths[-1] - 1e-9))
    return next(i + 1 for i, w in enumerate(widths) if w >= need)


def floor_fraction(cost: CostModel, budget: Budget | str, share: float, round_to: RoundTo = 1) -> float:
    """The width floor of a budget: the largest fraction ``w`` such that keeping ``ceil(w · size)`` channels
    of every group (a uniformly thinned model) costs at most ``share`` of ``budget``. ``share=0.5`` reserves
    half the budget for a uniform skeleton, so no group can collapse to a single channel while another
    stays full; the rest is allocated by score. Returns 0 when not even one channel per group fits."""
    budget = Budget.parse(budget)
    if share <= 0:
        return 0.0
    cache = cost.__dict__.setdefault("_floor_fractions", {})  # thresholding calls this often, same answer
    rounds = per_group(cost.graph, round_to)
    key = (budget, float(share), rounds)
    if key not in cache:
        cache[key] = _floor_fraction(cost, budget, share, rounds)
    return cache[key]


def _floor_fraction(cost: CostModel, budget: Budget, share: float, rounds: tuple[int, ...]) -> float:
    limit = share * budget.value
    zeros = torch.zeros(cost.graph.num_channels, dtype=torch.float64)
    # each group's blocks in one fixed order (the ratio depends only on how many blocks a group keeps)
    groups = [(group_widths(g, r), _group_blocks(zeros, g, r)) for g, r in zip(cost.graph.groups, rounds)]

    def fits(w: float) -> bool:
        keep = torch.zeros(cost.graph.num_channels, dtype=torch.float64)
        for widths, blocks in groups:
            keep[torch.cat(blocks[:forced_blocks(widths, w)])] = 1.0
        return float(cost.ratio(budget.kind, keep)) <= limit + _EPS

    if not fits(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def smallest_mask(scores: torch.Tensor, cost: CostModel, round_to: RoundTo = 1,
                  min_keep: float = 0.0) -> torch.Tensor:
    """The mask that keeps only the best-scoring channel (``round_to``: block) of every group, or with
    ``min_keep`` the best-scoring ``ceil(min_keep · size)`` channels (rounded up to whole blocks)."""
    forced = torch.zeros(scores.numel(), dtype=torch.bool)
    for group, r in zip(cost.graph.groups, per_group(cost.graph, round_to)):
        blocks = _group_blocks(scores, group, r)
        forced[torch.cat(blocks[:forced_blocks(group_widths(group, r), min_keep)])] = True
    return forced


def _group_blocks(scores: torch.Tensor, group, spec: int | tuple[int, ...]) -> list[torch.Tensor]:
    """A group's channels (global indices) in descending score order (ties by index), cut into blocks at
    its :func:`group_widths`. With tied units (grouped convs) the units are ranked by their mean score and
    the blocks hold whole units."""
    t = group.granularity
    if t == 1:
        ranked = torch.sort(-scores[group.indices].double(), stable=True).indices + group.offset
    else:
        units = group.units()
        ranked = units[torch.sort(-scores[units].double().mean(1), stable=True).indices].flatten()
    widths = group_widths(group, spec)
    return list(ranked.split([b - a for a, b in zip((0,) + widths[:-1], widths)]))


def _block_scores(scores: torch.Tensor, group, spec: int | tuple[int, ...]) -> list[float]:
    """The score of each of :func:`_group_blocks`' blocks: its weakest unit's (mean) score, so a group's
    blocks rank in order (vectorised: the last unit of each block in descending order)."""
    t = group.granularity
    unit_scores = scores[group.indices].double() if t == 1 else scores[group.units()].double().mean(1)
    ranked = -torch.sort(-unit_scores, stable=True).values
    return ranked[torch.tensor(group_widths(group, spec)) // t - 1].tolist()


def threshold_scores(scores: torch.Tensor, cost: CostModel, budget: Budget | str, *,
                     round_to: RoundTo = 1, min_keep: float = 0.0, floor: float = 0.0,
                     latency_table=None) -> torch.Tensor:
    """The boolean keep-mask over all channels that meets ``budget`` exactly (a ceiling).

    Args:
        scores: one score per global channel (higher = more important), e.g. ChipNet's gate z.
        cost: the model's cost model.
        budget: the budget, e.g. ``Budget("flops", 0.25)`` or ``"flops:0.25"``.
        round_to: keep a multiple of this many channels per group (or the whole group), or a tuple with, per
            group, such a block size or a tuple of the widths it may keep; groups around grouped convs keep a multiple of
            ``lcm(round_to, group.granularity)``. (``"auto"`` is resolved before this, from a latency table:
            :func:`chipnet_zoo.latency.resolve_round_to`.)
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
    if round_to == AUTO:
        raise ValueError("round_to='auto' must be resolved per group first (chipnet_zoo.latency.resolve_round_to)")
    rounds = per_group(cost.graph, round_to)
    if check_min_keep(floor) > 0:
        min_keep = max(min_keep, floor_fraction(cost, budget, floor, round_to))
    forced = smallest_mask(scores, cost, round_to, min_keep)
    smallest = float(cost.ratio(budget.kind, forced.to(torch.float64)))
    if smallest > budget.value + _EPS:
        raise UnreachableBudgetError(budget.kind, budget.value, smallest, describe_round_to(round_to), min_keep,
                                     cost.graph.tied)
    if any(r != 1 for r in rounds) or cost.graph.tied:
        return _threshold_blocks(scores, cost, budget, rounds, forced, min_keep)
    # rank: descending score, ties by ascending index (stable sort on the negated scores)
    order = torch.sort(-scores, stable=True).indices
    free = order[~forced[order]]
    mask = _with(forced, free[:_longest_fitting_prefix(forced, free, cost, budget)])
    return _fill(mask, order, cost, budget)


def _threshold_blocks(scores: torch.Tensor, cost: CostModel, budget: Budget, rounds: tuple[int, ...],
                      forced: torch.Tensor, min_keep: float = 0.0) -> torch.Tensor:
    """:func:`threshold_scores` over blocks of ``rounds[g]`` channels in group ``g``. A block's score is its lowest
    channel's, so each group's blocks rank in order and any prefix of the global ranking keeps a
    prefix of every group's blocks; a fill pass then adds, in rank order, next blocks that still fit."""
    blocks: list[tuple[float, int, int, torch.Tensor]] = []  # (score, group, position, indices)
    kept = []  # per group: how many of its blocks are kept (a prefix); the forced ones first
    for g, (group, round_to) in enumerate(zip(cost.graph.groups, rounds)):
        kept.append(forced_blocks(group_widths(group, round_to), min_keep))
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
    # A count is bilinear in the keep vector with non-negative coefficients: a block's cost is at least the sum
    # of its channels' marginals, and a marginal only grows as channels are added, so marginals taken at an
    # earlier (smaller) mask stay a lower bound and can skip blocks that cannot fit. A latency table is
    # monotone but not convex in width, so a sum of single-channel steps can exceed a block's real cost:
    # there every candidate block gets the exact check.
    bound = _FILL_BOUND and budget.kind in COUNT_KINDS
    slack = (budget.value - _ratio(mask, cost, budget)) * dense
    delta = cost.marginal(mask.to(torch.float64), budget.kind) if bound else None
    for _, g, pos, block in blocks[k:]:  # fill: next blocks of a group, in rank order, while they fit
        if pos != kept[g]:
            continue
        if delta is not None and float(delta[block].sum()) > slack + _EPS * dense:
            continue  # cannot fit: skip the exact evaluation
        trial = _with(mask, block)
        used = _ratio(trial, cost, budget)
        if used <= budget.value + _EPS:
            mask, kept[g], slack = trial, pos + 1, (budget.value - used) * dense
    return mask


#: The block fill skips the exact check of blocks whose marginal lower bound exceeds the slack (off: every
#: candidate block gets the exact check; the tests compare the two).
_FILL_BOUND = True


def _ratio(mask: torch.Tensor, cost: CostModel, budget: Budget) -> float:
    return float(cost.ratio(budget.kind, mask.to(torch.float64)))


def _fits(mask: torch.Tensor, cost: CostModel, budget: Budget) -> bool:
    return _ratio(mask, cost, budget) <= budget.value + _EPS


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
        slack = (budget.value - _ratio(mask, cost, budget)) * dense
        if slack <= 0:
            break
        delta = cost.marginal(mask.to(torch.float64), budget.kind)
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
