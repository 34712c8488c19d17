"""The pruning phase on real data: short runs move towards the budget, and on a small data set
(a few thousand real digits) the default phase really prunes (DESIGN §3.3, "measured pitfall")."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import chipnet_zoo as cz
from chipnet_zoo.data import load_data, make_loaders
from chipnet_zoo.errors import UnreachableBudgetError
from chipnet_zoo.evaluation import evaluate_accuracy
from chipnet_zoo.gates import crispness_loss, has_gates, heaviside, logistic


def _pretrain(model, loader, epochs: int, lr: float = 0.05) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


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


@pytest.mark.slow
def test_pruning_phase_really_prunes_on_small_data():
    """resnet20 on mnist5k (3,500 training digits): the authors' per-epoch defaults open every gate
    here; ours must end near the budget, crisp, and accurate under the hard mask before fine-tuning."""
    data = load_data("mnist5k", seed=0)
    assert 3000 <= len(data.train) <= 4000
    train, val, _ = make_loaders(data, batch_size=32, seed=0)
    torch.manual_seed(0)
    model = cz.create_model("resnet20", num_classes=10, in_chans=1)
    pre_train, _, _ = make_loaders(data, batch_size=128, seed=0)
    _pretrain(model, pre_train, epochs=3)
    dense_acc = evaluate_accuracy(model, val)
    assert dense_acc > 0.85
    pruner = cz.ChipNetPruner(model, "flops:0.25", example_input=torch.randn(1, 1, 28, 28))
    history = pruner.fit(train, val, epochs=6, progress=False)
    last = history[-1]
    assert abs(last["soft_ratio"] - 0.25) <= 0.05, history
    assert last["crisp_fraction"] >= 0.9, history
    assert max(h["hard_val_accuracy"] for h in history) > 0.6, history  # chance is 0.1
    mask = pruner.mask()
    assert mask.ratios["flops"] <= 0.25 and mask.kept() != {n: s for n, s in mask.structure}
