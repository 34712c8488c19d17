"""``round_to="auto"``: per group, the widths a latency table's device runs fast.

The choice itself (:func:`fast_widths`) is tested on constructed timings; the measuring is run live on
resnet8 at 16x16 (nothing asserts a measured speed: CI timings are noisy); the thresholding with per-group
widths is checked for exactness like every other rounding.
"""

from __future__ import annotations

import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo import latency
from chipnet_zoo.baselines import baseline_mask
from chipnet_zoo.cli.run_commands import _round_to_arg
from chipnet_zoo.cost import CostModel
from chipnet_zoo.errors import LatencyTableError, MaskFormatError, UnreachableBudgetError
from chipnet_zoo.groups import build_channel_graph
from chipnet_zoo.latency import auto_round_to, build_latency_table, fast_widths, probe_widths
from chipnet_zoo.mask import Mask
from chipnet_zoo.slim import slim_model
from chipnet_zoo.threshold import check_round_to, group_widths, threshold_scores

TINY = {"widths": (0.5, 1.0), "repeats": 1, "warmup": 0, "progress": False}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setattr(cz.constants, "CHIPNET_ZOO_HOME", tmp_path)
    return tmp_path


def _kept_counts(keep: torch.Tensor, graph) -> list[int]:
    return [int(keep[g.indices].sum()) for g in graph.groups]


