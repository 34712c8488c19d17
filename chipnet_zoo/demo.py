"""``chipnet-zoo demo``: the whole story offline, on CPU, with no arguments.

1. train a small ResNet on ``animal-mnist`` (the teacher);
2. ChipNet-prune it at two FLOPs budgets;
3. push the masks to the demo's own registry, ``<out>/registry`` (never the default registry: the demo
   must not shadow the shipped zoo or change what ``MaskRegistry()`` pulls);
4. pull them back by key and transfer them to ``mnist5k`` (the student, protocol ``scratch``);
5. compare with ChipNet run directly on the student, a random mask at the same budget, and the dense
   student; print the table and write the plot.

It is an experiment (:mod:`chipnet_zoo.experiments`) with one seed, small subsets and few epochs, so it
resumes when run again in the same folder (``--fresh`` starts over).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .budget import Budget
from .experiments import ExperimentConfig, Workspace, run_experiment

TEACHER, STUDENT = "animal-mnist", "mnist5k"

#: Settings (documented in the output). ``full`` fits in < 10 min on 2 CPU cores; ``quick`` in ~1 min.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {"arch": "resnet8", "budgets": [0.125, 0.0625], "max_samples": {TEACHER: 3000, STUDENT: 2000},
             "epochs": {"train": 6, "prune": 4, "finetune": 6}},
    "quick": {"arch": "resnet8", "budgets": [0.125], "max_samples": {TEACHER: 200, STUDENT: 200},
              "epochs": {"train": 1, "prune": 1, "finetune": 1}},
}
METHODS = ["dense", "chipnet-direct", "transfer-scratch", "random"]


def demo_config(quick: bool = False, out: str | Path = "chipnet-zoo-demo") -> ExperimentConfig:
    p = PRESETS["quick" if quick else "full"]
    return ExperimentConfig.from_dict({
        "name": "demo-quick" if quick else "demo", "arch": p["arch"], "teachers": [TEACHER], "students": [STUDENT],
        "budget_type": "flops", "budgets": p["budgets"], "methods": METHODS, "seeds": [0], "recipe": "cpu",
        "epochs": p["epochs"], "max_samples": p["max_samples"], "data_seed": 0, "out": str(out)})


class DemoWorkspace(Workspace):
    """Teacher masks go through a registry: pushed after pruning, then pulled back by key for transfer."""

    def __init__(self, cfg: ExperimentConfig, out: Path, registry: Any, log: list[str],
                 command: list[str] | None = None):
        super().__init__(cfg, out, progress=False, command=command)
        self.registry, self.log = registry, log

    def teacher_mask(self, teacher: str, budget: Budget, seed: int) -> str:
        path = super().teacher_mask(teacher, budget, seed)
        entry = self.registry.push(path, overwrite=True, message="chipnet-zoo demo")
        pulled = self.registry.pull(entry.key)  # by key, sha256-verified
        self.log.append(f"pushed and pulled {entry.key} ({self.registry.location}): kept "
                        f"{int(pulled.keep_vector().sum())}/{pulled.keep_vector().numel()} channels, "
                        f"flops ratio on the teacher {pulled.ratios['flops']:.4f}")
        print(self.log[-1], file=sys.stderr, flush=True)
        return entry.key


def demo_registry(out: Path, registry: Any = None) -> Any:
    """The registry the demo pushes teacher masks to: ``registry`` if given, else ``<out>/registry``
    (its own folder: the default registry and the built-in zoo are never touched)."""
    from .registry import MaskRegistry

    if isinstance(registry, MaskRegistry):
        return registry
    return MaskRegistry(registry if registry is not None else Path(out) / "registry")


def run_demo(*, quick: bool = False, out: str | Path | None = None, registry: Any = None,
             fresh: bool = False, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the demo; returns the experiment summary plus ``seconds``, ``registry`` and ``keys``.

    ``argv``: the command line (without ``chipnet-zoo``) recorded in every run folder's ``config.json``;
    default: the ``demo`` command these arguments make.
    """
    if argv is None:
        argv = ["demo", *(["--quick"] if quick else []), *(["--out", str(out)] if out else []),
                *(["--registry", str(registry)] if isinstance(registry, (str, Path)) else []),
                *(["--fresh"] if fresh else [])]
    out = Path(out or ("chipnet-zoo-demo-quick" if quick else "chipnet-zoo-demo"))
    if fresh and out.exists():
        shutil.rmtree(out)
    cfg = demo_config(quick, out)
    reg = demo_registry(out, registry)
    p = PRESETS["quick" if quick else "full"]
    settings = (f"settings: {cfg.arch}; teacher {TEACHER} ({p['max_samples'][TEACHER]} training images), "
                f"student {STUDENT} ({p['max_samples'][STUDENT]} training images); epochs train/prune/finetune "
                f"{p['epochs']['train']}/{p['epochs']['prune']}/{p['epochs']['finetune']} (recipe 'cpu'); "
                f"budgets {', '.join(str(b) for b in cfg.budgets)}; seed 0; "
                f"methods {', '.join(METHODS)}; registry {reg.location}")
    print(f"chipnet-zoo demo{' --quick' if quick else ''}\n{settings}\nwrites: run folders, table and plot in "
          f"{out.resolve()}; teacher masks in the registry {reg.location}", file=sys.stderr, flush=True)
    log: list[str] = []
    start = time.perf_counter()
    summary = run_experiment(cfg, out=out, command=argv,
                             workspace=lambda c, o: DemoWorkspace(c, o, reg, log, command=argv))
    seconds = time.perf_counter() - start
    keys = [e.key for e in reg.list(arch=cfg.arch, dataset=TEACHER)]
    summary.update({"seconds": seconds, "registry": reg.location, "keys": keys, "settings": settings,
                    "registry_log": log})
    report = [summary["table"], settings, *log,
              f"registry {reg.location} holds: {', '.join(keys) or '(none)'}",
              f"plot: {', '.join(summary['plots'])}", f"table: {out / 'results.md'}",
              f"wall time: {seconds:.0f} s (cells already finished in {out} are not redone; --fresh to start over)"]
    print("\n".join(report))
    return summary
