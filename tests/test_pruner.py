"""The pruning phase on real data: a short run moves towards the budget and crispens the gates, and on
small data (docs/benchmarks.md, "The pruning phase on small data") it really prunes. The full-length small-data run is
``benchmarks/prune_small_data.py``; docs/benchmarks.md has its numbers."""

from __future__ import annotations

import math

import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo.data import load_data, make_loaders
from chipnet_zoo.errors import UnreachableBudgetError
from chipnet_zoo.gates import crispness_loss, has_gates, heaviside, logistic


def test_unreachable_budget_names_smallest_ratio():
    model = cz.create_model("resnet8", num_classes=10)
    with pytest.raises(UnreachableBudgetError, match=r"smallest achievable params ratio for this model is 0\.0"):
        cz.ChipNetPruner(model, "params:0.001", example_input=torch.randn(1, 3, 32, 32))


def test_mask_straight_after_construction_and_remove():
    model = cz.create_model("resnet8", num_classes=10)
    pruner = cz.ChipNetPruner(model, cz.Budget("channels", 0.5), example_input=torch.randn(1, 3, 32, 32))
    assert has_gates(model)
    mask = pruner.mask()
    assert 0.49 <= mask.ratios["channels"] <= 0.5
    assert mask.metadata["method"] == "chipnet" and mask.metadata["arch"] == "resnet8"
    assert pruner.remove() is model and not has_gates(model)
    assert "chipnet_gates.psi" not in model.state_dict()


def test_short_run_moves_soft_ratio_and_crispens_gates():
    data = load_data("mnist5k", max_samples=600, seed=0)
    train, val, _ = make_loaders(data, batch_size=32, seed=0)
    torch.manual_seed(0)
    model = cz.create_model("resnet8", num_classes=data.num_classes, in_chans=data.in_chans)
    pruner = cz.ChipNetPruner(model, "flops:0.3", example_input=torch.randn(1, *data.input_size))
    psi_start = pruner.gates.psi.detach().clone()
    start_soft = pruner.soft_ratio()
    history = pruner.fit(train, val, epochs=3, progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for key in ("loss", "ce", "budget_loss", "crispness", "soft_ratio", "hard_ratio", "soft_val_accuracy",
                "hard_val_accuracy", "beta", "gamma"):
        assert all(math.isfinite(h[key]) for h in history), key
    assert abs(history[-1]["soft_ratio"] - 0.3) < abs(start_soft - 0.3)
    # crispness under the final beta/gamma: the learned gates are far crisper than the initial ones
    beta, gamma = pruner.gates.beta, pruner.gates.gamma

    def crisp(psi):
        zt = logistic(psi, beta)
        return float(crispness_loss(heaviside(zt, gamma), zt))

    assert crisp(pruner.gates.psi.detach()) < 0.5 * crisp(psi_start)
    mask = pruner.mask()
    assert mask.ratios["flops"] <= 0.3 and 0.3 - mask.ratios["flops"] <= 0.01
    assert mask.metadata["metrics"]["best_epoch"] in (1, 2, 3)


def _pretrain(model: torch.nn.Module, loader, epochs: int, lr: float = 0.05) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


@pytest.mark.slow
def test_pruning_phase_really_prunes_on_small_data():
    """docs/benchmarks.md, "The pruning phase on small data": resnet20 on a few thousand real digits, flops:0.25 — the soft
    ratio ends near the target, the gates end crisp, and the hard mask works *before* fine-tuning.
    (The full-length run is ``benchmarks/prune_small_data.py``; docs/benchmarks.md has its numbers.)"""
    data = load_data("mnist5k", max_samples=2000, seed=0)
    train, val, _ = make_loaders(data, batch_size=32, seed=0)
    pre, _, _ = make_loaders(data, batch_size=128, seed=0)
    torch.manual_seed(0)
    model = cz.create_model("resnet20", num_classes=data.num_classes, in_chans=data.in_chans)
    _pretrain(model, pre, epochs=3)
    # floor=0: the phase allocates the whole budget (with the default width floor the floor fixes each
    # group's width and the gates only pick channels within groups; tests/test_mask_quality.py checks that)
    pruner = cz.ChipNetPruner(model, "flops:0.25", example_input=torch.randn(1, *data.input_size), floor=0.0)
    history = pruner.fit(train, val, epochs=4, progress=False)
    last = history[-1]
    assert abs(last["soft_ratio"] - 0.25) <= 0.05, last
    assert last["crisp_fraction"] >= 0.9, last
    assert last["hard_val_accuracy"] >= 0.6, last  # chance is 0.1; the authors' phase alone ends there
    mask = pruner.mask()
    assert 0.24 <= mask.ratios["flops"] <= 0.25
    assert mask.metadata["metrics"]["hard_val_accuracy"] >= 0.6


def test_harden_must_be_a_fraction():
    model = cz.create_model("resnet8", num_classes=10)
    pruner = cz.ChipNetPruner(model, "flops:0.5", example_input=torch.randn(1, 3, 32, 32))
    loader = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))]
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="harden must be a fraction"):
            pruner.fit(loader, loader, epochs=1, harden=bad, progress=False)


