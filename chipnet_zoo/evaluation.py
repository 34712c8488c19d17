"""Accuracy of a classifier over a loader: one device, or every rank of an ``accelerate`` run."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader, *, accelerator=None, max_batches: int | None = None) -> float:
    """Top-1 accuracy in eval mode (the model's train/eval mode is restored afterwards).

    With an ``accelerate.Accelerator`` whose loader was prepared, counts are summed over ranks.
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
            logits = model(images)
            correct += (logits.argmax(dim=1) == labels).sum()
            total += labels.numel()
    finally:
        model.train(was_training)
    if accelerator is not None and accelerator.num_processes > 1:
        correct, total = accelerator.reduce(correct, "sum"), accelerator.reduce(total, "sum")
    return float(correct) / max(int(total), 1)
