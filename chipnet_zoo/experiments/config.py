"""Experiment configs: the YAML (or a shipped name) -> :class:`ExperimentConfig` -> the grid of :class:`Cell`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import Budget
from ..errors import RunError
from ..recipes import read_yaml_mapping

SHIPPED = Path(__file__).parent  # the shipped configs live next to this module
METHODS = ("dense", "chipnet-direct", "transfer-scratch", "transfer-finetune", "random", "l1", "slimming",
           "random-scratch")


@dataclass
class ExperimentConfig:
    """A parsed experiment config (see the module docstring)."""

    name: str
    arch: str
    teachers: list[str]
    students: list[str]
    budgets: list[Budget]
    methods: list[str]
    seeds: list[int]
    budget_type: str = "flops"
    recipe: str = "cpu"
    epochs: dict[str, int] = field(default_factory=dict)
    max_samples: Any = None
    #: a cap on the training split alone, val and test kept whole: a number, or ``{dataset: number}`` (a
    #: data-poor student measured on the same test set as the full one)
    train_samples: Any = None
    data_seed: int = 0
    out: str = "experiments/default"
    #: seeds added, once every cell of ``seeds`` has finished, wherever a (student, budget) has a method whose
    #: test accuracy varies over ``seeds`` by a standard deviation above ``extra_seeds_above_std`` (a fraction:
    #: 0.03 = 3 points); those (student, budget) pairs then get every method on the extra seeds
    extra_seeds: list[int] = field(default_factory=list)
    extra_seeds_above_std: float = 0.03

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExperimentConfig:

        path = Path(path)
        if not path.is_file():
            shipped = SHIPPED / f"{path}.yaml"
            if not shipped.is_file():
                raise RunError(f"experiment config not found: {path} (shipped: {', '.join(list_configs())})")
            path = shipped
        raw = read_yaml_mapping(path, f"{path}: an experiment config is a mapping")
        recipe = str(raw.get("recipe", "cpu"))
        if (path.parent / recipe).is_file():
            raw["recipe"] = str((path.parent / recipe).resolve())
        return cls.from_dict({"name": path.stem, **raw})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise RunError(f"experiment config: unknown keys {sorted(unknown)}; known: {', '.join(sorted(known))}")
        missing = [k for k in ("arch", "students", "budgets", "methods", "seeds") if k not in raw]
        if missing:
            raise RunError(f"experiment config: missing {', '.join(missing)}")
        cfg = cls(**{"name": "experiment", "teachers": [], **raw})
        cfg.teachers, cfg.students = [str(t) for t in cfg.teachers], [str(s) for s in cfg.students]
        bad = [m for m in cfg.methods if m not in METHODS]
        if bad:
            raise RunError(f"unknown methods {bad}; expected some of {', '.join(METHODS)}")
        if any(m.startswith("transfer") for m in cfg.methods) and not cfg.teachers:
            raise RunError("transfer methods need teachers: [...]")
        cfg.budget_type = Budget(cfg.budget_type, 0.5).kind
        cfg.budgets = [Budget.parse(b, default_kind=cfg.budget_type) for b in cfg.budgets]
        if any(b.kind == "latency" for b in cfg.budgets):
            # every method of a cell must meet one budget against one table; the grid's runs would each measure
            # their own (on their own device and batch), so latency budgets are refused here for now
            raise RunError("experiment configs take channels, volume, params and flops budgets; latency budgets "
                           "are measured per machine (docs/latency.md) and not supported in the grid")
        cfg.seeds = [int(s) for s in cfg.seeds]
        cfg.extra_seeds = [int(s) for s in cfg.extra_seeds or []]
        if set(cfg.extra_seeds) & set(cfg.seeds):
            raise RunError(f"extra_seeds {cfg.extra_seeds} overlap seeds {cfg.seeds}")
        if cfg.extra_seeds and len(cfg.seeds) < 2:
            raise RunError("extra_seeds need at least 2 seeds to measure the spread over")
        cfg.extra_seeds_above_std = float(cfg.extra_seeds_above_std)
        unknown_phases = set(cfg.epochs or {}) - {"train", "prune", "finetune"}
        if unknown_phases:
            raise RunError(f"epochs: unknown phases {sorted(unknown_phases)} (train, prune, finetune)")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values (budgets as ``"kind:value"``)."""
        raw = {k: getattr(self, k) for k in self.__dataclass_fields__}
        raw["budgets"] = [str(b) for b in self.budgets]
        return raw

    def samples(self, dataset: str) -> int | None:
        """``max_samples`` for ``dataset`` (train capped, val/test shrunk in proportion)."""
        return _per_dataset(self.max_samples, dataset)

    def train_cap(self, dataset: str) -> int | None:
        """``train_samples`` for ``dataset`` (train capped, val/test whole)."""
        return _per_dataset(self.train_samples, dataset)


