"""Budget-exact masks and exact physical slimming across architectures (docs/architecture.md).

For every architecture, budget kind and target: the hard ratio is <= the target and within 0.01 of
it; the cost model's params and MACs equal what the slimmed model measures; the masked model (hard
gates) and the slimmed model agree in eval mode; the slimmed model carries no gates.
"""

from __future__ import annotations

import copy

import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo.budget import COUNT_KINDS as BUDGET_KINDS
from chipnet_zoo.cost import CostModel, measure_params_macs
from chipnet_zoo.gates import FixedGates, attach_gates, has_gates
from chipnet_zoo.groups import build_channel_graph
from chipnet_zoo.slim import slim_model
from chipnet_zoo.threshold import threshold_scores

ARCHS = ["resnet56", "wrn-16-4", "mobilenetv2-cifar", "tv/resnet50", "tv/mobilenet_v2",
         pytest.param("preresnet164", marks=pytest.mark.slow),  # ~20 s on 2 cores; its FLOPs case stays fast below
         pytest.param("tv/densenet121", marks=pytest.mark.slow)]  # concatenations; ~40 s on 2 cores
TARGETS = [0.5, 0.25, 0.1]


def _randomize_bn(model: torch.nn.Module, seed: int) -> None:
    """Random BN statistics and affine parameters, so that eval-mode outputs are far from trivial
    (a fresh model's BN is the identity) and BN biases on pruned channels would show up."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)


def _setup(name: str):
    torch.manual_seed(0)
    model = cz.create_model(name, num_classes=10)
    _randomize_bn(model, 0)
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    graph = build_channel_graph(model, x)
    return name, model, x, graph, CostModel(graph)


@pytest.fixture(scope="module", params=ARCHS)
def arch_setup(request):
    return _setup(request.param)


def test_dense_cost_model_matches_measurement(arch_setup):
    _, model, x, _, cost = arch_setup
    params, macs = measure_params_macs(model, x)
    assert int(cost.dense["params"]) == params
    assert int(cost.dense["flops"]) == macs


@pytest.mark.parametrize("kind", BUDGET_KINDS)
def test_budget_exact_slim_equals_masked(arch_setup, kind):
    _check_budget_exact(*arch_setup, kind)


def test_budget_exact_on_the_deepest_preresnet_flops():
    """The fast run's share of preresnet164 (164 layers, pre-activation); its other kinds run with the slow tests."""
    _check_budget_exact(*_setup("preresnet164"), "flops")


def _check_budget_exact(name, model, x, graph, cost, kind):
    batch = torch.randn(4, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    for i, target in enumerate(TARGETS):
        scores = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(100 + i))
        keep = threshold_scores(scores, cost, cz.Budget(kind, target))
        ratios = cost.hard_ratios(keep)
        assert ratios[kind] <= target, (name, kind, target, ratios)
        assert target - ratios[kind] <= 0.01, (name, kind, target, ratios)

        slim = slim_model(model, graph, keep, x)
        assert not has_gates(slim)
        params, macs = measure_params_macs(slim, x)
        counts = cost.hard_counts(keep)
        assert counts["params"] == params, (name, kind, target)
        assert counts["flops"] == macs, (name, kind, target)
        assert params < sum(p.numel() for p in model.parameters())

        masked = attach_gates(copy.deepcopy(model), FixedGates(graph, keep), graph)
        masked.eval()
        slim.eval()
        with torch.no_grad():
            expected, actual = masked(batch), slim(batch)
        scale = expected.abs().max().item()
        assert scale > 1e-3  # a non-trivial output
        # <= 1e-4 absolute for outputs of order one; relative for the deep nets whose random-BN logits
        # reach ~1e3, where float32 rounding alone is ~1e-4
        assert (expected - actual).abs().max().item() <= 1e-4 * max(1.0, scale), (name, kind, target)


