"""Accuracy of a classifier over a loader: one device, or every rank of an ``accelerate`` run."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader, *, accelerator=None, max_batches: int | None = None) -> float:
    """Top-1 accuracy in eval mode (the model's train/eval mode is restored afterwards).

    With an ``accelerate.Accelerator`` whose loader was prepared, every rank's predictions are counted
    once (``gather_for_metrics`` drops the padding of an uneven last batch).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = torch.zeros((), dtype=torch.long, device=device)
    try:
        for i, (images, labels) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            hits = model(images).argmax(dim=1) == labels
            if accelerator is not None and accelerator.num_processes > 1:
                hits = accelerator.gather_for_metrics(hits)  # all ranks, without the padding of uneven batches
            correct += hits.sum()
            total += hits.numel()
    finally:
        model.train(was_training)
    return float(correct) / max(int(total), 1)