def test_group_normalised_gates_peak_at_one_per_group():
    """Each channel group's largest gate is exactly 1, so a whole group cannot hide at a small common z
    (which BatchNorm's scale invariance would otherwise allow); the raw z is still what crispness sees."""
    model = cz.create_model("resnet8", num_classes=10)
    pruner = cz.ChipNetPruner(model, "flops:0.5", example_input=torch.randn(1, 3, 32, 32))
    gates = pruner.gates
    assert gates.group_normalize
    with torch.no_grad():
        gates.psi.uniform_(-0.5, 0.5)
        gates.beta.fill_(2.0)
        gates.gamma.fill_(2.0)
    z, raw = gates.z(), gates.z_raw()
    for group in pruner.graph.groups:
        idx = group.indices
        assert z[idx].max().item() == pytest.approx(1.0)
        assert torch.allclose(z[idx], raw[idx] / raw[idx].max())
    assert raw.max() < 1.0  # the raw gates themselves are not crisp here


def test_distillation_loss_interpolates_ce_and_kl():
    from chipnet_zoo.pruner import distillation_loss

    torch.manual_seed(0)
    student, teacher, labels = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert torch.allclose(distillation_loss(student, teacher, labels, weight=0.0), ce)
    assert float(distillation_loss(teacher, teacher, labels, weight=1.0)) == pytest.approx(0.0, abs=1e-6)
    kl = distillation_loss(student, teacher, labels, weight=1.0, temperature=2.0)
    assert float(kl) > 0 and torch.allclose(distillation_loss(student, teacher, labels, weight=0.5, temperature=2.0),
                                            0.5 * ce + 0.5 * kl)
    with pytest.raises(ValueError):
        distillation_loss(student, teacher, labels, weight=1.5)


def test_fit_distils_from_a_frozen_teacher_and_records_it():
    data = load_data("mnist5k", max_samples=300, seed=0)
    train, val, _ = make_loaders(data, batch_size=32, seed=0)
    torch.manual_seed(0)
    model = cz.create_model("resnet8", num_classes=data.num_classes, in_chans=data.in_chans)
    teacher = cz.create_model("resnet8", num_classes=data.num_classes, in_chans=data.in_chans).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    pruner = cz.ChipNetPruner(model, "flops:0.5", example_input=torch.randn(1, *data.input_size))
    history = pruner.fit(train, val, epochs=1, progress=False, distill_from=teacher, distill_weight=0.7)
    assert math.isfinite(history[-1]["ce"]) and not teacher.training  # the teacher's BN statistics stay put
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert pruner.mask().metadata["hparams"]["distill_weight"] == 0.7
