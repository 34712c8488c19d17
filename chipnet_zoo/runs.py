"""Run folders: what every ``train`` / ``prune`` / ``finetune`` run leaves behind, and how to load it.

A run folder holds::

    config.json                  everything to reproduce the run (arch, data + split, recipe, seeds, versions)
    metrics.json                 final metrics (val/test accuracy, the four ratios, params, MACs, epochs_done)
    log.jsonl                    one JSON record per epoch
    weights.safetensors          train: dense weights; finetune: the slimmed model's weights
    mask.safetensors             prune (and finetune, copied): the hard mask
    pruned_weights.safetensors   prune: the dense-shaped weights after the pruning phase
    curves.png, kept_channels.png
    checkpoint/                  while the run is in progress (removed when it finishes)
    .lock                        held by the process running it (a second process is refused, or waits)

    >>> from chipnet_zoo.runs import load_run_model
    >>> model = load_run_model("runs/finetune-resnet8-mnist5k-flops-0.25")   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointDir, atomic_write_bytes, atomic_write_json, load_tensors, save_tensors
from .errors import RunError
from .weights import load_weights_into  # the one strict loader (pipeline calls R.load_weights_into)

CONFIG, METRICS, LOG = "config.json", "metrics.json", "log.jsonl"
WEIGHTS, MASK, PRUNED_WEIGHTS = "weights.safetensors", "mask.safetensors", "pruned_weights.safetensors"
CURVES, KEPT_PLOT, CHECKPOINT = "curves.png", "kept_channels.png", "checkpoint"
RUN_KINDS = ("train", "prune", "finetune")
_VERSIONED = ("chipnet-zoo", "torch", "torchvision", "torch-pruning", "accelerate", "datasets", "safetensors",
              "huggingface-hub", "numpy")


def library_versions() -> dict[str, str]:
    """Versions of Python and of every library a run depends on."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            if name == "chipnet-zoo":
                from ._version import __version__

                out[name] = __version__
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def default_run_dir(kind: str, arch: str, dataset: str, budget_slug: str | None = None, root: str = "runs") -> Path:
    """``runs/<kind>-<arch>-<dataset>[-<budget>]`` (deterministic, so ``--resume`` finds it again)."""
    safe = [s.replace("/", "_").replace(os.sep, "_") for s in (kind, arch, Path(dataset).name or dataset, budget_slug)
            if s]
    return Path(root) / "-".join(safe)


LOCK = ".lock"


