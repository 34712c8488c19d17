"""Any CNN a user brings: grouped convolutions (RegNet, ResNeXt) pruned exactly in units across conv
groups, timm models by name, and refusals (named layer and reason) for what cannot be pruned exactly."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

import chipnet_zoo as cz
from chipnet_zoo.baselines import baseline_mask
from chipnet_zoo.cost import CostModel, measure_params_macs
from chipnet_zoo.errors import (
    InexactModelError,
    UnknownModelError,
    UnsupportedLayerError,
    UnsupportedModelError,
)
from chipnet_zoo.groups import build_channel_graph
from chipnet_zoo.slim import slim_model
from chipnet_zoo.threshold import _group_blocks, threshold_scores
from chipnet_zoo.verify import check_slim, randomize_batchnorm

pytest.importorskip("timm")

GROUPED = ["tv/regnet_x_400mf", "timm/regnety_002", "timm/resnext26ts"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=GROUPED)
def grouped(request):
    torch.manual_seed(0)
    model = cz.create_model(request.param, num_classes=10).eval()
    randomize_batchnorm(model, 1)
    x = torch.randn(1, 3, 64, 64)
    graph = build_channel_graph(model, x)
    return request.param, model, x, graph, CostModel(graph)


def _grouped_layers(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and 1 < m.groups < m.out_channels]


def _whole_units(graph, keep: torch.Tensor) -> bool:
    for group in graph.groups:
        unit_keep = keep[group.units()]
        if bool((unit_keep.any(1) & ~unit_keep.all(1)).any()) or not bool(unit_keep.any()):
            return False
    return True


def test_grouped_convs_tie_units_across_conv_groups(grouped):
    name, model, _, graph, _ = grouped
    tied = [g for g in graph.groups if g.granularity > 1]
    assert tied, name
    for group in tied:
        units = group.units()
        assert units.shape[0] * units.shape[1] == group.size
        assert sorted(units.flatten().tolist()) == list(range(group.offset, group.offset + group.size))
    assert int(CostModel(graph).dense["params"]) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind,target", [("flops", 0.5), ("params", 0.3), ("channels", 0.5), ("volume", 0.25)])
def test_grouped_budget_exact_and_slim_equals_masked(grouped, kind, target):
    name, model, x, graph, cost = grouped
    scores = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(3))
    keep = threshold_scores(scores, cost, f"{kind}:{target}")
    ratio = cost.hard_ratios(keep)[kind]
    assert ratio <= target, (name, kind, ratio)
    assert _whole_units(graph, keep)
    # as close as the granularity allows: no group's next block (unit) still fits under the budget
    for group in graph.groups:
        blocks = _group_blocks(scores.double(), group, 1)
        kept = sum(bool(keep[b].all()) for b in blocks)
        if kept < len(blocks):
            trial = keep.clone()
            trial[blocks[kept]] = True
            assert cost.hard_ratios(trial)[kind] > target, (name, group.name)
    slim = slim_model(model, graph, keep, x)  # runs check_slim: outputs and counts
    params, macs = measure_params_macs(slim, x)
    assert (params, macs) == (cost.hard_counts(keep)["params"], cost.hard_counts(keep)["flops"])
    for conv in _grouped_layers(slim):
        assert conv.in_channels % conv.groups == 0 and conv.out_channels % conv.groups == 0
    assert check_slim(model, graph, keep, slim, torch.randn(1, 3, 64, 64)) <= 1e-4 * 10


def test_round_to_and_units_combine():
    model = cz.create_model("tv/regnet_x_400mf", num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    graph = build_channel_graph(model, x)
    cost = CostModel(graph)
    scores = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(0))
    keep = threshold_scores(scores, cost, "flops:0.5", round_to=8)
    assert cost.hard_ratios(keep)["flops"] <= 0.5 and _whole_units(graph, keep)
    for group in graph.groups:
        n, step = int(keep[group.indices].sum()), math.lcm(8, group.granularity)
        assert n == group.size or n % step == 0, (group.name, n, step)
    slim_model(model, graph, keep, x)


def test_pruner_baselines_and_rethreshold_on_a_grouped_model():
    model = cz.create_model("timm/regnety_002", num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    pruner = cz.ChipNetPruner(model, "flops:0.4", example_input=x, round_to=4)
    mask = pruner.mask()
    pruner.remove()
    graph = pruner.graph
    assert mask.ratios["flops"] <= 0.4 and _whole_units(graph, mask.keep_vector())
    again = mask.rethreshold("params:0.3", model=model, example_input=x)
    assert again.ratios["params"] <= 0.3 and _whole_units(graph, again.keep_vector())
    for method in ("l1", "slimming", "random"):
        base = baseline_mask(model, "flops:0.3", method, example_input=x)
        assert base.ratios["flops"] <= 0.3 and _whole_units(graph, base.keep_vector()), method
    small = again.slim(model, x)
    assert sum(p.numel() for p in small.parameters()) == round(
        again.ratios["params"] * sum(p.numel() for p in model.parameters()))


def test_slim_refuses_a_mask_that_splits_a_unit():
    model = cz.create_model("tv/regnet_x_400mf", num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    graph = build_channel_graph(model, x)
    group = next(g for g in graph.groups if g.granularity > 1)
    keep = torch.ones(graph.num_channels, dtype=torch.bool)
    keep[group.units()[0, 0]] = False
    with pytest.raises(ValueError, match="keeps part of a unit"):
        slim_model(model, graph, keep, x)


# --- refusals: never a wrong mask, a crash deep inside or a hang -----------------------------------
REFUSED = [
    ("tv/convnext_tiny", "features.0.1", "LayerNorm2d normalises across channels"),
    ("timm/convnext_atto", "stem.1", "LayerNorm2d normalises across channels"),
    ("timm/mixnet_s", "blocks.", "split"),
    ("timm/cspresnet50", "stages.", "split"),
    ("timm/rexnet_100", "features.", "sliced to channels"),
]


@pytest.mark.parametrize("arch,layer,reason", REFUSED)
def test_refused_at_construction_with_layer_and_reason(arch, layer, reason):
    model = cz.create_model(arch, num_classes=10)
    start = time.perf_counter()
    with pytest.raises(UnsupportedLayerError) as info:
        cz.ChipNetPruner(model, "flops:0.3", example_input=torch.randn(1, 3, 64, 64))
    assert time.perf_counter() - start < 20  # rexnet_100 used to spend minutes building the groups
    assert info.value.layer.startswith(layer), info.value.layer
    assert reason in info.value.reason and info.value.layer in str(info.value)


def test_shufflenet_refused():
    with pytest.raises(UnsupportedModelError, match="ShuffleNet"):
        cz.ChipNetPruner(cz.create_model("tv/shufflenet_v2_x0_5", num_classes=10), "flops:0.5",
                         example_input=torch.randn(1, 3, 64, 64))


class _ChannelCentred(nn.Module):
    """Subtracts the mean over channels: a zeroed channel is not a removed one, and no structural
    check knows that (Torch-Pruning follows it as an element-wise op)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = y - y.mean(1, keepdim=True)
        y = torch.relu(self.bn2(self.conv2(y)))
        return self.fc(y.mean((2, 3)))