def _per_dataset(value: Any, dataset: str) -> int | None:
    """A config value given as one number for every dataset or as ``{dataset: number}``."""
    if isinstance(value, dict):
        value = value.get(dataset)
    return None if value is None else int(value)


def list_configs() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


@dataclass(frozen=True)
class Cell:
    """One result: a method at a budget on a student, for a seed (``teacher`` is ``-`` where it plays no part;
    ``dense`` is at budget 1)."""

    teacher: str
    student: str
    method: str
    budget: Budget
    seed: int

    @property
    def id(self) -> str:
        return f"{self.teacher}>{self.student}|{self.method}|{self.budget}|s{self.seed}"


def grid(cfg: ExperimentConfig, *, seeds: list[int] | None = None,
         where: set[tuple[str, Budget]] | None = None) -> list[Cell]:
    """Every cell of the grid, each once (student-only methods once per student, dense at budget 1).

    ``seeds`` replaces the config's seeds; ``where`` keeps only these (student, budget) pairs (and the dense
    cells of their students)."""
    cells: dict[str, Cell] = {}
    # seed-major, then method (in config order), so a partial run has complete methods for the first seeds
    for seed in cfg.seeds if seeds is None else seeds:
        for method in cfg.methods:
            for student in cfg.students:
                if where is not None and not any(s == student for s, _ in where):
                    continue
                if method == "dense":
                    cell = Cell("-", student, method, Budget(cfg.budget_type, 1.0), seed)
                    cells.setdefault(cell.id, cell)
                    continue
                for budget in cfg.budgets:
                    if where is not None and (student, budget) not in where:
                        continue
                    for teacher in (cfg.teachers if method.startswith("transfer") else ["-"]):
                        if teacher == student:
                            continue
                        cell = Cell(teacher, student, method, budget, seed)
                        cells.setdefault(cell.id, cell)
    return list(cells.values())


def noisy_pairs(cfg: ExperimentConfig, rows: list[dict[str, Any]]) -> set[tuple[str, Budget]]:
    """The (student, budget) pairs where some method's test accuracy over the config's ``seeds`` has a
    standard deviation above ``extra_seeds_above_std`` (only methods finished on every one of those seeds)."""
    import statistics

    if len(cfg.seeds) < 2:
        return set()
    per: dict[tuple[str, str, str, Budget], dict[int, float]] = {}
    for r in rows:
        if r.get("test_accuracy") is None or r["method"] == "dense" or int(r["seed"]) not in cfg.seeds:
            continue
        budget = Budget(r.get("budget_type") or cfg.budget_type, float(r["budget"]))
        per.setdefault((r["student"], r["teacher"], r["method"], budget), {})[int(r["seed"])] = float(r["test_accuracy"])
    return {(student, budget) for (student, _, _, budget), accs in per.items()
            if len(accs) == len(cfg.seeds) and statistics.stdev(accs.values()) > cfg.extra_seeds_above_std}


def extra_cells(cfg: ExperimentConfig, rows: list[dict[str, Any]]) -> list[Cell]:
    """The cells of ``extra_seeds`` for the :func:`noisy_pairs` (every method there, and the dense models)."""
    if not cfg.extra_seeds:
        return []
    where = noisy_pairs(cfg, rows)
    return grid(cfg, seeds=cfg.extra_seeds, where=where) if where else []


def lane_of(cfg: ExperimentConfig, cell: Cell, lanes: int) -> int:
    """The lane of a cell when the grid is split into ``lanes``: (student position + seed position) mod lanes,
    so the students of a seed run side by side (they share their teacher runs) and each lane gets every
    student in turn (students whose cells cost more do not all land on one lane); a cell of an extra seed
    goes by that seed's position."""
    if cell.seed in cfg.extra_seeds:
        return cfg.extra_seeds.index(cell.seed) % lanes
    return (cfg.students.index(cell.student) + cfg.seeds.index(cell.seed)) % lanes


def safe_name(name: str) -> str:
    """A dataset name as one path component (``org/data`` -> ``data``)."""
    return Path(str(name)).name.replace("/", "_") or "data"