# --- round_to: channel counts in multiples of r ---------------------------------------------------
@pytest.mark.parametrize("arch", ["resnet56", "mobilenetv2-cifar"])
@pytest.mark.parametrize("kind,target", [("flops", 0.5), ("flops", 0.25), ("params", 0.25), ("channels", 0.5)])
def test_round_to_keeps_multiples_and_meets_the_budget(arch, kind, target):
    from chipnet_zoo.threshold import threshold_scores

    model = cz.create_model(arch, num_classes=10)
    pruner = cz.ChipNetPruner(model, "flops:0.5", example_input=torch.randn(1, 3, 32, 32))
    scores = torch.rand(pruner.graph.num_channels, generator=torch.Generator().manual_seed(0))
    keep = threshold_scores(scores, pruner.cost, f"{kind}:{target}", round_to=8)
    ratio = float(pruner.cost.hard_ratios(keep)[kind])
    assert ratio <= target and target - ratio <= 0.01
    for group in pruner.graph.groups:
        kept = keep[group.indices]
        n = int(kept.sum())
        assert n == group.size or (n > 0 and n % 8 == 0), (group.name, n, group.size)
        # the kept channels are the group's best-scoring ones
        group_scores = scores[group.indices]
        if 0 < n < group.size:
            assert group_scores[kept].min() >= group_scores[~kept].max()


