"""Devices and ranks: the ``accelerate.Accelerator`` every run uses (CPU, one GPU, or DDP under ``torchrun`` /
``accelerate launch``) and the helpers that keep ranks in step (broadcast, digests, gathering strings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .errors import RunError


def is_rank0() -> bool:
    """Whether this is the global main process, also before the process group exists (``RANK`` is set by
    ``torchrun`` / ``accelerate launch``); the one such check of the package."""
    return int(os.environ.get("RANK", "0")) == 0


def make_accelerator(device: str = "auto", mixed_precision: str | None = None):
    """An ``accelerate.Accelerator``: ``device`` auto | cpu | cuda; bf16 autocast on GPUs that support
    it (``mixed_precision`` overrides: no | bf16 | fp16). Under ``torchrun``/``accelerate launch`` it
    joins the process group (gloo on CPU, NCCL on GPUs)."""
    from accelerate import Accelerator

    if device not in ("auto", "cpu", "cuda"):
        raise RunError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda was asked for, but no CUDA device is available")
    cpu = device == "cpu" or not torch.cuda.is_available()
    if mixed_precision is None:
        mixed_precision = "bf16" if not cpu and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)


def uses_channels_last(accelerator) -> bool:
    return accelerator is not None and accelerator.device.type == "cuda"


def describe_accelerator(accelerator) -> dict[str, Any]:
    info = {"device": str(accelerator.device), "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type), "mixed_precision": accelerator.mixed_precision,
            "channels_last": uses_channels_last(accelerator)}
    if accelerator.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(accelerator.device)
    return info


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def sync_from_main(model: nn.Module, accelerator) -> None:
    """Broadcast rank 0's parameters and buffers to every rank (no-op on one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def tensors_digest(tensors: Mapping[str, torch.Tensor] | list[torch.Tensor]) -> str:
    """sha256 of the bytes of tensors (in order): equal digests mean bitwise-equal tensors."""
    import hashlib

    h = hashlib.sha256()
    items = tensors.items() if isinstance(tensors, Mapping) else enumerate(tensors)
    for key, t in items:
        h.update(str(key).encode())
        t = t.detach().to("cpu").contiguous()
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def gather_strings(value: str, accelerator) -> list[str]:
    """Every rank's ``value`` (fixed-length hex digests), in rank order, on every rank."""
    if accelerator is None or accelerator.num_processes == 1:
        return [value]
    data = torch.tensor(list(value.encode()), dtype=torch.int64, device=accelerator.device)
    gathered = accelerator.gather(data.unsqueeze(0)).cpu()
    return [bytes(row.tolist()).decode() for row in gathered]
