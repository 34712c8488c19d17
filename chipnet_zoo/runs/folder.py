"""Run folders: what every ``train`` / ``prune`` / ``finetune`` run leaves behind. A :class:`Run` owns its
folder: the files, the lock, the per-epoch log and the checkpoints.

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

    >>> from chipnet_zoo.runs import Run
    >>> Run("runs/finetune-resnet8-mnist5k-flops-0.25").metrics()["test_accuracy"]   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

from .._atomic import atomic_write, atomic_write_json
from ..checkpoint import CheckpointDir
from ..errors import RunError

CONFIG, METRICS, LOG = "config.json", "metrics.json", "log.jsonl"
WEIGHTS, MASK, PRUNED_WEIGHTS = "weights.safetensors", "mask.safetensors", "pruned_weights.safetensors"
CURVES, KEPT_PLOT, CHECKPOINT, LOCK = "curves.png", "kept_channels.png", "checkpoint", ".lock"
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
                from .._version import __version__

                out[name] = __version__
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def default_run_dir(kind: str, arch: str, dataset: str, budget_slug: str | None = None, root: str = "runs") -> Path:
    """``runs/<kind>-<arch>-<dataset>[-<budget>]`` (deterministic, so ``--resume`` finds it again)."""
    safe = [s.replace("/", "_").replace(os.sep, "_") for s in (kind, arch, Path(dataset).name or dataset, budget_slug)
            if s]
    return Path(root) / "-".join(safe)


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


class Run:
    """One run folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint(self) -> CheckpointDir:
        return CheckpointDir(self.path / CHECKPOINT)

    def lock(self, *, wait: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the folder's lock while the run executes (see :func:`run_lock`)."""
        return run_lock(self.path, wait=wait)

    def save_epoch(self, record: Mapping[str, Any], state_fn: Callable[[], Any], accelerator,
                   generators: Mapping[str, Any]) -> None:
        """After an epoch: append ``record`` to the log and checkpoint every rank's RNG and (rank 0) the
        state ``state_fn()`` (a collective: every rank calls it)."""
        epoch = int(record["epoch"])
        if accelerator.is_main_process:
            self.append_log(record)
        ckpt = self.checkpoint
        ckpt.path.mkdir(parents=True, exist_ok=True)
        ckpt.save_rng(epoch, accelerator.process_index, generators)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            ckpt.commit(epoch, state_fn(), accelerator.num_processes)
        accelerator.wait_for_everyone()

    def restore_epoch(self, history: list[Mapping[str, Any]], accelerator, generators: Mapping[str, Any]) -> None:
        """On resume, after the phase loaded its checkpointed state: restore this rank's RNG and rewrite
        the log with the checkpoint's ``history`` (records of epochs after the checkpoint are dropped)."""
        from ..checkpoint import set_rng_state

        rng = self.checkpoint.load_rng(accelerator.process_index)
        if rng is not None:
            set_rng_state(rng, generators)
        if accelerator.is_main_process:
            self.write_log(history)

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
        atomic_write(self.file(LOG), text.encode())

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
