"""The training engine: recipes, optimisers and LR schedules, one epoch of training, evaluation and
latency, all through ``accelerate`` so one code path runs on CPU, on one GPU (bf16 autocast,
channels_last) and on many GPUs or CPU processes (``accelerate launch`` / ``torchrun``, DDP).

    >>> from chipnet_zoo.training import load_recipe, phase_config
    >>> cfg = phase_config(load_recipe("paper"), "train")
    >>> cfg["optimizer"], cfg["lr"], cfg["epochs"]
    ('sgd', 0.05, 200)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .errors import RunError
from .threshold import check_round_to

RECIPE_DIR = Path(__file__).parent / "recipes"
PHASES = ("train", "prune", "finetune")
#: Every key a phase of a recipe may set, with its default (the authors' dense-training defaults).
PHASE_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",        # sgd | adamw (the pruning phase: always adamw, constant lr)
    "lr": 0.05,
    "momentum": 0.9,           # sgd only
    "nesterov": False,         # sgd only
    "weight_decay": 1e-3,      # coupled for sgd, decoupled for adamw
    "schedule": "step",        # constant | step | multistep | cosine (stepped once per epoch)
    "step_size": 30,           # step: epochs between decays
    "lr_gamma": 0.5,           # step / multistep: decay factor
    "milestones": [0.5, 0.75],  # multistep: fractions of the run (< 1) or epoch numbers (>= 1)
    "batch_size": 128,
    "epochs": 200,
    "select": "best",          # best (restore the best-validation epoch at the end) | last
    "budget_weight": 30.0,     # prune only
    "crispness_weight": 100.0,  # prune only (the paper recipes: the authors' 10; see pruner.DEFAULT_CRISPNESS_WEIGHT)
    "psi_travel": None,        # prune only: None = the pruner's default
    "harden": None,            # prune only: final fraction trained under the hard mask; None = the pruner's
                               # default, 0 = the authors' purely soft phase
    "round_to": 1,             # prune only: every group keeps a multiple of this many channels (or all)
    "min_keep": None,          # prune only: every group keeps at least this fraction; None = the pruner's default
    "floor": None,             # prune only: share of the budget reserved for a uniform width floor; None = default
    "budget_grad_power": None,  # prune only: budget gradient ∝ cost**power; None = the pruner's default
}

#: Where a phase's defaults differ (the authors' pruning.py and finetuning.py).
PHASE_SPECIFIC: dict[str, dict[str, Any]] = {
    "prune": {"optimizer": "adamw", "lr": 1e-3, "schedule": "constant", "batch_size": 32, "epochs": 20},
    "finetune": {"epochs": 300},
}


# --- recipes -------------------------------------------------------------------------------------
def list_recipes() -> list[str]:
    """Names of the recipes that ship with the package."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """A recipe (YAML): a shipped name (``paper``, ``cpu``, ...) or a path. Returns its mapping."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise RunError(f"unknown recipe {str(name_or_path)!r}: not a file, and not one of the shipped "
                           f"recipes ({', '.join(list_recipes())})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RunError(f"recipe {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RunError(f"recipe {path} must be a mapping with sections {', '.join(PHASES)}")
    unknown = set(data) - set(PHASES) - {"name", "description"}
    if unknown:
        raise RunError(f"recipe {path}: unknown sections {sorted(unknown)}; expected {', '.join(PHASES)}")
    data.setdefault("name", path.stem)
    return data


def phase_config(recipe: Mapping[str, Any], phase: str, **overrides: Any) -> dict[str, Any]:
    """The settings of one phase: defaults < recipe section < ``overrides`` (``None`` = not given)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    section = dict(recipe.get(phase) or {})
    unknown = set(section) - set(PHASE_DEFAULTS)
    if unknown:
        raise RunError(f"recipe {recipe.get('name')!r}, section {phase!r}: unknown keys {sorted(unknown)}; "
                       f"known: {', '.join(PHASE_DEFAULTS)}")
    cfg = {**PHASE_DEFAULTS, **PHASE_SPECIFIC.get(phase, {}), **section,
           **{k: v for k, v in overrides.items() if v is not None}}
    if cfg["optimizer"] not in ("sgd", "adamw"):
        raise RunError(f"optimizer must be sgd or adamw, got {cfg['optimizer']!r}")
    if cfg["schedule"] not in ("constant", "step", "multistep", "cosine"):
        raise RunError(f"schedule must be constant, step, multistep or cosine, got {cfg['schedule']!r}")
    if phase == "prune" and (cfg["optimizer"], cfg["schedule"]) != ("adamw", "constant"):
        raise RunError("the pruning phase uses AdamW at a constant learning rate (as the authors' code); "
                       f"recipe {recipe.get('name')!r} asks for {cfg['optimizer']} with a {cfg['schedule']} schedule")
    if cfg["select"] not in ("best", "last"):
        raise RunError(f"select must be best or last, got {cfg['select']!r}")
    for key in ("epochs", "batch_size"):
        if int(cfg[key]) < 1:
            raise RunError(f"{key} must be >= 1, got {cfg[key]!r}")
        cfg[key] = int(cfg[key])
    if not float(cfg["lr"]) > 0:
        raise RunError(f"lr must be > 0, got {cfg['lr']!r}")
    for key in ("lr", "momentum", "weight_decay", "lr_gamma", "budget_weight", "crispness_weight"):
        cfg[key] = float(cfg[key])
    cfg["milestones"] = [float(m) for m in cfg["milestones"]]
    try:
        cfg["round_to"] = check_round_to(cfg["round_to"])
    except (TypeError, ValueError) as exc:
        raise RunError(str(exc)) from None
    for key in ("min_keep", "floor", "budget_grad_power"):
        if cfg[key] is not None:
            cfg[key] = float(cfg[key])
            if not 0.0 <= cfg[key] <= 1.0:
                raise RunError(f"{key} must be in [0, 1], got {cfg[key]!r}")
    if cfg["harden"] is not None:
        cfg["harden"] = float(cfg["harden"])
        if not 0.0 <= cfg["harden"] <= 1.0:
            raise RunError(f"harden must be a fraction in [0, 1], got {cfg['harden']!r}")
    return cfg


# --- optimiser and schedule ----------------------------------------------------------------------
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


# --- devices -------------------------------------------------------------------------------------
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


# --- one epoch, evaluation -----------------------------------------------------------------------
def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


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
        images, labels = _to(images, device, channels_last), labels.to(device, non_blocking=True)
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


@torch.no_grad()
def evaluate(model: nn.Module, loader, accelerator=None) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy in eval mode over every sample (each counted once on all
    ranks; ``gather_for_metrics`` drops the padding of the last uneven batch)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    channels_last = uses_channels_last(accelerator)
    loss_sum = correct = n = 0.0
    try:
        for images, labels in loader:
            images, labels = _to(images, device, channels_last), labels.to(device, non_blocking=True)
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


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of a batch."""
    return float((logits.argmax(1) == labels).float().mean()) if labels.numel() else math.nan


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
            val = evaluate(self.model, self.val_loader, acc)
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


# --- ranks ---------------------------------------------------------------------------------------
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


# --- latency ---------------------------------------------------------------------------------------
@torch.no_grad()
def measure_latency(model: nn.Module, input_size: tuple[int, ...] | list[int], batch_sizes=(64, 1), *,
                    repeats: int = 20, warmup: int = 3, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Median forward time (ms) in eval mode per batch size, plus samples/s. On CUDA, synchronised."""
    device = torch.device(device)
    model = model.to(device).eval()
    out: dict[str, Any] = {"device": str(device), "repeats": repeats, "threads": torch.get_num_threads()}
    for bs in batch_sizes:
        x = torch.randn(bs, *input_size, device=device)
        times = []
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        median = statistics.median(times)
        out[f"batch_{bs}_ms"] = median
        out[f"batch_{bs}_samples_per_s"] = bs / (median / 1e3)
    return out