def test_probe_refuses_what_the_structure_does_not_show():
    model = _ChannelCentred().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(InexactModelError) as info:
        cz.ChipNetPruner(model, "flops:0.5", example_input=x)
    assert info.value.layer == "conv2" and info.value.max_abs_diff > 1e-4
    # without the construction check the mask is made, but slimming refuses to return the model
    pruner = cz.ChipNetPruner(model, "flops:0.5", example_input=x, check=False)
    mask = pruner.mask()
    pruner.remove()
    with pytest.raises(InexactModelError, match="'conv2'"):
        mask.slim(model, x)


class _PReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.PReLU(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        return self.fc(torch.relu(self.bn2(self.conv2(y))).mean((2, 3)))


def test_uncounted_parameters_are_refused_by_name():
    with pytest.raises(UnsupportedLayerError, match="'act'.*PReLU"):
        cz.ChipNetPruner(_PReLUNet(), "flops:0.5", example_input=torch.randn(1, 3, 16, 16))


# --- timm by name ----------------------------------------------------------------------------------
def test_timm_models_by_name():
    model = cz.create_model("timm/resnet18", num_classes=7, in_chans=1)
    assert model.arch_name == "timm/resnet18" and model.classifier_name == "fc"
    assert model.default_input_size == (1, 224, 224)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert "timm/regnety_002" in cz.list_models("timm/regnety_0*")
    with pytest.raises(UnknownModelError, match="timm/resnet18"):
        cz.create_model("timm/resnet181")


def test_timm_pretrained_from_a_local_file_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = cz.create_model("timm/resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    loaded = cz.create_model("timm/resnet18", num_classes=10, pretrained=True,
                             pretrained_cfg_overlay={"file": str(path)})
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    assert loaded.fc.out_features == 10
    fresh = cz.create_model("timm/resnet18", num_classes=10)  # no download, random weights
    assert not torch.equal(fresh.conv1.weight, source.conv1.weight)


def test_timm_in_the_pruner_and_cli_arch_check():
    from chipnet_zoo.models import is_model

    assert is_model("timm/efficientnet_b0") and not is_model("timm/no_such_net")
    model = cz.create_model("timm/efficientnet_b0", num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    pruner = cz.ChipNetPruner(model, "flops:0.4", example_input=x)
    mask = pruner.mask()
    pruner.remove()
    assert mask.ratios["flops"] <= 0.4 and mask.arch == "timm/efficientnet_b0"
    mask.slim(model, x)


# --- through the CLI: prune, slim and fine-tune ------------------------------------------------------
SMALL = ["--dataset", "mnist5k", "--max-samples", "64", "--image-size", "32", "--recipe", "tiny", "--no-progress"]


@pytest.mark.parametrize("arch", [
    pytest.param("timm/regnety_002", marks=pytest.mark.slow),  # ~11 s; grouped models stay in the fast run above
    pytest.param("tv/regnet_x_400mf", marks=pytest.mark.slow),
    pytest.param("timm/resnext26ts", marks=pytest.mark.slow),
    pytest.param("tv/resnext50_32x4d", marks=pytest.mark.slow),
])
def test_grouped_models_through_the_cli(tmp_path, arch):
    import json

    from chipnet_zoo.cli import main

    t, p, f = tmp_path / "train", tmp_path / "prune", tmp_path / "finetune"
    assert main(["train", "--arch", arch, *SMALL, "--epochs", "1", "--out", str(t)]) == 0
    assert main(["prune", "--from", str(t), "--budget", "flops:0.5", "--epochs", "1", "--out", str(p),
                 "--no-progress"]) == 0
    assert main(["finetune", "--from", str(p), "--out", str(f), "--epochs", "1", "--no-progress"]) == 0
    metrics = json.loads((f / "metrics.json").read_text())
    assert metrics["ratios"]["flops"] <= 0.5 and metrics["finished"] is True


# --- the coverage table's checks on a fast subset (benchmarks/model_coverage.py) -----------------------
def _coverage_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "model_coverage.py"
    spec = importlib.util.spec_from_file_location("model_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", ["timm/mobilenetv3_small_100", "timm/regnetx_002", "timm/ghostnet_100",
                                  "tv/googlenet", "tv/efficientnet_b0", "timm/resnetblur18"])
def test_table_checks_on_a_fast_subset(arch):
    record = _coverage_script().check_model(arch, 64)
    assert record["status"] == "supported", record
    assert record["ratio"] <= 0.5 and record["tight"] and record["cost_params"] and record["cost_macs"]
    assert record["max_abs_diff"] <= 1e-4 and record["exact"]


def test_table_records_a_refusal_with_its_layer():
    record = _coverage_script().check_model("timm/rexnet_100", 64)
    assert record["status"] == "refused" and record["layer"].startswith("features.")
    assert "sliced" in record["reason"]


def test_without_timm_the_names_say_how_to_install_it(monkeypatch):
    from chipnet_zoo.models import _registry, timm_models

    ns = _registry._NAMESPACES["timm/"]
    monkeypatch.setitem(_registry._NAMESPACES, "timm/", _registry._Namespace(
        ns.prefix, lambda: [], ns.fn, ns.input_hw, ns.missing_hint))
    monkeypatch.setitem(_registry._NAMESPACE_CACHE, "timm/", frozenset())
    with pytest.raises(UnknownModelError, match=r"chipnet-zoo\[timm\]"):
        cz.create_model("timm/resnet18")
    assert not cz.list_models("timm/*") and timm_models.INSTALL_HINT in ns.missing_hint


def test_a_hang_in_torch_pruning_becomes_a_refusal(monkeypatch):
    import chipnet_zoo.groups as groups

    monkeypatch.setattr(groups, "GROUPS_TIME_LIMIT_S", 2.0)
    model = cz.create_model("timm/ecaresnet50d", num_classes=10)  # ECA: a conv over the channel axis
    start = time.perf_counter()
    with pytest.raises(UnsupportedLayerError, match="did not finish building the channel groups within 2 s"):
        cz.ChipNetPruner(model, "flops:0.5", example_input=torch.randn(1, 3, 32, 32))
    assert time.perf_counter() - start < 30


def test_unreachable_budget_names_the_units():
    from chipnet_zoo.errors import UnreachableBudgetError

    with pytest.raises(UnreachableBudgetError, match="one unit of channels across the conv groups"):
        cz.ChipNetPruner(cz.create_model("tv/regnet_x_400mf", num_classes=10), "flops:0.001",
                         example_input=torch.randn(1, 3, 32, 32), check=False)


def test_per_group_widths_keep_whole_units_and_auto_leaves_tied_groups_alone():
    from chipnet_zoo.latency import _group_members

    model = cz.create_model("tv/regnet_x_400mf", num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    graph = build_channel_graph(model, x)
    cost = CostModel(graph)
    # what round_to="auto" would hand the thresholding: widths for plain groups, whole units elsewhere
    spec = tuple(tuple(range(3, g.size, 5)) if g.granularity == 1 else (g.granularity * 2,) for g in graph.groups)
    scores = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(1))
    keep = threshold_scores(scores, cost, "flops:0.5", round_to=spec)
    assert cost.hard_ratios(keep)["flops"] <= 0.5 and _whole_units(graph, keep)
    for group, widths in zip(graph.groups, spec):
        n = int(keep[group.indices].sum())
        assert n == group.size or n in widths, (group.name, n)
    slim_model(model, graph, keep, x)
    # no layer is timed for a tied group: auto gives it its plain unit granularity
    members = _group_members(graph)
    assert any(g.granularity > 1 for g in graph.groups)
    assert all(not m for g, m in zip(graph.groups, members) if g.granularity > 1)
    assert any(m for g, m in zip(graph.groups, members) if g.granularity == 1)
