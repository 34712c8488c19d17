"""Training loops: one epoch of cross-entropy training and :class:`Trainer` (a phase: epochs, validation,
best-epoch selection, a state that resumes exactly), through ``accelerate`` so one code path runs on CPU,
on one GPU (bf16 autocast, channels_last) and on many GPUs or CPU processes (DDP). Recipes live in
:mod:`chipnet_zoo.recipes`, optimisers in :mod:`chipnet_zoo.optim`, evaluation in :mod:`chipnet_zoo.evaluation`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .distributed import gather_strings, sync_from_main, tensors_digest, to_device, uses_channels_last
from .evaluation import evaluate
from .optim import build_optimizer, build_scheduler


def _reduce(values: list[float], accelerator, device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if accelerator is not None and accelerator.num_processes > 1:
        t = accelerator.reduce(t, "sum")
    return t.tolist()


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, accelerator=None, *,
                    progress: bool = True, desc: str = "train") -> dict[str, float]:
    """One pass of cross-entropy training. Returns mean loss, accuracy, samples (all ranks) and seconds."""
    model.train()
    device = next(model.parameters()).device
    channels_last = uses_channels_last(accelerator)
    loss_sum = correct = n = 0.0
    start = time.perf_counter()
    show = progress and (accelerator is None or accelerator.is_main_process)
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=not show):
        images, labels = to_device(images, device, channels_last), labels.to(device, non_blocking=True)
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        if accelerator is not None:
            accelerator.backward(loss)
        else:
            loss.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum += float(loss) * labels.numel()
            correct += float((logits.argmax(1) == labels).sum())
            n += labels.numel()
    seconds = time.perf_counter() - start
    loss_sum, correct, n = _reduce([loss_sum, correct, n], accelerator, device)
    return {"train_loss": loss_sum / max(n, 1), "train_accuracy": correct / max(n, 1), "train_samples": int(n),
            "train_seconds": seconds, "samples_per_s": n / max(seconds, 1e-9)}


# --- the phase loop ------------------------------------------------------------------------------
class Trainer:
    """Cross-entropy training of a plain model (dense training, fine-tuning) with per-epoch validation,
    best-epoch selection and a state that resumes exactly.

    ``callback(record, trainer)`` runs after every epoch (checkpoint there). Under DDP the weights are
    identical on every rank; at the end rank 0's buffers (BN statistics) are broadcast to all.
    """

    def __init__(self, model: nn.Module, train_loader, val_loader, cfg: Mapping[str, Any], *, accelerator,
                 progress: bool = True, desc: str = "train"):
        self.cfg, self.accelerator, self.progress, self.desc = dict(cfg), accelerator, progress, desc
        self.epochs = int(cfg["epochs"])
        model = model.to(accelerator.device)
        if uses_channels_last(accelerator):
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(optimizer, cfg, self.epochs)
        self.model, self.optimizer, self.train_loader, self.val_loader = accelerator.prepare(
            model, optimizer, train_loader, val_loader)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.rank_digests: list[str] = []

    @property
    def unwrapped(self) -> nn.Module:
        """The plain module (DDP removed). The mixed-precision forward wrapper is kept: removing it
        (``keep_fp32_wrapper=False``) would modify the model in place and turn autocast off."""
        return self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=True)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.unwrapped.state_dict().items()}

    def fit(self, callback: Callable[[dict[str, Any], Trainer], None] | None = None) -> list[dict[str, Any]]:
        acc = self.accelerator
        bar = tqdm(range(self.epoch, self.epochs), desc=self.desc, initial=self.epoch, total=self.epochs,
                   disable=not (self.progress and acc.is_main_process))
        for epoch in bar:
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            stats = train_one_epoch(self.model, self.train_loader, self.optimizer, acc, progress=self.progress,
                                    desc=f"epoch {epoch + 1}")
            val = evaluate(self.model, self.val_loader, accelerator=acc)
            self.scheduler.step()
            record = {"epoch": epoch + 1, "lr": lr, **stats, "val_loss": val["loss"],
                      "val_accuracy": val["accuracy"], "seconds": time.perf_counter() - start}
            self.epoch = epoch + 1
            self.history.append(record)
            if self.best is None or record["val_accuracy"] > self.best["val_accuracy"] or self.cfg["select"] == "last":
                self.best = {"epoch": epoch + 1, "val_accuracy": record["val_accuracy"], "state": self._snapshot()}
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", val_acc=f"{record['val_accuracy']:.3f}")
            if callback is not None:
                callback(record, self)
        if self.best is not None:
            self.unwrapped.load_state_dict(self.best["state"])
        # DDP keeps parameters identical on every rank; record each rank's digest before syncing buffers
        self.rank_digests = gather_strings(tensors_digest(dict(self.unwrapped.named_parameters())), acc)
        sync_from_main(self.unwrapped, acc)
        return self.history

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume: epoch, history, weights, optimizer, scheduler, best epoch."""
        return {"epoch": self.epoch, "history": list(self.history), "model": self._snapshot(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "best": self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.unwrapped.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history") or [])
        self.best = state.get("best")
