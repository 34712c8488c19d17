"""Latency budgets: the measured table, its cache and key, the cost model's latency ratio (monotone, exact
against the table, differentiable), thresholding, the pruning phase, and masks that record where they were
measured.

Timing on a shared CI machine is noisy, so nothing here asserts a measured speed. Tests that need a budget
to be reachable use a recorded table (``tests/data/latency_resnet8_32px_b16.json``: resnet8, 32x32, batch 16,
measured by :func:`build_latency_table` on a CPU); tests of the measuring itself time resnet8 at 16x16 live.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import chipnet_zoo as cz
from chipnet_zoo import latency
from chipnet_zoo.baselines import baseline_mask
from chipnet_zoo.budget import Budget
from chipnet_zoo.cost import CostModel
from chipnet_zoo.errors import LatencyKeyWarning, LatencyTableError, UnreachableBudgetError
from chipnet_zoo.groups import build_channel_graph
from chipnet_zoo.latency import LatencyTable, build_latency_table
from chipnet_zoo.mask import Mask
from chipnet_zoo.threshold import smallest_mask, threshold_scores

RECORDED = Path(__file__).parent / "data" / "latency_resnet8_32px_b16.json"
TINY = {"widths": (0.5, 1.0), "repeats": 3, "warmup": 1, "progress": False}


@pytest.fixture(scope="module")
def recorded() -> LatencyTable:
    return LatencyTable.load(RECORDED)


@pytest.fixture
def model32() -> torch.nn.Module:
    torch.manual_seed(0)
    return cz.create_model("resnet8", num_classes=10)


@pytest.fixture
def x32() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32)


def test_budget_parses_latency():
    assert Budget.parse("latency:0.3") == Budget("latency", 0.3)
    assert str(Budget("latency", 0.3)) == "latency:0.3"
    with pytest.raises(ValueError, match="budget value"):
        Budget.parse("latency:1.5")


# --- the table: measuring, cache, key ----------------------------------------------------------------
def test_build_measures_once_then_hits_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cz.constants, "CHIPNET_ZOO_HOME", tmp_path)
    model = cz.create_model("resnet8", num_classes=10)
    x = torch.randn(2, 3, 16, 16)
    before = dict(latency.MEASUREMENTS)
    table = build_latency_table(model, x, **TINY)
    # resnet8 has 10 conv/linear layers but fewer distinct shapes: repeated shapes are measured once
    measured = latency.MEASUREMENTS["shapes"] - before["shapes"]
    assert 0 < measured == len(table.shapes) < len(table.layers) == 10
    assert latency.MEASUREMENTS["models"] - before["models"] == 2  # dense + half-width calibration
    assert not table.from_cache and table.path.parent == tmp_path / "latency"
    assert table.key["batch"] == 2 and table.key["input_size"] == [3, 16, 16]
    assert table.key["dtype"] == "float32" and table.key["threads"] == torch.get_num_threads()
    assert table.key["device"].startswith("cpu:") and table.key["memory_format"] == "contiguous"
    # every grid holds the full width and the smallest one; fixed dims (stem input, classes) one point
    xin, xout, ms = table.grid("layer1.0.conv1")
    assert xin.tolist() == [1, 8, 16] and xout.tolist() == [1, 8, 16] and ms.shape == (3, 3)
    assert table.grid("conv1")[0].tolist() == [3] and table.grid("fc")[1].tolist() == [10]
    assert table.dense_ms > 0 and table.remainder_ms >= 0

    again = build_latency_table(model, x, **TINY)
    assert latency.MEASUREMENTS == {**before, "shapes": before["shapes"] + measured, "models": before["models"] + 2}
    assert again.from_cache and again.key == table.key and again.shapes == table.shapes
    assert again.dense_ms == table.dense_ms and again.remainder == table.remainder


def test_cache_key_changes_with_batch_and_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(cz.constants, "CHIPNET_ZOO_HOME", tmp_path)
    model = cz.create_model("resnet8", num_classes=10)
    one = build_latency_table(model, torch.randn(1, 3, 16, 16), **TINY)
    two = build_latency_table(model, torch.randn(2, 3, 16, 16), **TINY)
    assert not two.from_cache and two.path != one.path and two.key["batch"] == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        more = build_latency_table(model, torch.randn(1, 3, 16, 16), **TINY)
    finally:
        torch.set_num_threads(threads)
    assert not more.from_cache and more.key["threads"] == threads + 1
    assert len({one.path, two.path, more.path}) == 3 and len(list((tmp_path / "latency").glob("*.json"))) == 3
    # another architecture or grid is another table too
    other = build_latency_table(cz.create_model("resnet20", num_classes=10), torch.randn(1, 3, 16, 16), **TINY)
    assert other.key["fingerprint"] != one.key["fingerprint"] and not other.from_cache
    # a channels-last model is timed channels-last (its own key)
    last = build_latency_table(model.to(memory_format=torch.channels_last), torch.randn(1, 3, 16, 16), **TINY)
    assert last.key["memory_format"] == "channels_last" and not last.from_cache and last.path != one.path


def test_table_round_trips_and_rejects_garbage(tmp_path, recorded):
    path = recorded.save(tmp_path / "t.json")
    again = LatencyTable.load(path)
    assert again.to_json() == recorded.to_json() and again == recorded
    # the per-width times of round_to="auto" are checked too
    import json

    for steps in ({"out": {"0": 1.0}}, {"out": {"4": True}}, {"out": {"4": -1.0}}, {"side": {"4": 1.0}},
                  {"out": [1.0]}):
        doc = recorded.to_json()
        first = next(iter(doc["shapes"]))
        doc["shapes"][first] = {**doc["shapes"][first], "steps": steps}
        (tmp_path / "steps.json").write_text(json.dumps(doc))
        with pytest.raises(LatencyTableError, match="not a valid latency table"):
            LatencyTable.load(tmp_path / "steps.json")
    path.write_text('{"format": 1, "key": {}}')
    with pytest.raises(LatencyTableError, match="not a valid latency table"):
        LatencyTable.load(path)
    with pytest.raises(FileNotFoundError):
        LatencyTable.load(tmp_path / "missing.json")


# --- monotone, exact, differentiable -----------------------------------------------------------------
def test_monotone_grid_by_cumulative_max():
    raw = torch.tensor([[1.0, 3.0, 2.0], [0.5, 2.0, 4.0]], dtype=torch.float64)
    assert latency._monotone(raw).tolist() == [[1.0, 3.0, 3.0], [1.0, 3.0, 4.0]]


def test_interpolation_is_monotone_in_each_width(recorded):
    for name in recorded.layers:
        xin, xout, _ = recorded.grid(name)
        ins = torch.linspace(float(xin[0]), float(xin[-1]), 7).tolist()
        outs = torch.linspace(float(xout[0]), float(xout[-1]), 7).tolist()
        values = torch.tensor([[recorded.layer_ms(name, i, o) for o in outs] for i in ins])
        assert (values.diff(dim=0) >= -1e-12).all() and (values.diff(dim=1) >= -1e-12).all(), name
        # on grid points the interpolation is the (monotone) table itself
        assert recorded.layer_ms(name, float(xin[-1]), float(xout[-1])) == pytest.approx(float(recorded.grid(name)[2][-1, -1]))


def test_latency_ratio_grows_with_every_added_channel(model32, x32, recorded):
    graph = build_channel_graph(model32, x32)
    cost = CostModel(graph, recorded)
    order = torch.randperm(graph.num_channels, generator=torch.Generator().manual_seed(1))
    keep = smallest_mask(torch.zeros(graph.num_channels), cost)
    last = cost.hard_ratios(keep)["latency"]
    for i in order[::3].tolist():
        keep[i] = True
        now = cost.hard_ratios(keep)["latency"]
        assert now >= last - 1e-12
        last = now
    assert cost.hard_ratios(torch.ones(graph.num_channels, dtype=torch.bool))["latency"] == pytest.approx(1.0)


def test_hard_latency_ratio_is_the_tables_prediction_of_the_slimmed_model(model32, x32, recorded):
    for budget in ("latency:0.5", "flops:0.3"):
        pruner = cz.ChipNetPruner(model32, budget, example_input=x32, latency_table=recorded)
        mask = pruner.mask()
        pruner.remove()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LatencyKeyWarning)  # the recorded table comes from another machine
            small = mask.slim(model32, x32)
        predicted = recorded.predict_model(small) / recorded.predicted_dense_ms
        assert mask.ratios["latency"] == pytest.approx(predicted, rel=1e-12, abs=1e-12)
        assert predicted < 1.0


def test_soft_latency_ratio_is_differentiable(model32, x32, recorded):
    graph = build_channel_graph(model32, x32)
    cost = CostModel(graph, recorded)
    keep = torch.full((graph.num_channels,), 0.6, requires_grad=True)
    ratio = cost.ratio("latency", keep)
    ratio.backward()
    assert 0 < float(ratio.detach()) < 1 and torch.isfinite(keep.grad).all() and (keep.grad >= 0).all()
    assert float(keep.grad.sum()) > 0


# --- thresholding and the pruning phase --------------------------------------------------------------
def test_thresholding_meets_latency_budget_as_a_ceiling(model32, x32, recorded):
    graph = build_channel_graph(model32, x32)
    cost = CostModel(graph)
    scores = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keep = threshold_scores(scores, cost, "latency:0.5", latency_table=recorded)
    with_table = CostModel(graph, recorded)
    ratio = with_table.hard_ratios(keep)["latency"]
    assert 0.4 < ratio <= 0.5 + 1e-12
    # as close as the channels allow: no single dropped channel still fits (the fill pass)
    step = with_table.marginal(keep.double(), "latency") / float(with_table.dense["latency"])
    assert float(step[~keep].min()) > 0.5 - ratio - 1e-12
    for kind in ("flops", "params"):  # the count budgets are unchanged by a table
        assert torch.equal(threshold_scores(scores, with_table, f"{kind}:0.5"),
                           threshold_scores(scores, cost, f"{kind}:0.5"))
    blocks = threshold_scores(scores, cost, "latency:0.5", round_to=4, latency_table=recorded)
    assert with_table.hard_ratios(blocks)["latency"] <= 0.5 + 1e-12
    with pytest.raises(UnreachableBudgetError, match="latency budget 0.01 is unreachable"):
        threshold_scores(scores, cost, "latency:0.01", latency_table=recorded)


def test_pruning_phase_runs_under_a_latency_budget(model32, recorded):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))
    loader = DataLoader(data, batch_size=16)
    pruner = cz.ChipNetPruner(model32, Budget("latency", 0.5), example_input=torch.randn(1, 3, 32, 32),
                              latency_table=recorded)
    psi = pruner.gates.psi.detach().clone()
    history = pruner.fit(loader, loader, epochs=1, progress=False)
    assert len(history) == 1 and 0 < history[0]["soft_ratio"] <= 1 and history[0]["hard_ratio"] <= 0.5 + 1e-12
    assert history[0]["budget_loss"] > 0 and not torch.equal(pruner.gates.psi.detach(), psi)
    mask = pruner.mask()
    assert mask.budget == Budget("latency", 0.5) and mask.ratios["latency"] <= 0.5 + 1e-12
    assert {k: mask.metadata["latency"][k] for k in ("batch", "input_size")} == {"batch": 16,
                                                                                 "input_size": [3, 32, 32]}
    assert set(latency.MASK_FIELDS) <= set(mask.metadata["latency"])


def test_latency_table_measured_on_demand(tmp_path, monkeypatch):
    monkeypatch.setattr(cz.constants, "CHIPNET_ZOO_HOME", tmp_path)
    monkeypatch.setattr(latency, "DEFAULT_REPEATS", 2)
    monkeypatch.setattr(latency, "DEFAULT_WIDTHS", (0.5, 1.0))
    model = cz.create_model("resnet8", num_classes=10)
    x = torch.randn(2, 3, 16, 16)
    before = latency.MEASUREMENTS["shapes"]
    graph = build_channel_graph(model, x[:1])
    table = build_latency_table(model, x, graph=graph, progress=False)
    assert table.key["widths"] == [0.5, 1.0] and latency.MEASUREMENTS["shapes"] > before
    smallest = float(CostModel(graph, table).ratio(
        "latency", smallest_mask(torch.zeros(graph.num_channels), CostModel(graph)).double()))
    target = round(0.5 * (1 + smallest), 3)  # reachable whatever the noise
    before = latency.MEASUREMENTS["shapes"]
    mask = baseline_mask(model, f"latency:{target}", "l1", example_input=x)
    assert latency.MEASUREMENTS["shapes"] == before  # the same key: the table measured above, from the cache
    assert mask.ratios["latency"] <= target and mask.metadata["latency"]["batch"] == 2
    loaded = Mask.from_bytes(mask.to_bytes())
    assert loaded.metadata["latency"] == mask.metadata["latency"] and loaded.budget == Budget("latency", target)


# --- masks record it; bad input ------------------------------------------------------------------------
def test_verified_keeps_the_latency_prediction_and_fixes_the_counts(model32, x32, recorded, tmp_path):
    mask = cz.ChipNetPruner(model32, "latency:0.5", example_input=x32, latency_table=recorded).mask()
    mask = mask.with_metadata(dataset="synthetic")
    assert mask.verified() is mask
    tampered = mask.with_metadata(ratios={**mask.ratios, "flops": 0.01})
    fixed = tampered.verified()
    assert fixed.ratios == mask.ratios  # flops recomputed, latency kept
    unrecorded = mask.with_metadata(latency=None)
    assert "latency" not in unrecorded.verified().ratios  # a latency ratio without its table's record is dropped
    registry = cz.MaskRegistry(tmp_path / "registry")
    registry.push(mask)
    assert registry.pull("resnet8/synthetic/latency-0.5").ratios["latency"] == mask.ratios["latency"]


def test_mask_warns_on_another_machine(model32, x32, recorded):
    mask = cz.ChipNetPruner(model32, "latency:0.5", example_input=x32, latency_table=recorded).mask()
    model = cz.create_model("resnet8", num_classes=10)
    here = latency.machine_key("cpu")
    same = mask.with_metadata(latency={**mask.metadata["latency"], **here})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same.slim(model, x32)
        same.apply(model, x32)
    model = cz.create_model("resnet8", num_classes=10)
    elsewhere = mask.with_metadata(latency={**same.metadata["latency"], "device": "cuda:Some GPU"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        elsewhere.slim(model, x32)  # slimming happens anywhere; only using the gated model here warns
    with pytest.warns(LatencyKeyWarning, match="cuda:Some GPU"):
        elsewhere.apply(model, x32)
    model = cz.create_model("resnet8", num_classes=10)
    with pytest.warns(LatencyKeyWarning, match="threads"):
        mask.with_metadata(latency={**same.metadata["latency"], "threads": here["threads"] + 7}).apply(model, x32)


def test_rethreshold_to_latency_needs_a_table_for_its_input_size(model32, x32, recorded):
    mask = cz.ChipNetPruner(model32, "flops:0.5", example_input=x32).mask()
    assert "latency" not in mask.ratios and "latency" not in mask.metadata
    model = cz.create_model("resnet8", num_classes=10)
    with pytest.raises(LatencyTableError, match="needs latency_table="):
        mask.rethreshold("latency:0.5", model=model, example_input=x32)
    with pytest.raises(LatencyTableError, match=r"input size \[3, 32, 32\].*\[3, 16, 16\]"):
        mask.rethreshold("latency:0.5", model=model, example_input=torch.randn(1, 3, 16, 16), latency_table=recorded)
    out = mask.rethreshold("latency:0.5", model=model, example_input=x32, latency_table=recorded)
    assert out.ratios["latency"] <= 0.5 + 1e-12 and out.metadata["latency"]["input_size"] == [3, 32, 32]
    back = out.rethreshold("flops:0.5", model=model, example_input=x32)
    assert "latency" not in back.metadata and "latency" not in back.ratios


def test_latency_without_a_table_is_a_clear_error(recorded):
    model = cz.create_model("resnet8", num_classes=10).to("meta")
    with pytest.raises(LatencyTableError, match="'meta' device"):
        cz.ChipNetPruner(model, "latency:0.5", example_input=torch.randn(1, 3, 16, 16, device="meta"))
    with pytest.raises(LatencyTableError, match="'meta' device"):
        build_latency_table(model, torch.randn(1, 3, 16, 16, device="meta"))
    model = cz.create_model("resnet8", num_classes=10)
    graph = build_channel_graph(model, torch.randn(1, 3, 32, 32))
    with pytest.raises(LatencyTableError, match="needs a latency table"):
        CostModel(graph).ratio("latency", torch.ones(graph.num_channels))
    with pytest.raises(LatencyTableError, match="needs a latency table"):
        threshold_scores(torch.rand(graph.num_channels), CostModel(graph), "latency:0.5")
    other = build_channel_graph(cz.create_model("resnet20", num_classes=10), torch.randn(1, 3, 32, 32))
    with pytest.raises(LatencyTableError, match="another model"):
        CostModel(other, recorded)
    with pytest.raises(TypeError, match="LatencyTable"):
        cz.ChipNetPruner(model, "latency:0.5", example_input=torch.randn(1, 3, 32, 32), latency_table="table.json")


def test_a_teachers_latency_mask_is_rethresholded_for_the_student_on_this_machine(model32, recorded, tmp_path,
                                                                                   monkeypatch):
    from chipnet_zoo.mask_transfer import student_mask

    monkeypatch.setattr(cz.constants, "CHIPNET_ZOO_HOME", tmp_path)
    monkeypatch.setattr(latency, "DEFAULT_REPEATS", 2)
    monkeypatch.setattr(latency, "DEFAULT_WIDTHS", (0.5, 1.0))
    teacher = baseline_mask(model32, "latency:0.6", "l1", example_input=torch.randn(1, 3, 32, 32),
                            latency_table=recorded)
    student = cz.create_model("resnet8", num_classes=5, in_chans=1)
    before = latency.MEASUREMENTS["shapes"]
    out = student_mask(teacher, student, example_input=torch.zeros(1, 1, 28, 28), budget="latency:0.95")
    assert latency.MEASUREMENTS["shapes"] > before  # a table for the student was measured here
    assert out.ratios["latency"] <= 0.95 and out.budget == Budget("latency", 0.95)
    assert out.metadata["latency"]["input_size"] == [1, 28, 28] != teacher.metadata["latency"]["input_size"]


def test_registry_index_card_and_list_show_where_a_latency_mask_was_measured(model32, x32, recorded, tmp_path,
                                                                             capsys, monkeypatch):
    import json

    from chipnet_zoo.cli import main
    from chipnet_zoo.errors import AmbiguousKeyError, IndexFormatError, InvalidKeyError
    from chipnet_zoo.registry.keys import machine_tag

    mask = cz.ChipNetPruner(model32, "latency:0.5", example_input=x32, latency_table=recorded).mask()
    registry = cz.MaskRegistry(tmp_path / "registry")
    entry = registry.push(mask.with_metadata(dataset="synthetic"))
    device = recorded.key["device"]
    assert entry.measured_on == f"{device}, {recorded.key['threads']} threads, batch {recorded.key['batch']}"
    index = json.loads((tmp_path / "registry" / "index.json").read_text())
    assert index["entries"][0]["latency"]["device"] == device
    card = registry.render_card()
    assert "measured on" in card and device in card and f"{mask.ratios['latency']:.4f}" in card
    assert main(["list", "--registry", str(tmp_path / "registry")]) == 0
    assert "measured on" in capsys.readouterr().out
    # the key names the machine; a key without one finds the only mask at that budget
    assert entry.key == f"resnet8/synthetic/latency-0.5-{machine_tag(mask.metadata['latency'])}"
    assert torch.equal(registry.pull("resnet8/synthetic/latency-0.5").keep_vector(), mask.keep_vector())
    # the same budget measured elsewhere is another entry; the key without a machine is then ambiguous
    elsewhere = mask.with_metadata(dataset="synthetic", latency={**mask.metadata["latency"], "device": "cuda:Other GPU"})
    other = registry.push(elsewhere)
    assert other.key != entry.key and ".b16." in other.key and "/latency-0.5-cuda.other.gpu.b16." in other.key
    with pytest.raises(AmbiguousKeyError, match="different machines") as info:
        registry.pull("resnet8/synthetic/latency-0.5")
    assert sorted(info.value.candidates) == sorted([entry.key, other.key])
    assert registry.pull(other.key).metadata["latency"]["device"] == "cuda:Other GPU"
    assert {e.key for e in registry.list()} == {entry.key, other.key}
    # through the default registry (which falls back to the shipped zoo) the ambiguity is reported too
    monkeypatch.setattr(cz.constants, "CHIPNET_ZOO_REGISTRY", str(tmp_path / "registry"))
    with pytest.raises(AmbiguousKeyError):
        cz.MaskRegistry().pull("resnet8/synthetic/latency-0.5")
    # a transfer records the key the mask was found under, machine included
    from chipnet_zoo.mask_transfer import resolve_mask

    assert resolve_mask(other.key, tmp_path / "registry")[1] == other.key
    # a tag that does not match the record, or on another budget kind, is refused
    with pytest.raises(InvalidKeyError, match="only a latency budget"):
        registry.pull("resnet8/synthetic/flops-0.5-cpu.b1.abcdef")
    index = json.loads((tmp_path / "registry" / "index.json").read_text())
    del index["entries"][0]["latency"]
    (tmp_path / "registry" / "index.json").write_text(json.dumps(index))
    with pytest.raises(IndexFormatError, match="machine tag"):
        cz.MaskRegistry(tmp_path / "registry").list()
    index["entries"][0]["latency"] = {"device": {"nested": "object"}}
    (tmp_path / "registry" / "index.json").write_text(json.dumps(index))
    with pytest.raises(IndexFormatError, match="latency"):
        cz.MaskRegistry(tmp_path / "registry").list()