# --- the choice --------------------------------------------------------------------------------------
def test_fast_widths_keeps_the_top_of_each_step_of_a_staircase():
    # a kernel that runs 1-4, 5-8, ... channels in the same time: only the widths at the top of a step
    stairs = {w: 1.0 + (w - 1) // 4 for w in range(1, 17)}
    assert fast_widths(stairs) == (4, 8, 12, 16)
    # time that grows with every channel (by more than the tolerance): every width is worth having
    linear = {w: 1.0 + 0.1 * w for w in range(1, 17)}
    assert fast_widths(linear) == tuple(range(1, 17))
    # a sweet spot: 8 runs faster than 5-7, so those are dropped; a wider width that is within the
    # tolerance of a narrower one makes the narrower one pointless too
    spot = {1: 1.0, 2: 1.1, 3: 1.2, 4: 1.3, 5: 2.0, 6: 2.1, 7: 2.2, 8: 1.5, 9: 3.0, 10: 3.001}
    assert fast_widths(spot) == (1, 2, 3, 4, 8, 10)
    assert fast_widths(spot, tolerance=0.0) == (1, 2, 3, 4, 8, 9, 10)
    # a cap on the step between widths fills a long gap with its fastest width (4 -> 8 is over 3: 5)
    assert fast_widths(spot, max_gap=3) == (1, 2, 3, 4, 5, 8, 10)
    # a time that does not change with the width: only the full width is fast, the cap keeps it thinnable
    flat = {w: 1.0 for w in range(1, 17)}
    assert fast_widths(flat) == (16,) and fast_widths(flat, max_gap=4) == (4, 8, 12, 16)


def test_probe_widths_are_every_width_of_small_groups_and_spaced_on_large_ones():
    assert probe_widths(16) == list(range(1, 17))
    assert probe_widths(64) == list(range(1, 65))
    wide = probe_widths(2048)
    assert wide[0] == 32 and wide[-1] == 2048 and len(wide) == 64 and all(w % 32 == 0 for w in wide)
    assert probe_widths(100)[-1] == 100 and len(probe_widths(100)) <= 51


def test_check_round_to_accepts_auto_and_per_group_widths():
    assert check_round_to("auto") == "auto" == check_round_to(" AUTO ")
    assert check_round_to("8") == 8 and check_round_to(4) == 4
    assert check_round_to([1, [4, 2, 4], (8,)]) == (1, (2, 4), (8,))
    for bad in (0, -2, 1.5, "fast", True, [1, 0], [[0, 2]]):
        with pytest.raises(ValueError, match="round_to"):
            check_round_to(bad)
    assert _round_to_arg("auto") == "auto" and _round_to_arg("8") == 8 and _round_to_arg("-1") == -1


# --- thresholding with per-group widths --------------------------------------------------------------
@pytest.mark.parametrize("kind, target", [("flops", 0.3), ("params", 0.25), ("channels", 0.5)])
def test_per_group_widths_are_respected_and_exact(kind, target):
    torch.manual_seed(0)
    model = cz.create_model("resnet20", num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    graph = build_channel_graph(model, x)
    cost = CostModel(graph)
    # every group its own widths: odd ones, a block size, and plain channels
    spec = tuple((3, 5, 9, 12) if g.size == 16 else 8 if g.size == 32 else 1 for g in graph.groups)
    keep = threshold_scores(torch.rand(graph.num_channels), cost, f"{kind}:{target}", round_to=spec, floor=1.0)
    for group, kept, r in zip(graph.groups, _kept_counts(keep, graph), spec):
        assert kept in group_widths(group, r), (group.name, kept, r)
    ratio = float(cost.hard_ratios(keep)[kind])
    assert target - 0.05 < ratio <= target + 1e-12
    slim = slim_model(model, graph, keep, x)  # the slimmed model has exactly the counted channels
    assert sum(p.numel() for p in slim.parameters()) == round(float(cost.hard_counts(keep)["params"]))


def test_per_group_widths_of_the_wrong_length_or_size_are_refused():
    model = cz.create_model("resnet8", num_classes=10)
    graph = build_channel_graph(model, torch.randn(1, 3, 32, 32))
    cost = CostModel(graph)
    with pytest.raises(ValueError, match="groups"):
        threshold_scores(torch.rand(graph.num_channels), cost, "flops:0.5", round_to=(1, 2))
    with pytest.raises(ValueError, match="auto"):
        threshold_scores(torch.rand(graph.num_channels), cost, "flops:0.5", round_to="auto")
    # the smallest width of every group too wide for the budget: unreachable, and said so
    wide = tuple((g.size,) for g in graph.groups)
    with pytest.raises(UnreachableBudgetError, match="round_to='auto'"):
        threshold_scores(torch.rand(graph.num_channels), cost, "flops:0.5", round_to=wide)


# --- measuring, the pruner, masks --------------------------------------------------------------------
def test_auto_measures_each_width_once_and_caches_it_in_the_table(home):
    model = cz.create_model("resnet8", num_classes=10).eval()
    x = torch.randn(2, 3, 16, 16)
    table = build_latency_table(model, x, **TINY)
    graph = build_channel_graph(model, x[:1])
    before = latency.MEASUREMENTS["widths"]
    widths = auto_round_to(table, model, graph, repeats=1, warmup=0, progress=False)
    measured = latency.MEASUREMENTS["widths"] - before
    assert measured > 0 and len(widths) == len(graph.groups)
    for group, w in zip(graph.groups, widths):
        assert isinstance(w, tuple) and w[-1] == group.size and list(w) == sorted(set(w))
    # the times are in the cached table: a second call (and a reload) measures nothing
    again = build_latency_table(model, x, **TINY)
    assert again.from_cache and any("steps" in s for s in again.shapes.values())
    assert auto_round_to(again, model, graph, progress=False) == widths
    assert latency.MEASUREMENTS["widths"] - before == measured
    # a table from another machine cannot be extended here
    again.key = {**again.key, "device": "cpu:elsewhere"}
    with pytest.raises(LatencyTableError, match="another"):
        auto_round_to(again, model, graph, progress=False)


def _staircase(table, graph, step: int = 4) -> None:
    """Give the table per-width times that step every ``step`` channels (what a live timing would add), so
    that ``auto`` picks the multiples of ``step`` without timing anything."""
    for group, members in zip(graph.groups, latency._group_members(graph)):
        for name, dim, const in members:
            steps = table.shapes[table.layers[name]].setdefault("steps", {}).setdefault(dim, {})
            steps.update({str(const + k): 1.0 + (k - 1) // step for k in probe_widths(group.size)})


def test_pruner_and_baselines_take_auto_and_masks_record_the_widths(home, tmp_path):
    torch.manual_seed(0)
    model = cz.create_model("resnet8", num_classes=10).eval()
    x = torch.randn(2, 3, 16, 16)
    table = build_latency_table(model, x, **TINY)
    _staircase(table, build_channel_graph(model, x[:1]))
    before = latency.MEASUREMENTS["widths"]
    pruner = cz.ChipNetPruner(model, "flops:0.4", example_input=x, latency_table=table, round_to="auto")
    assert isinstance(pruner.round_to, tuple) and len(pruner.round_to) == len(pruner.graph.groups)
    assert latency.MEASUREMENTS["widths"] == before  # every width was in the table
    assert all(w == tuple(range(4, g.size + 1, 4)) for g, w in zip(pruner.graph.groups, pruner.round_to))
    mask = pruner.mask()
    pruner.remove()
    assert mask.metadata["hparams"]["round_to"] == "auto"
    recorded = mask.metadata["hparams"]["round_to_groups"]
    assert [list(w) for w in pruner.round_to] == recorded
    counts = _kept_counts(mask.keep_vector(), pruner.graph)
    assert all(k in group_widths(g, tuple(w)) for g, k, w in zip(pruner.graph.groups, counts, recorded))
    assert mask.ratios["flops"] <= 0.4 + 1e-12
    # the file round-trips (the widths pass validation) and re-thresholding reuses the recorded widths
    back = Mask.load(mask.save(tmp_path / "m.safetensors"))
    assert back.metadata["hparams"] == mask.metadata["hparams"]
    other = back.rethreshold("flops:0.3", model=cz.create_model("resnet8", num_classes=10), example_input=x)
    assert other.metadata["hparams"]["round_to_groups"] == recorded and other.ratios["flops"] <= 0.3 + 1e-12
    # a latency table from another machine cannot re-measure them: the recorded widths are kept
    elsewhere = latency.LatencyTable.load(table.path)
    elsewhere.key = {**elsewhere.key, "device": "cpu:elsewhere"}
    # (budget 1: this tiny table is timed once per point, so on a busy machine any tighter budget may be out of reach)
    lat = back.rethreshold("latency:1", model=cz.create_model("resnet8", num_classes=10), example_input=x,
                           latency_table=elsewhere)
    assert lat.metadata["hparams"]["round_to_groups"] == recorded and lat.ratios["latency"] <= 1.0
    # other settings replace the recorded ones (none left behind)
    eights = back.rethreshold("flops:0.3", example_input=x, round_to=8)
    assert eights.metadata["hparams"]["round_to"] == 8 and "round_to_groups" not in eights.metadata["hparams"]
    free = eights.rethreshold("flops:0.3", example_input=x, round_to=1, floor=0.0)
    assert not {"round_to", "round_to_groups", "floor"} & set(free.metadata["hparams"])
    # asking for auto on a mask that has no recorded widths needs a table to measure them against
    plain = cz.ChipNetPruner(cz.create_model("resnet8", num_classes=10), "flops:0.4", example_input=x).mask()
    with pytest.raises(LatencyTableError, match="latency_table="):
        plain.rethreshold("flops:0.3", example_input=x, round_to="auto")
    measured = plain.rethreshold("flops:0.3", model=cz.create_model("resnet8", num_classes=10), example_input=x,
                                 round_to="auto", latency_table=table)
    assert measured.metadata["hparams"]["round_to_groups"] == recorded
    # a baseline takes auto too (the same table, already measured: nothing new is timed)
    before = latency.MEASUREMENTS["widths"]
    base = baseline_mask(cz.create_model("resnet8", num_classes=10).eval(), "flops:0.4", "l1", example_input=x,
                         round_to="auto", latency_table=table)
    assert base.metadata["hparams"]["round_to_groups"] == recorded
    assert latency.MEASUREMENTS["widths"] == before


def test_given_per_group_widths_are_recorded_as_such(tmp_path):
    from chipnet_zoo.threshold import AutoWidths, threshold_hparams

    assert threshold_hparams((1, (2, 4))) == {"round_to": "per-group", "round_to_groups": [1, [2, 4]]}
    assert threshold_hparams(AutoWidths((1, (2, 4))))["round_to"] == "auto"
    assert isinstance(check_round_to(AutoWidths(([4, 2], 1))), AutoWidths)
    model = cz.create_model("resnet8", num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    graph = build_channel_graph(model, x)
    spec = tuple((2, 4, 8) if g.size == 16 else 1 for g in graph.groups)
    mask = cz.ChipNetPruner(model, "flops:0.5", example_input=x, round_to=spec).mask()
    assert mask.metadata["hparams"]["round_to"] == "per-group"
    again = Mask.load(mask.save(tmp_path / "m.safetensors")).rethreshold("flops:0.4", example_input=x)
    assert again.metadata["hparams"]["round_to_groups"] == mask.metadata["hparams"]["round_to_groups"]


def test_a_table_loaded_from_elsewhere_is_not_rewritten(home, tmp_path):
    model = cz.create_model("resnet8", num_classes=10).eval()
    x = torch.randn(1, 3, 16, 16)
    own = tmp_path / "mine" / "table.json"
    build_latency_table(model, x, cache=False, **TINY).save(own)
    before = own.read_bytes()
    table = latency.LatencyTable.load(own)
    auto_round_to(table, model, build_channel_graph(model, x), repeats=1, warmup=0, progress=False)
    assert own.read_bytes() == before and any("steps" in s for s in table.shapes.values())


def test_tampered_width_records_are_refused():
    model = cz.create_model("resnet8", num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    mask = cz.ChipNetPruner(model, "flops:0.5", example_input=x, round_to=2).mask()
    for bad in ({"round_to": "auto"}, {"round_to": "auto", "round_to_groups": [[0, 4]]},
                {"round_to": "fast"}):
        meta = {**mask.metadata, "hparams": {**mask.metadata["hparams"], **bad}}
        with pytest.raises(MaskFormatError, match="round_to"):
            Mask(mask.keep, mask.scores, meta)