def test_round_to_in_the_pruner_mask_and_rethreshold():
    from chipnet_zoo.errors import UnreachableBudgetError

    model = cz.create_model("resnet20", num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    pruner = cz.ChipNetPruner(model, "flops:0.3", example_input=x, round_to=8)
    mask = pruner.mask()
    assert mask.ratios["flops"] <= 0.3 and mask.metadata["hparams"]["round_to"] == 8
    assert all(int(k.sum()) % 8 == 0 or int(k.sum()) == k.numel() for k in mask.keep.values())
    pruner.remove()
    small = mask.slim(model)
    assert sum(p.numel() for p in small.parameters()) == round(mask.ratios["params"] * sum(
        p.numel() for p in model.parameters()))
    again = mask.rethreshold("flops:0.5")  # keeps the mask's round_to
    assert again.metadata["hparams"]["round_to"] == 8 and again.ratios["flops"] <= 0.5
    assert all(int(k.sum()) % 8 == 0 or int(k.sum()) == k.numel() for k in again.keep.values())
    with pytest.raises(UnreachableBudgetError, match=r"at least 8 channels \(round_to\)"):
        cz.ChipNetPruner(cz.create_model("resnet20", num_classes=10), "flops:0.05", example_input=x, round_to=8)
    with pytest.raises(ValueError, match="round_to must be a positive integer"):
        cz.ChipNetPruner(cz.create_model("resnet20", num_classes=10), "flops:0.5", example_input=x, round_to=0)


# --- width floors: min_keep (absolute) and floor (a share of the budget) ----------------------------
@pytest.mark.parametrize("arch,kind,target,round_to", [
    ("resnet56", "flops", 0.125, 1), ("resnet56", "flops", 0.03125, 4), ("resnet56", "params", 0.0625, 1),
    ("mobilenetv2-cifar", "flops", 0.03125, 1), ("mobilenetv2-cifar", "channels", 0.25, 4)])
def test_floor_keeps_a_uniform_skeleton_and_meets_the_budget(arch, kind, target, round_to):
    import math

    from chipnet_zoo.threshold import floor_fraction, smallest_mask, threshold_scores

    model = cz.create_model(arch, num_classes=10)
    pruner = cz.ChipNetPruner(model, "flops:0.5", example_input=torch.randn(1, 3, 32, 32))
    cost = pruner.cost
    scores = torch.rand(pruner.graph.num_channels, generator=torch.Generator().manual_seed(1))
    w = floor_fraction(cost, f"{kind}:{target}", 0.5, round_to)
    skeleton = smallest_mask(scores, cost, round_to, w)
    if w == 0:  # not even one block per group fits in half the budget: the floor is one block
        assert float(cost.hard_ratios(smallest_mask(scores, cost, round_to))[kind]) > 0.5 * target
    else:
        assert w < 1 and float(cost.hard_ratios(skeleton)[kind]) <= 0.5 * target + 1e-12
    # the largest such width: a little more no longer fits in half the budget
    assert float(cost.hard_ratios(smallest_mask(scores, cost, round_to, min(1.0, w + 0.02)))[kind]) > 0.5 * target
    keep = threshold_scores(scores, cost, f"{kind}:{target}", round_to=round_to, floor=0.5)
    ratio = float(cost.hard_ratios(keep)[kind])
    assert ratio <= target + 1e-12 and target - ratio <= 0.01
    assert bool((keep | ~skeleton).all())  # the skeleton is kept
    for group in pruner.graph.groups:
        n = int(keep[group.indices].sum())
        assert n >= min(group.size, math.ceil(w * group.size - 1e-9)), group.name
        assert n == group.size or n % round_to == 0
    without = threshold_scores(scores, cost, f"{kind}:{target}", round_to=round_to)
    assert float(cost.hard_ratios(without)[kind]) <= target + 1e-12


def test_floor_and_min_keep_in_the_pruner_baselines_and_rethreshold():
    from chipnet_zoo.baselines import baseline_mask
    from chipnet_zoo.errors import UnreachableBudgetError

    x = torch.randn(1, 3, 32, 32)
    model = cz.create_model("resnet20", num_classes=10)
    pruner = cz.ChipNetPruner(model, "flops:0.0625", example_input=x, floor=0.5)
    mask = pruner.mask()
    assert mask.ratios["flops"] <= 0.0625 and mask.metadata["hparams"]["floor"] == 0.5
    assert min(mask.kept().values()) >= 2  # resnet20 at 1/16 of its FLOPs: no group is left with 1 channel
    pruner.remove()
    again = mask.rethreshold("flops:0.25")  # the floor is relative: recomputed for the new budget
    assert again.metadata["hparams"]["floor"] == 0.5 and again.ratios["flops"] <= 0.25
    assert min(again.kept().values()) > min(mask.kept().values())
    base = baseline_mask(model, "params:0.1", "l1", example_input=x, min_keep=0.25)
    assert base.ratios["params"] <= 0.1 and base.metadata["hparams"]["min_keep"] == 0.25
    assert all(int(k.sum()) >= -(-k.numel() // 4) for k in base.keep.values())
    with pytest.raises(UnreachableBudgetError, match=r"at least 0.5 of its channels \(min_keep\)"):
        cz.ChipNetPruner(model, "flops:0.1", example_input=x, min_keep=0.5)
    with pytest.raises(ValueError, match="must be a fraction in"):
        cz.ChipNetPruner(model, "flops:0.5", example_input=x, floor=1.5)


@pytest.mark.parametrize("arch,size", [("tv/regnet_x_400mf", 64), ("mobilenetv2-cifar", 32)])
def test_fill_lower_bound_skips_only_blocks_that_cannot_fit(arch, size, monkeypatch):
    """The block fill skips a block when its channels' marginal costs (taken at an earlier, smaller mask)
    already exceed the slack; the masks must be those of checking every candidate block exactly."""
    from chipnet_zoo import threshold
    from chipnet_zoo.errors import UnreachableBudgetError

    model = cz.create_model(arch, num_classes=10)
    x = torch.randn(1, 3, size, size)
    graph = build_channel_graph(model, x)
    cost = CostModel(graph)
    cases = [(kind, target, seed) for kind in BUDGET_KINDS for target in (0.5, 0.1) for seed in (0, 1)]
    masks = {}
    for bound in (True, False):
        monkeypatch.setattr(threshold, "_FILL_BOUND", bound)
        for kind, target, seed in cases:
            scores = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(seed))
            try:
                masks[bound, kind, target, seed] = threshold_scores(scores, cost, cz.Budget(kind, target), round_to=8)
            except UnreachableBudgetError:
                masks[bound, kind, target, seed] = None
    reached = [c for c in cases if masks[(True, *c)] is not None]
    assert len(reached) >= len(cases) // 2
    for kind, target, seed in cases:
        exact, bounded = masks[False, kind, target, seed], masks[True, kind, target, seed]
        assert (exact is None and bounded is None) or torch.equal(exact, bounded), (arch, kind, target, seed)
