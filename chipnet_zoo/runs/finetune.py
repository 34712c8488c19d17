"""The ``finetune`` phase's mask: loaded, re-thresholded if the run's budget differs from the mask's, used
to slim the model (the channels it drops are removed, so the mask stays frozen while training), and saved
with the fine-tuned accuracies. The training itself is :func:`.train.train_phase`'s."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..mask import Mask
from ..mask_plot import save_kept_channels
from .evaluate import mask_ratios
from .folder import KEPT_PLOT, MASK
from .session import RunSession


def slim_with_mask(session: RunSession, model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, Mask, dict[str, float]]:
    """The run's mask (re-thresholded at the run's budget if it differs), its ratios on ``model`` and
    ``model`` slimmed by it."""
    options = session.options
    mask = Mask.load(options.mask_file)
    mask.check_arch(options.arch)
    if options.budget is not None and mask.budget is not None and options.budget != mask.budget:
        table = None
        if options.budget.kind == "latency":  # measured for this model on this machine (cached)
            from ..latency import build_latency_table

            table = build_latency_table(model, x, progress=session.progress)
        mask = mask.rethreshold(options.budget, model=model, example_input=x, latency_table=table)
        session.log(f"mask re-thresholded to {options.budget}: ratios {mask.ratios}")
    ratios = mask_ratios(mask, model, x)
    return mask.slim(model, x), mask, ratios


def save_finetuned_mask(session: RunSession, mask: Mask, metrics: dict[str, Any]) -> None:
    """``mask.safetensors`` (with the fine-tuned val/test accuracy) and ``kept_channels.png``."""
    run = session.run
    mask.with_metadata(metrics={**(mask.metadata.get("metrics") or {}),
                                "finetuned_val_accuracy": metrics["val_accuracy"],
                                "finetuned_test_accuracy": metrics["test_accuracy"]}).save(run.file(MASK))
    save_kept_channels(mask, run.file(KEPT_PLOT))
