"""Baselines (random, L1, Network Slimming) meet every budget exactly through the shared thresholding."""

from __future__ import annotations

import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo.baselines import BASELINES, baseline_mask, channel_scores
from chipnet_zoo.cost import measure_params_macs
from chipnet_zoo.errors import UnreachableBudgetError
from chipnet_zoo.groups import build_channel_graph


@pytest.fixture(scope="module")
def trained_like():
    """resnet8 (1 channel, 28x28) with distinct filter norms and BN scales, as after training."""
    torch.manual_seed(0)
    model = cz.create_model("resnet8", num_classes=10, in_chans=1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.05, 1.0)
    return model, torch.randn(1, 1, 28, 28)


@pytest.mark.parametrize("kind", ["channels", "volume", "params", "flops"])
@pytest.mark.parametrize("method", BASELINES)
def test_every_baseline_meets_each_budget(trained_like, kind, method):
    model, x = trained_like
    for target in (0.5, 0.25, 0.125, 0.0625):
        mask = baseline_mask(model, cz.Budget(kind, target), method, example_input=x, dataset="t")
        ratio = mask.ratios[kind]
        assert ratio <= target + 1e-12, (method, kind, target, ratio)
        assert target - ratio <= 0.01, (method, kind, target, ratio)
        assert mask.metadata["method"] == method and mask.metadata["dataset"] == "t"
        assert mask.budget == cz.Budget(kind, target)


def test_flops_ratio_is_what_the_slimmed_model_measures(trained_like):
    model, x = trained_like
    mask = baseline_mask(model, "flops:0.125", "l1", example_input=x)
    dense_params, dense_macs = measure_params_macs(model, x)
    params, macs = measure_params_macs(mask.slim(model, x), x)
    assert macs / dense_macs == pytest.approx(mask.ratios["flops"], abs=1e-9)
    assert params / dense_params == pytest.approx(mask.ratios["params"], abs=1e-9)


def test_scores_follow_the_weights(trained_like):
    model, x = trained_like
    graph = build_channel_graph(model, x)
    modules = dict(model.named_modules())
    slim = channel_scores(model, graph, "slimming")
    l1 = channel_scores(model, graph, "l1")
    # a group with one producer and one BN: scores are exactly that conv's L1 norms and that BN's |γ|
    layer = next(la for la in graph.layers if la.kind == "conv" and la.name == "layer1.0.conv1")
    expect_l1 = modules[layer.name].weight.detach().abs().sum((1, 2, 3)).double()
    assert torch.allclose(l1[layer.out_global], expect_l1[layer.out_local])
    bn = next(la for la in graph.layers if la.kind == "bn" and la.name == "layer1.0.bn1")
    assert torch.allclose(slim[bn.out_global], modules[bn.name].weight.detach().abs().double()[bn.out_local])
    # random: seeded
    assert torch.equal(channel_scores(model, graph, "random", seed=3), channel_scores(model, graph, "random", seed=3))
    assert not torch.equal(channel_scores(model, graph, "random", seed=3), channel_scores(model, graph, "random", seed=4))


def test_l1_mask_keeps_the_largest_filters(trained_like):
    model, x = trained_like
    a = baseline_mask(model, "flops:0.25", "l1", example_input=x)
    b = baseline_mask(model, "flops:0.25", "random", example_input=x, seed=1)
    assert not torch.equal(a.keep_vector(), b.keep_vector())
    graph = build_channel_graph(model, x)
    scores = channel_scores(model, graph, "l1")
    keep = a.keep_vector()
    for g in graph.groups:  # within every group, no dropped channel outranks a kept one
        s, k = scores[g.indices], keep[g.indices]
        if (~k).any():
            assert s[k].min() >= s[~k].max()


def test_unknown_method_and_unreachable_budget(trained_like, monkeypatch):
    model, x = trained_like
    import chipnet_zoo.groups as groups

    def no_graph(*args, **kwargs):
        raise AssertionError("the graph was built before the arguments were checked")

    with monkeypatch.context() as m:  # bad arguments fail before the graph (and any latency measurement)
        m.setattr(groups, "build_channel_graph", no_graph)
        with pytest.raises(ValueError, match="unknown baseline"):
            baseline_mask(model, "latency:0.5", "magic", example_input=x)
        with pytest.raises(ValueError):
            baseline_mask(model, "latency:0.5", "l1", example_input=x, floor=-1.0)
    with pytest.raises(UnreachableBudgetError):
        baseline_mask(model, "params:0.0001", "l1", example_input=x)


@pytest.mark.parametrize("method", ["random", "l1", "slimming"])
def test_baselines_round_to(method):
    model = cz.create_model("resnet20", num_classes=10)
    mask = baseline_mask(model, "flops:0.25", method, example_input=torch.randn(1, 3, 32, 32), round_to=8)
    assert 0.24 <= mask.ratios["flops"] <= 0.25 and mask.metadata["hparams"]["round_to"] == 8
    assert all(int(k.sum()) % 8 == 0 or int(k.sum()) == k.numel() for k in mask.keep.values())


def test_one_scorer_protocol_for_chipnet_and_the_baselines(trained_like):
    """Every ranking is a scorer(group) -> per-channel scores; all feed the same thresholding."""
    import copy

    from chipnet_zoo.cost import CostModel
    from chipnet_zoo.scorers import GateScorer, L1Scorer, baseline_scorer, score_vector
    from chipnet_zoo.threshold import threshold_scores

    model, x = trained_like
    graph = build_channel_graph(model, x)
    for method in BASELINES:
        scorer = baseline_scorer(method, model, graph, seed=1)
        for group in graph.groups:
            assert scorer(group).shape == (group.size,)
    l1 = score_vector(L1Scorer(model, graph), graph)
    assert torch.equal(l1, channel_scores(model, graph, "l1"))
    keep = threshold_scores(l1, CostModel(graph), "flops:0.25")
    assert torch.equal(keep, baseline_mask(model, "flops:0.25", "l1", example_input=x).keep_vector())

    def by_width(group):  # any callable of the protocol: here, keep the widest groups
        return torch.full((group.size,), float(group.size), dtype=torch.float64)

    wide = threshold_scores(score_vector(by_width, graph), CostModel(graph), "flops:0.5")
    assert wide.any() and not wide.all()
    pruner = cz.ChipNetPruner(copy.deepcopy(model), "flops:0.25", example_input=x)
    gates = score_vector(GateScorer(pruner), pruner.graph)
    assert torch.equal(gates, pruner.z())
    assert torch.equal(pruner.hard_keep(), threshold_scores(gates, pruner.cost, "flops:0.25", round_to=pruner.round_to,
                                                            min_keep=pruner.min_keep, floor=pruner.floor))
