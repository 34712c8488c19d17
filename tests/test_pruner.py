"""The pruning phase on real data: a short run moves towards the budget and crispens the gates.

The full small-data check (resnet20 on mnist5k, DESIGN §3.3 "measured pitfall") is a benchmark,
``benchmarks/prune_small_data.py``: see docs/benchmarks.md for what it shows."""

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
