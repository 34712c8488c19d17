"""``chipnet-zoo experiment CONFIG.yaml``: teacher × student × budgets × methods × seeds, resumable.

Methods (DESIGN §7), all at the same budget through the same thresholding:

==================  =====================================================================================
``dense``           the dense student (one per student and seed; its accuracy is drawn at budget 1)
``chipnet-direct``  ChipNet pruning on the student's dense model, then fine-tuning (pipeline prune+finetune)
``transfer-scratch``  the teacher's ChipNet mask, re-thresholded on the student, trained from scratch
``transfer-finetune`` the same mask on the dense student, fine-tuned
``random``/``l1``/``slimming``  baseline scores on the dense student, then fine-tuning
==================  =====================================================================================

Work is shared: one dense model per (dataset, seed), one ChipNet pruning per (dataset, budget, seed),
reused by every cell that needs it. Every run is an ordinary run folder under ``<out>/runs/``; a finished
cell is appended to ``<out>/results.jsonl`` and skipped when the experiment is run again (interrupted
runs resume from their checkpoints). Outputs: ``results.json``, ``results.csv``, ``results.md`` (mean ±
std over seeds) and ``plot-<student>.png`` (accuracy vs budget, log-x, one line per method).

Config (YAML)::

    name: offline
    arch: resnet8
    teachers: [animal-mnist]
    students: [mnist5k]
    budget_type: flops
    budgets: [0.25, 0.125, 0.0625, 0.03125]
    methods: [dense, chipnet-direct, transfer-scratch, transfer-finetune, random, l1, slimming]
    seeds: [0, 1, 2]
    recipe: cpu                  # shipped recipe name or a YAML file (relative to the config)
    epochs: {train: 15, prune: 8, finetune: 10}   # optional overrides of the recipe
    max_samples: null            # or a number, or {dataset: number}
    data_seed: 0                 # the data split (the same for every seed and method)
    out: experiments/offline     # relative to the current directory
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .budget import Budget
from .errors import RunError

METHODS = ("dense", "chipnet-direct", "transfer-scratch", "transfer-finetune", "random", "l1", "slimming")
#: Methods whose result does not depend on the teacher.
STUDENT_ONLY = ("dense", "chipnet-direct", "random", "l1", "slimming")
RESULTS, RESULTS_JSON, RESULTS_CSV, RESULTS_MD = "results.jsonl", "results.json", "results.csv", "results.md"
CSV_FIELDS = ("teacher", "student", "arch", "method", "budget_type", "budget", "seed", "test_accuracy",
              "val_accuracy", "flops", "params_ratio", "channels", "volume", "params", "macs", "seconds", "run_dir")


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
    data_seed: int = 0
    out: str = "experiments/default"

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExperimentConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            shipped = Path(__file__).parent / "experiments" / f"{path}.yaml"
            if not shipped.is_file():
                raise RunError(f"experiment config not found: {path} (shipped: {', '.join(list_configs())})")
            path = shipped
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise RunError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise RunError(f"{path}: an experiment config is a mapping")
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
        cfg.budgets = [parse_budget(b, cfg.budget_type) for b in cfg.budgets]
        cfg.seeds = [int(s) for s in cfg.seeds]
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
        if isinstance(self.max_samples, dict):
            value = self.max_samples.get(dataset)
            return None if value is None else int(value)
        return None if self.max_samples is None else int(self.max_samples)


def list_configs() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "experiments").glob("*.yaml"))


def parse_budget(value: Any, default_kind: str) -> Budget:
    """A grid budget: ``"kind:value"`` or a number (of ``default_kind``, the config's ``budget_type``)."""
    if isinstance(value, Budget):
        return value
    if isinstance(value, str) and ":" in value:
        return Budget.parse(value)
    return Budget(default_kind, float(value))


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


def grid(cfg: ExperimentConfig) -> list[Cell]:
    """Every cell of the grid, each once (student-only methods once per student, dense at budget 1)."""
    cells: dict[str, Cell] = {}
    # seed-major, then method (in config order), so a partial run has complete methods for the first seeds
    for seed in cfg.seeds:
        for method in cfg.methods:
            for student in cfg.students:
                if method == "dense":
                    cell = Cell("-", student, method, Budget(cfg.budget_type, 1.0), seed)
                    cells.setdefault(cell.id, cell)
                    continue
                for budget in cfg.budgets:
                    for teacher in (cfg.teachers if method.startswith("transfer") else ["-"]):
                        if teacher == student:
                            continue
                        cell = Cell(teacher, student, method, budget, seed)
                        cells.setdefault(cell.id, cell)
    return list(cells.values())


def lane_of(cfg: ExperimentConfig, cell: Cell, lanes: int) -> int:
    """The lane of a cell when the grid is split into ``lanes``: its (student, seed) pair's position, mod lanes."""
    pairs = [(student, seed) for seed in cfg.seeds for student in cfg.students]
    return pairs.index((cell.student, cell.seed)) % lanes


def _safe(name: str) -> str:
    return Path(str(name)).name.replace("/", "_") or "data"


class Workspace:
    """Shared run folders of one experiment (``<out>/runs``); every method reuses what exists."""

    #: where transfer cells look up a teacher mask given as a registry key (see :meth:`teacher_mask`)
    registry: Any = None

    def __init__(self, cfg: ExperimentConfig, out: str | os.PathLike, progress: bool = False):
        self.cfg, self.root, self.progress = cfg, Path(out) / "runs", progress

    def teacher_mask(self, teacher: str, budget: Budget, seed: int) -> Any:
        """The teacher's ChipNet mask for a transfer cell (a file; the demo overrides this to go through a
        registry and return a key)."""
        from .runs import MASK

        return self.prune(teacher, budget, seed) / MASK

    def _settings(self, kind: str, out: Path, dataset: str, seed: int, **kw: Any):
        from .pipeline import RunSettings

        return RunSettings(kind, out=str(out), arch=self.cfg.arch, dataset=dataset, recipe=self.cfg.recipe,
                           max_samples=self.cfg.samples(dataset), data_seed=self.cfg.data_seed, seed=seed,
                           epochs=(self.cfg.epochs or {}).get("finetune" if kind == "finetune" else kind),
                           resume=True, progress=self.progress, wait_for_lock=True, **kw)

    def dense(self, dataset: str, seed: int) -> Path:
        """A finished dense ``train`` run on ``dataset`` (trained once per dataset and seed)."""
        from .pipeline import execute

        out = self.root / f"dense-{_safe(dataset)}-s{seed}"
        execute(self._settings("train", out, dataset, seed))
        return out

    def prune(self, dataset: str, budget: Budget, seed: int) -> Path:
        """A finished ChipNet ``prune`` run from the dense model (once per dataset, budget and seed)."""
        from .pipeline import execute

        dense = self.dense(dataset, seed)
        out = self.root / f"prune-{_safe(dataset)}-{budget.slug}-s{seed}"
        execute(self._settings("prune", out, dataset, seed, from_run=str(dense), budget=str(budget)))
        return out

    def finetune(self, name: str, dataset: str, seed: int, mask: Path, weights: Path | None) -> dict[str, Any]:
        from .pipeline import execute

        out = self.root / name
        return execute(self._settings("finetune", out, dataset, seed, mask=str(mask),
                                      weights=str(weights) if weights else None))

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        """Run one cell (and whatever shared work it needs); returns the run's metrics."""
        from .runs import MASK, WEIGHTS, Run

        cfg = self.cfg
        budget = cell.budget
        s, student = cell.seed, cell.student
        tag = f"{_safe(student)}-{budget.slug}-s{s}"
        if cell.method == "dense":
            return Run(self.dense(student, s)).metrics() or {}
        if cell.method == "chipnet-direct":  # ChipNet's mask, fine-tuned from the dense student like every method
            prune = self.prune(student, budget, s)
            return self.finetune(f"direct-{tag}", student, s, prune / MASK, self.dense(student, s) / WEIGHTS)
        if cell.method in ("random", "l1", "slimming"):
            dense = self.dense(student, s)
            mask_file = self.root / f"{cell.method}-{tag}.mask.safetensors"
            if not mask_file.is_file():
                self._baseline_mask(dense, budget, cell.method, s).save(mask_file)
            return self.finetune(f"{cell.method}-{tag}", student, s, mask_file, dense / WEIGHTS)
        # transfer-scratch / transfer-finetune
        from .mask_transfer import transfer
        from .training import load_recipe, phase_config

        protocol = cell.method.split("-", 1)[1]
        teacher_mask = self.teacher_mask(cell.teacher, budget, s)
        dense = self.dense(student, s) / WEIGHTS if protocol == "finetune" else None
        # scratch: the slim student gets the dense model's whole training schedule (the paper's protocol)
        epochs, lr = (cfg.epochs or {}).get("finetune"), None
        if protocol == "scratch":
            train = phase_config(load_recipe(cfg.recipe), "train", epochs=(cfg.epochs or {}).get("train"))
            epochs, lr = train["epochs"], train["lr"]
        return transfer(teacher_mask, student, protocol, arch=cfg.arch, recipe=cfg.recipe, registry=self.registry,
                        epochs=epochs, lr=lr, seed=s, data_seed=cfg.data_seed,
                        max_samples=cfg.samples(student), out=self.root / f"{cell.method}-{_safe(cell.teacher)}-{tag}",
                        dense_weights=dense, progress=self.progress)

    def _baseline_mask(self, dense_run: Path, budget: Budget, method: str, seed: int):
        from .baselines import baseline_mask
        from .runs import Run, example_input, load_run_model

        config = Run(dense_run).config()
        model = load_run_model(dense_run)
        return baseline_mask(model, budget, method, example_input=example_input(config), seed=seed,
                             dataset=config["dataset"]["name"], input_size=config["input_size"])


# --- results -------------------------------------------------------------------------------------
def read_results(out: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(out) / RESULTS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that cell is simply redone
    return rows


def _record(cell: Cell, cfg: ExperimentConfig, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    ratios = metrics.get("ratios") or {}
    return {"cell": cell.id, "teacher": cell.teacher, "student": cell.student, "arch": cfg.arch,
            "method": cell.method, "budget_type": cell.budget.kind, "budget": cell.budget.value, "seed": cell.seed,
            "test_accuracy": metrics.get("test_accuracy"), "val_accuracy": metrics.get("val_accuracy"),
            "ratios": ratios, "params": metrics.get("params"), "macs": metrics.get("macs"),
            "seconds": round(seconds, 2), "run_dir": metrics.get("run_dir"), "finished": time.time()}


def run_experiment(config: ExperimentConfig | str | os.PathLike, *, out: str | os.PathLike | None = None,
                   max_cells: int | None = None, progress: bool = False,
                   on_cell: Callable[[Cell], None] | None = None,
                   workspace: Callable[[ExperimentConfig, Path], Workspace] | None = None,
                   lane: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run (or resume) the grid; returns ``{"rows", "done", "total", "out", "table"}``.

    ``max_cells`` stops after that many *new* cells (the rest are run next time). ``on_cell`` is called
    before each new cell (tests use it to interrupt a run). ``lane=(k, n)`` runs only the cells of every
    n-th (student, seed) pair from the k-th: n processes on one ``out`` share the grid (run folders are
    locked, so a lane that needs a shared run another lane is making waits for it).
    """
    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.load(config)
    out = Path(out or cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    ws = workspace(cfg, out) if workspace is not None else Workspace(cfg, out, progress)
    cells = grid(cfg)
    done = {r["cell"] for r in read_results(out)} & {c.id for c in cells}  # rows of other grids don't count
    todo = [c for c in cells if c.id not in done and (lane is None or lane_of(cfg, c, lane[1]) == lane[0])]
    print(f"experiment {cfg.name}: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run "
          f"-> {out}", file=sys.stderr, flush=True)
    new = 0
    for i, cell in enumerate(todo):
        if max_cells is not None and new >= max_cells:
            print(f"stopping after {new} new cells (max_cells); run again to continue", file=sys.stderr)
            break
        if on_cell is not None:
            on_cell(cell)
        print(f"[{len(done) + i + 1}/{len(cells)}] {cell.id}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        metrics = ws.run_cell(cell)
        record = _record(cell, cfg, metrics, time.perf_counter() - start)
        with open(out / RESULTS, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        new += 1
    return write_reports(out, cfg, total=len(cells))


def write_reports(out: str | os.PathLike, cfg: ExperimentConfig, total: int | None = None) -> dict[str, Any]:
    """Write ``results.json``/``.csv``/``.md`` and a plot per student from ``results.jsonl``."""
    out = Path(out)
    rows = read_results(out)
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        latest[r["cell"]] = r
    rows = list(latest.values())
    (out / RESULTS_JSON).write_text(json.dumps(rows, indent=1))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        ratios = r.get("ratios") or {}
        writer.writerow({**r, "flops": ratios.get("flops"), "params_ratio": ratios.get("params"),
                         "channels": ratios.get("channels"), "volume": ratios.get("volume")})
    (out / RESULTS_CSV).write_text(buf.getvalue())
    total = total if total is not None else len(grid(cfg))
    table = markdown_table(rows, cfg, total)
    (out / RESULTS_MD).write_text(table)
    plots = [plot_student(rows, cfg, student, out / f"plot-{_safe(student)}.png") for student in cfg.students]
    return {"rows": rows, "done": len(rows), "total": total, "out": str(out), "table": table,
            "plots": [str(p) for p in plots if p]}


def _label(teacher: str, method: str) -> str:
    return f"{method} ({teacher})" if method.startswith("transfer") else method


def _row_budget(row: dict[str, Any]) -> Budget:
    return Budget(row.get("budget_type") or "flops", float(row["budget"]))


def _accuracies(rows: list[dict[str, Any]], student: str) -> dict[tuple[str, Budget], dict[int, float]]:
    """``{(method label, budget): {seed: test accuracy}}`` of one student."""
    out: dict[tuple[str, Budget], dict[int, float]] = {}
    for r in rows:
        if r["student"] == student and r.get("test_accuracy") is not None:
            out.setdefault((_label(r["teacher"], r["method"]), _row_budget(r)), {})[int(r["seed"])] = float(
                r["test_accuracy"])
    return out


def _budget_order(budgets: set[Budget]) -> list[Budget]:
    kinds = ("flops", "params", "volume", "channels")
    return sorted((b for b in budgets if b.value < 1.0), key=lambda b: (kinds.index(b.kind), -b.value))


def _fmt(accs: list[float]) -> str:
    mean = statistics.fmean(accs) * 100
    std = statistics.stdev(accs) * 100 if len(accs) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f} (n={len(accs)})"


#: Two-sided 95 % quantiles of Student's t for 1 … 30 degrees of freedom (then the normal's 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def paired_interval(differences: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95 % t-interval ``(mean, low, high)`` (``nan`` bounds for n < 2).

    Example:
        >>> paired_interval([0.02, 0.04, 0.03])
        (0.03, 0.00515..., 0.05484...)
    """
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return mean, float("nan"), float("nan")
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * statistics.stdev(differences) / n ** 0.5
    return mean, mean - half, mean + half


def _fmt_paired(differences: list[float]) -> str:
    mean, low, high = paired_interval(differences)
    if len(differences) < 2:
        return f"{100 * mean:+.1f} (n=1)"
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] (n={len(differences)})"


BASELINE_METHODS = ("random", "l1", "slimming")


def paired_comparisons(rows: list[dict[str, Any]], student: str) -> list[dict[str, Any]]:
    """Per budget and pruning method: the paired difference (same seed, hence the same dense model) to the
    best baseline at that budget (the baseline with the highest mean) and to ``random``."""
    accs = _accuracies(rows, student)
    out = []
    for budget in _budget_order({b for _, b in accs}):
        base = {m: accs[(m, budget)] for m in BASELINE_METHODS if (m, budget) in accs}
        best = max(base, key=lambda m: statistics.fmean(base[m].values())) if base else None
        for (label, b), per_seed in sorted(accs.items(), key=lambda item: item[0][0]):
            if b != budget or label in BASELINE_METHODS or label == "dense":
                continue
            row: dict[str, Any] = {"method": label, "budget": str(budget), "best_baseline": best}
            for name, ref in (("best", best), ("random", "random" if "random" in base else None)):
                seeds = sorted(set(per_seed) & set(base[ref])) if ref else []
                row[f"vs_{name}"] = [per_seed[s] - base[ref][s] for s in seeds]
            out.append(row)
    return out


def markdown_table(rows: list[dict[str, Any]], cfg: ExperimentConfig, total: int) -> str:
    """Per student: test accuracy (%) mean ± std over seeds (a row per method, a column per budget), then
    the paired differences to the best baseline and to random with 95 % intervals."""
    partial = len(rows) < total
    kinds = sorted({b.kind for b in cfg.budgets})
    lines = [f"# Experiment `{cfg.name}`: {cfg.arch}, {', '.join(kinds)} budgets", ""]
    if partial:
        lines += [f"**PARTIAL RESULTS: {len(rows)} of {total} cells finished.**", ""]
    order = {m: i for i, m in enumerate(METHODS)}
    for student in cfg.students:
        accs = _accuracies(rows, student)
        labels = sorted({lab for lab, _ in accs}, key=lambda lab: (order.get(lab.split(" ")[0], 99), lab))
        budgets = _budget_order({b for _, b in accs})
        lines += [f"## Student `{student}` (test accuracy %, mean ± std over seeds)", ""]
        lines.append("| method | " + " | ".join(f"{b.kind} {format(b.value, 'g')}" for b in budgets) + " |")
        lines.append("|---|" + "---|" * len(budgets))
        for lab in labels:
            if lab == "dense":
                dense = [v for (m, _), per_seed in accs.items() if m == "dense" for v in per_seed.values()]
                cells = [_fmt(dense) if dense else "-"] * len(budgets)
            else:
                cells = [_fmt(list(accs[(lab, b)].values())) if (lab, b) in accs else "-" for b in budgets]
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
        lines.append("")
        paired = paired_comparisons(rows, student)
        if paired:
            lines += [f"### Student `{student}`: paired differences (points; mean [95 % t-interval] over seeds)", "",
                      "| budget | method | best baseline | − best baseline | − random |", "|---|---|---|---|---|"]
            for p in paired:
                lines.append(f"| {p['budget']} | {p['method']} | {p['best_baseline'] or '-'} | "
                             f"{_fmt_paired(p['vs_best']) if p['vs_best'] else '-'} | "
                             f"{_fmt_paired(p['vs_random']) if p['vs_random'] else '-'} |")
            lines.append("")
    return "\n".join(lines)


def plot_student(rows: list[dict[str, Any]], cfg: ExperimentConfig, student: str, path: Path) -> Path | None:
    """Accuracy vs budget (log-x), one panel per budget kind, one line per method, error bars = std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    accs = _accuracies(rows, student)
    if not accs:
        return None
    budgets = _budget_order({b for _, b in accs})
    kinds = list(dict.fromkeys(b.kind for b in budgets)) or [cfg.budget_type]
    dense = [v for (m, _), per_seed in accs.items() if m == "dense" for v in per_seed.values()]
    fig = Figure(figsize=(5.5 * len(kinds), 4.5))
    FigureCanvasAgg(fig)
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        if dense:
            mean = statistics.fmean(dense) * 100
            ax.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"dense ({mean:.1f}%)")
        for label in sorted({lab for lab, _ in accs if lab != "dense"}):
            pts = sorted((b.value, list(v.values())) for (lab, b), v in accs.items() if lab == label and b.kind == kind)
            if not pts:
                continue
            ax.errorbar([x for x, _ in pts], [statistics.fmean(a) * 100 for _, a in pts],
                        yerr=[statistics.stdev(a) * 100 if len(a) > 1 else 0.0 for _, a in pts],
                        marker="o", capsize=3, label=label)
        xs = [b.value for b in budgets if b.kind == kind]
        ax.set_xscale("log", base=2)
        if xs:
            ax.set_xticks(xs)
            ax.set_xticklabels([format(x, "g") for x in xs])
        ax.set_xlabel(f"{kind} budget (fraction of the dense model, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{cfg.arch} on {student}, {kind}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# --- the zoo ---------------------------------------------------------------------------------------
def export_zoo(out: str | os.PathLike, zoo: str | os.PathLike, *, seed: int = 0,
               cards: str | os.PathLike | None = None, command: str | None = None) -> list[Any]:
    """Publish an experiment's ChipNet masks into a registry folder (the shipped zoo is one).

    For every finished ``chipnet-direct`` cell of ``seed``: the fine-tuned run's mask with its slimmed,
    fine-tuned weights (``pull_model`` gives the runnable pruned model). For every ``dense`` cell: an
    entry at budget 1 (all channels kept, ``method=dense``) holding the dense weights the masks were
    learned from. ``cards``: a recipe card per entry (``<cards>/<key with / as __>.md``).
    """
    import torch

    from .cost import CostModel
    from .groups import build_channel_graph
    from .mask import Mask
    from .registry import MaskRegistry
    from .runs import MASK, WEIGHTS, Run, example_input, load_run_model

    out = Path(out)
    reg = MaskRegistry(zoo) if Path(zoo).is_dir() else _new_registry(Path(zoo))
    cfg = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else {}
    entries = []
    rows = read_results(out)
    for row in rows:
        if row["seed"] != seed or row["method"] not in ("chipnet-direct", "dense"):
            continue
        run = Run(row["run_dir"])
        config, metrics = run.config(), run.metrics() or {}
        acc = {"val_accuracy": metrics.get("val_accuracy"), "test_accuracy": metrics.get("test_accuracy"),
               **_over_seeds(rows, row)}
        if row["method"] == "dense":
            model = load_run_model(run.path)
            x = example_input(config)
            graph = build_channel_graph(model, x)
            keep = torch.ones(graph.num_channels, dtype=torch.bool)
            mask = Mask.from_vectors(graph, keep, torch.ones(graph.num_channels), arch=config["arch"],
                                     dataset=config["dataset"]["name"], num_classes=config["num_classes"],
                                     budget_type=cfg.get("budget_type", "flops"), budget=1.0,
                                     ratios=CostModel(graph).hard_ratios(keep), method="dense", metrics=acc,
                                     hparams={"seed": seed})
            entry = reg.push(mask, weights=run.file(WEIGHTS), weights_as="slim", overwrite=True)
        else:
            mask = Mask.load(run.file(MASK))
            entry = reg.push(mask, weights=run.file(WEIGHTS), weights_as="slim", metrics=acc, overwrite=True)
        entries.append(entry)
        if cards is not None:
            write_recipe_card(Path(cards), entry, row, run, out, cfg, command)
    return entries


def _seeds_line(metrics: dict[str, Any]) -> str:
    per_seed = metrics.get("test_accuracy_seeds") or {}
    if not per_seed:
        return "- test accuracy over seeds: not recorded"
    return (f"- test accuracy over {len(per_seed)} seeds: mean {metrics['test_accuracy_mean']:.4f}, std "
            f"{metrics['test_accuracy_std']:.4f}; per seed " + ", ".join(f"{k}: {v:.4f}" for k, v in per_seed.items()))


def _over_seeds(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    """The test accuracy of ``row``'s cell over every seed that finished it: mean, std and per seed."""
    same = {int(r["seed"]): float(r["test_accuracy"]) for r in rows
            if (r["teacher"], r["student"], r["method"], r.get("budget_type"), r["budget"])
            == (row["teacher"], row["student"], row["method"], row.get("budget_type"), row["budget"])
            and r.get("test_accuracy") is not None}
    values = [same[s] for s in sorted(same)]
    return {"test_accuracy_seeds": {str(s): same[s] for s in sorted(same)},
            "test_accuracy_mean": statistics.fmean(values) if values else None,
            "test_accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _new_registry(path: Path):
    from .registry import MaskRegistry

    path.mkdir(parents=True, exist_ok=True)
    return MaskRegistry(path)


def write_recipe_card(cards: Path, entry: Any, row: dict[str, Any], run: Any, out: Path,
                      cfg: dict[str, Any], command: str | None) -> Path:
    """``cards/<key>.md``: exactly how a zoo entry was produced."""
    config = run.config()
    chain = []
    current = config
    while current:  # finetune <- prune <- train, through the runs' "source" records
        phase = (current.get("recipe") or {}).get("phase") or {}
        chain.append(f"- `{current.get('kind')}`: recipe `{(current.get('recipe') or {}).get('name')}`, "
                     f"{phase.get('epochs')} epochs, {phase.get('optimizer')} lr {phase.get('lr')}, batch "
                     f"{phase.get('batch_size')}, seed {current.get('seed')}"
                     + (f", budget {current.get('budget')}" if current.get("budget") else ""))
        src = (current.get("source") or {}).get("run")
        if not src and current.get("weights_file"):  # a run started from another run's weights file
            src = str(Path(current["weights_file"]).parent)
        current = json.loads((Path(src) / "config.json").read_text()) if src and (Path(src) / "config.json").is_file() else None
    split = (config.get("dataset") or {}).get("split_info") or {}
    ratios = ", ".join(f"{k} {v:.4f}" for k, v in entry.ratios.items())
    lines = [
        f"# Recipe card: `{entry.key}`", "",
        f"- architecture: `{entry.arch}`; dataset: `{entry.dataset}` ({config.get('num_classes')} classes, input "
        f"{config.get('input_size')}); method: `{entry.method}`",
        f"- achieved ratios: {ratios}",
        f"- test accuracy {row.get('test_accuracy'):.4f}, val accuracy {row.get('val_accuracy'):.4f} "
        f"(params {row.get('params')}, MACs {row.get('macs')}); these weights are seed {row.get('seed')}'s",
        _seeds_line(entry.metrics),
        f"- weights: {entry.weights['kind'] if entry.weights else 'none'} "
        "(`MaskRegistry.builtin().pull_model(key)` returns the runnable model)",
        f"- data: `load_data({json.dumps((config.get('dataset') or {}).get('load_kwargs'))})`, split sizes "
        f"{split.get('sizes') or {k: split.get(k) for k in ('train', 'val', 'test') if k in split}}",
        "", "## How it was produced", "",
        f"Experiment `{cfg.get('name')}` (`{command or 'chipnet-zoo experiment offline'}`), cell `{row['cell']}`, "
        f"run folder `{Path(row['run_dir']).name}`. Phases (newest first):", "", *chain, "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in (config.get("versions") or {}).items()), "",
    ]
    cards.mkdir(parents=True, exist_ok=True)
    path = cards / (entry.key.replace("/", "__") + ".md")
    path.write_text("\n".join(lines))
    return path