@contextlib.contextmanager
def run_lock(path: str | os.PathLike, *, wait: bool = False) -> Iterator[None]:
    """Hold ``<path>/.lock`` (an OS file lock, released when the process dies) while a run executes.

    Two processes on one run folder would overwrite each other's checkpoints. If another process holds
    the lock, ``wait=False`` raises :class:`RunError`; ``wait=True`` blocks until it is released (the
    experiment runner: the run is then usually finished and is reused).
    """
    from filelock import FileLock, Timeout

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise RunError(f"run folder {folder} is in use by another process; wait for it to finish, "
                           "or choose another --out") from None
        print(f"waiting for run folder {folder} (in use by another process)", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# --- weights -------------------------------------------------------------------------------------
def save_state_dict(path: str | Path, state: Mapping[str, torch.Tensor], **metadata: Any) -> Path:
    """A model's ``state_dict`` as safetensors (atomic); metadata under ``chipnet_zoo.*`` as strings."""
    meta = {f"chipnet_zoo.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    save_tensors(Path(path), dict(state), meta)
    return Path(path)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"weights file not found: {path}")
    try:
        return load_tensors(path)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise RunError(f"cannot read weights file {path}: {exc}") from None


# --- the run folder ------------------------------------------------------------------------------
class Run:
    """One run folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint(self) -> CheckpointDir:
        return CheckpointDir(self.path / CHECKPOINT)

    def exists(self) -> bool:
        return self.file(CONFIG).is_file()

    def config(self) -> dict[str, Any]:
        try:
            return json.loads(self.file(CONFIG).read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a chipnet-zoo run folder (no {CONFIG})") from None
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.file(CONFIG)} is not valid JSON: {exc}") from None

    def metrics(self) -> dict[str, Any] | None:
        path = self.file(METRICS)
        return json.loads(path.read_text()) if path.is_file() else None

    def is_finished(self) -> bool:
        m = self.metrics()
        return bool(m and m.get("finished"))

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.file(CONFIG), dict(config))

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        atomic_write_json(self.file(METRICS), dict(metrics))

    def write_log(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Rewrite ``log.jsonl`` with exactly these records (on resume: the checkpoint's history)."""
        text = "".join(json.dumps(dict(r), allow_nan=True) + "\n" for r in records)
        atomic_write_bytes(self.file(LOG), text.encode())

    def append_log(self, record: Mapping[str, Any]) -> None:
        with open(self.file(LOG), "a") as fh:
            fh.write(json.dumps(dict(record), allow_nan=True) + "\n")

    def log(self) -> list[dict[str, Any]]:
        path = self.file(LOG)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def open_source_run(path: str | os.PathLike, kinds: tuple[str, ...] | None = None) -> tuple[Run, dict[str, Any]]:
    """A finished run to chain from (``--from``), checked to be of one of ``kinds``."""
    run = Run(path)
    if not run.path.is_dir():
        raise RunError(f"run folder not found: {run.path}")
    config = run.config()
    if kinds and config.get("kind") not in kinds:
        raise RunError(f"{run.path} is a {config.get('kind')!r} run; expected a {' or '.join(kinds)} run")
    if not run.is_finished():
        raise RunError(f"run {run.path} has not finished (resume it with --resume first)")
    return run, config


# --- models from runs ----------------------------------------------------------------------------
def build_model(config: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised model of the run's architecture, class count and input channels."""
    from .models import create_model

    return create_model(config["arch"], num_classes=int(config["num_classes"]), in_chans=int(config["in_chans"]))


def example_input(config: Mapping[str, Any], batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, *[int(v) for v in config["input_size"]])


def check_mask_arch(mask, arch: str) -> None:
    """A mask learned on another architecture is refused before any tracing."""
    mask.check_arch(arch)


def load_run_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The runnable model a run produced, in eval mode, with ONE call.

    ``train``: the dense model; ``prune``: the pruned-phase weights slimmed with the mask (computes what
    the masked model does); ``finetune``: the slimmed, fine-tuned model (arch rebuilt, slimmed with the
    run's mask, weights loaded strictly).
    """
    from .mask import Mask

    run = Run(run_dir)
    config = run.config()
    kind = config.get("kind")
    if kind not in RUN_KINDS:
        raise RunError(f"{run.path}: unknown run kind {kind!r}")
    model = build_model(config)
    if kind == "train":
        model = load_weights_into(model, load_state_dict_file(run.file(WEIGHTS)), str(run.file(WEIGHTS)))
    else:
        mask = Mask.load(run.file(MASK))
        check_mask_arch(mask, config["arch"])
        if kind == "prune":
            load_weights_into(model, load_state_dict_file(run.file(PRUNED_WEIGHTS)), str(run.file(PRUNED_WEIGHTS)))
            model = mask.slim(model, example_input(config))
        else:
            model = mask.slim(model, example_input(config))
            load_weights_into(model, load_state_dict_file(run.file(WEIGHTS)), str(run.file(WEIGHTS)))
    for attr in ("arch_name", "num_classes", "in_chans", "default_input_size", "classifier_name"):
        if not hasattr(model, attr):
            setattr(model, attr, config.get({"default_input_size": "input_size"}.get(attr, attr)))
    return model.to(device).eval()


# --- plots ---------------------------------------------------------------------------------------
def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (10, 4)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]


def plot_curves(history: list[Mapping[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Training curves: losses and accuracies (and budget ratios in a pruning run) per epoch."""
    if not history:
        return None
    epochs = [r["epoch"] for r in history]
    panels = [("loss", ["train_loss", "val_loss", "loss", "ce"]),
              ("accuracy", ["train_accuracy", "val_accuracy", "soft_val_accuracy", "hard_val_accuracy"]),
              ("ratio", ["soft_ratio", "hard_ratio", "crisp_fraction"])]
    panels = [(n, [k for k in keys if k in history[0]]) for n, keys in panels]
    panels = [(n, keys) for n, keys in panels if keys]
    fig, axes = _figure(1, len(panels), (5 * len(panels), 3.8))
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_kept_channels(mask, path: str | Path) -> Path:
    """Bar plot of kept vs total channels per channel group of a mask."""
    names = [n for n, _ in mask.structure]
    totals = [s for _, s in mask.structure]
    kept = [mask.kept()[n] for n in names]
    fig, (ax,) = _figure(1, 1, (max(6.0, 0.32 * len(names) + 2), 4.5))
    xs = range(len(names))
    ax.bar(xs, totals, color="#d0d0d0", label="total")
    ax.bar(xs, kept, color="#2a7ab9", label="kept")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("channels")
    budget = mask.budget
    ratios = ", ".join(f"{k} {v:.3f}" for k, v in mask.ratios.items())
    ax.set_title(f"{mask.arch}: kept channels per group, budget {budget}\nratios: {ratios}", fontsize=9)
    for x, k, t in zip(xs, kept, totals):
        ax.text(x, t, f"{k}/{t}", ha="center", va="bottom", fontsize=6)
    ax.legend()
    fig.savefig(path, dpi=110)
    return Path(path)


def write_summary(metrics: Mapping[str, Any], stream=None) -> None:
    """A concise human summary of a run's metrics."""
    stream = stream or sys.stderr
    ratios = metrics.get("ratios") or {}
    parts = [f"val {metrics.get('val_accuracy', float('nan')):.4f}",
             f"test {metrics.get('test_accuracy', float('nan')):.4f}",
             f"params {metrics.get('params', 0):,}", f"MACs {metrics.get('macs', 0):,}"]
    if ratios:
        parts.append("ratios " + " ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    print(f"[{metrics.get('kind', 'run')}] " + " | ".join(parts), file=stream)
    if metrics.get("run_dir"):
        print(f"  run folder: {metrics['run_dir']}", file=stream)
