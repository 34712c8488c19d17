"""Measuring a model: loss and top-1 accuracy over a loader (one device, or every rank of an ``accelerate``
run), and forward latency. The one evaluation loop of the package (training, pruning, runs, benchmarks)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import to_device, uses_channels_last


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, accelerator=None, max_batches: int | None = None) -> dict[str, float]:
    """Mean cross-entropy, top-1 accuracy and sample count in eval mode (the model's train/eval mode is
    restored afterwards), over the first ``max_batches`` batches or all of them.

    With an ``accelerate.Accelerator`` whose loader was prepared, every rank's samples are counted once
    (``gather_for_metrics`` drops the padding of an uneven last batch).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> data = DataLoader(TensorDataset(torch.randn(8, 4), torch.zeros(8, dtype=torch.long)), batch_size=4)
        >>> sorted(evaluate(model, data))
        ['accuracy', 'loss', 'samples']
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    channels_last = uses_channels_last(accelerator)
    loss_sum = correct = n = 0.0
    try:
        for i, (images, labels) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            images, labels = to_device(images, device, channels_last), labels.to(device, non_blocking=True)
            logits = model(images).float()
            losses = F.cross_entropy(logits, labels, reduction="none")
            hits = (logits.argmax(1) == labels).to(torch.float32)
            if accelerator is not None and accelerator.num_processes > 1:
                losses, hits = accelerator.gather_for_metrics((losses, hits))
            loss_sum += float(losses.sum())
            correct += float(hits.sum())
            n += hits.numel()
    finally:
        model.train(was_training)
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "samples": int(n)}


@torch.no_grad()
def measure_latency(model: nn.Module, input_size: tuple[int, ...] | list[int], batch_sizes=(64, 1), *,
                    repeats: int = 20, warmup: int = 3, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Median forward time (ms) in eval mode per batch size, plus samples/s. On CUDA, synchronised."""
    device = torch.device(device)
    model = model.to(device).eval()
    out: dict[str, Any] = {"device": str(device), "repeats": repeats, "threads": torch.get_num_threads()}
    out.update(time_batches(model, input_size, batch_sizes, repeats=repeats, warmup=warmup, device=device))
    return out


def time_batches(run: Callable[[torch.Tensor], Any], input_size: tuple[int, ...] | list[int], batch_sizes, *,
                 repeats: int, warmup: int, device: str | torch.device = "cpu") -> dict[str, float]:
    """``{"batch_<b>_ms": median ms, "batch_<b>_samples_per_s": ...}`` of ``run`` on a random batch of each
    size: ``warmup`` untimed calls, then ``repeats`` timed ones (synchronised on CUDA)."""
    device = torch.device(device)
    out: dict[str, float] = {}
    for bs in batch_sizes:
        x = torch.randn(bs, *input_size, device=device)
        times = []
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            run(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        median = statistics.median(times)
        out[f"batch_{bs}_ms"] = median
        out[f"batch_{bs}_samples_per_s"] = bs / (median / 1e3)
    return out
