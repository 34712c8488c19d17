"""The optimiser and the per-epoch learning-rate schedule of a phase (its :func:`~chipnet_zoo.recipes.phase_config`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum, coupled weight decay on every parameter, as the authors) or AdamW."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=bool(cfg["nesterov"]),
                           weight_decay=cfg["weight_decay"])


class EpochSchedule:
    """LR factor per epoch; a plain object so ``LambdaLR.state_dict()`` saves it (as JSON-able fields).

    ``step``: × ``lr_gamma`` every ``step_size`` epochs (the authors' type 1); ``multistep``: × ``lr_gamma``
    at each milestone (fractions of the run, e.g. 0.5 and 0.75 — the authors' type 2, or epoch numbers);
    ``cosine``: to 0 over the run; ``constant``.
    """

    def __init__(self, kind: str, epochs: int, step_size: int = 30, lr_gamma: float = 0.5,
                 milestones: list[float] | None = None):
        self.kind, self.epochs = kind, int(epochs)
        self.step_size, self.lr_gamma = int(step_size), float(lr_gamma)
        self.milestones = sorted(round(m * epochs) if m < 1 else int(m) for m in (milestones or []))

    def __call__(self, epoch: int) -> float:
        if self.kind == "step":
            return self.lr_gamma ** (epoch // max(self.step_size, 1))
        if self.kind == "multistep":
            return self.lr_gamma ** sum(epoch >= m for m in self.milestones)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.epochs) / max(self.epochs, 1)))
        return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], epochs: int):
    """A per-epoch ``LambdaLR`` for the phase (not passed to ``accelerator.prepare``: it is stepped
    once per epoch, not per optimizer step)."""
    fn = EpochSchedule(cfg["schedule"], epochs, cfg["step_size"], cfg["lr_gamma"], cfg["milestones"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
