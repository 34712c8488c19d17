"""The shared run folders of one experiment: a :class:`~.config.Cell` -> the runs it needs (reused)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..budget import Budget
from .config import Cell, ExperimentConfig, safe_name


class Workspace:
    """Shared run folders of one experiment (``<out>/runs``); every method reuses what exists."""

    #: where transfer cells look up a teacher mask given as a registry key (see :meth:`teacher_mask`)
    registry: Any = None

    def __init__(self, cfg: ExperimentConfig, out: str | os.PathLike, progress: bool = False,
                 command: list[str] | None = None, shared_runs: str | os.PathLike | None = None):
        """``shared_runs``: a folder for the dense and pruning runs instead of ``<out>/runs``, e.g. another
        experiment's ``runs`` made with the same recipe, split and train/prune epochs, whose finished runs are
        then reused. Runs missing there are made there, and unfinished ones resumed there (so that folder is
        written to); a run made there with other options raises :class:`~chipnet_zoo.errors.ResumeMismatchError`."""
        self.cfg, self.root, self.progress = cfg, Path(out) / "runs", progress
        self.shared = Path(shared_runs) if shared_runs is not None else self.root
        self.command = list(command or [])  # recorded in each new run folder's config.json

    def teacher_mask(self, teacher: str, budget: Budget, seed: int) -> Any:
        """The teacher's ChipNet mask for a transfer cell (a file; the demo overrides this to go through a
        registry and return a key)."""
        from ..runs.folder import MASK

        return self.prune(teacher, budget, seed) / MASK

    def request(self, kind: str, out: Path, dataset: str, seed: int, **kw: Any):
        """The :class:`~chipnet_zoo.runs.RunRequest` of a shared run: the config's arch, recipe, subset, split
        and epochs, resumed if it exists, waiting while another lane holds it."""
        from ..runs import RunRequest

        return RunRequest(kind, out=str(out), arch=self.cfg.arch, dataset=dataset, recipe=self.cfg.recipe,
                          max_samples=self.cfg.samples(dataset), train_samples=self.cfg.train_cap(dataset),
                          data_seed=self.cfg.data_seed, seed=seed,
                          epochs=(self.cfg.epochs or {}).get(kind), resume=True, progress=self.progress,
                          wait_for_lock=True, argv=self.command, **kw)

    def _run(self, kind: str, out: Path, dataset: str, seed: int, **kw: Any) -> dict[str, Any]:
        from ..runs import execute

        return execute(self.request(kind, out, dataset, seed, **kw))

    def data_tag(self, dataset: str) -> str:
        """``dataset`` in shared run names, with ``-n<N>`` under a ``train_samples`` cap (so a data-poor run
        never takes the name of a full one in a shared runs folder)."""
        cap = self.cfg.train_cap(dataset)
        return safe_name(dataset) + (f"-n{cap}" if cap is not None else "")

    def dense(self, dataset: str, seed: int) -> Path:
        """A finished dense ``train`` run on ``dataset`` (trained once per dataset and seed)."""
        out = self.shared / f"dense-{self.data_tag(dataset)}-s{seed}"
        self._run("train", out, dataset, seed)
        return out

    def prune(self, dataset: str, budget: Budget, seed: int) -> Path:
        """A finished ChipNet ``prune`` run from the dense model (once per dataset, budget and seed)."""
        dense = self.dense(dataset, seed)
        out = self.shared / f"prune-{self.data_tag(dataset)}-{budget.slug}-s{seed}"
        self._run("prune", out, dataset, seed, from_run=str(dense), budget=budget)
        return out

    def finetune(self, name: str, dataset: str, seed: int, mask: Path, weights: Path | None) -> dict[str, Any]:
        """A ``finetune`` run of ``mask`` from ``weights`` (``None``: from scratch) in ``<root>/<name>``."""
        return self._run("finetune", self.root / name, dataset, seed, mask=str(mask),
                         weights=str(weights) if weights else None)

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        """Run one cell (and whatever shared work it needs); returns the run's metrics."""
        from ..runs import Run
        from ..runs.folder import MASK, WEIGHTS

        budget = cell.budget
        s, student = cell.seed, cell.student
        tag = _cell_tag(student, budget, s)
        if cell.method == "dense":
            return Run(self.dense(student, s)).metrics() or {}
        if cell.method == "chipnet-direct":  # ChipNet's mask, fine-tuned from the dense student like every method
            prune = self.prune(student, budget, s)
            return self.finetune(f"direct-{tag}", student, s, prune / MASK, self.dense(student, s) / WEIGHTS)
        if cell.method in ("random", "l1", "slimming"):
            return self.finetune(f"{cell.method}-{tag}", student, s, self.baseline_mask(student, budget, cell.method, s),
                                 self.dense(student, s) / WEIGHTS)
        if cell.method == "random-scratch":  # transfer-scratch's control: the student's random mask, same schedule
            mask_file = self.baseline_mask(student, budget, "random", s)
            return self._transfer(mask_file, student, s, "scratch", self.root / f"random-scratch-{tag}")
        # transfer-scratch / transfer-finetune
        protocol = cell.method.split("-", 1)[1]
        return self._transfer(self.teacher_mask(cell.teacher, budget, s), student, s, protocol,
                              self.root / f"{cell.method}-{safe_name(cell.teacher)}-{tag}")

    def baseline_mask(self, student: str, budget: Budget, method: str, seed: int) -> Path:
        """The file of a baseline's mask (``random``, ``l1``, ``slimming``) of the dense student, made once in
        ``<out>/runs`` and shared by the cells that use it."""
        mask_file = self.root / f"{method}-{_cell_tag(student, budget, seed)}.mask.safetensors"
        if not mask_file.is_file():
            self._baseline_mask(self.dense(student, seed), budget, method, seed).save(mask_file)
        return mask_file

    def _transfer(self, mask: Any, student: str, seed: int, protocol: str, out: Path) -> dict[str, Any]:
        """``mask`` applied to ``student`` by :func:`~chipnet_zoo.mask_transfer.transfer`: fine-tuned from the dense
        student, or (``scratch``) trained from random init with the dense model's whole training schedule (the
        paper's protocol)."""
        from ..mask_transfer import StudentTraining, transfer
        from ..recipes import load_recipe, phase_config
        from ..runs.folder import WEIGHTS

        cfg = self.cfg
        dense = self.dense(student, seed) / WEIGHTS if protocol == "finetune" else None
        epochs, lr = (cfg.epochs or {}).get("finetune"), None
        if protocol == "scratch":
            train = phase_config(load_recipe(cfg.recipe), "train", epochs=(cfg.epochs or {}).get("train"))
            epochs, lr = train["epochs"], train["lr"]
        training = StudentTraining(recipe=cfg.recipe, epochs=epochs, lr=lr, seed=seed, data_seed=cfg.data_seed,
                                   max_samples=cfg.samples(student), train_samples=cfg.train_cap(student))
        return transfer(mask, student, protocol=protocol, arch=cfg.arch, training=training, registry=self.registry,
                        out=out, dense_weights=dense, progress=self.progress, argv=self.command)

    def _baseline_mask(self, dense_run: Path, budget: Budget, method: str, seed: int):
        from ..baselines import baseline_mask
        from ..runs import Run, load_run_model
        from ..runs.weights import example_input

        config = Run(dense_run).config()
        model = load_run_model(dense_run)
        return baseline_mask(model, budget, method, example_input=example_input(config), seed=seed,
                             dataset=config["dataset"]["name"], input_size=config["input_size"])


def _cell_tag(student: str, budget: Budget, seed: int) -> str:
    """``<student>-<budget slug>-s<seed>``: the end of the names of a cell's run folders and baseline masks."""
    return f"{safe_name(student)}-{budget.slug}-s{seed}"
