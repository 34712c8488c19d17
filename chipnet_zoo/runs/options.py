"""What a run is asked to do (:class:`RunRequest`, the CLI's options) and what it resolves to
(:class:`RunOptions`, typed, written to ``config.json`` as ``resolved`` and read back on ``--resume``).

    >>> from chipnet_zoo.budget import Budget
    >>> request = RunRequest("prune", from_run="runs/dense", budget=Budget.parse("flops:0.25"))
    >>> options = resolve(request)                                   # doctest: +SKIP
    >>> options.budget, options.phase["epochs"]                       # doctest: +SKIP
    (Budget(kind='flops', value=0.25), 20)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import Budget
from ..errors import ResumeMismatchError, RunError
from .folder import MASK, PRUNED_WEIGHTS, WEIGHTS, Run, default_run_dir, open_source_run

PHASE_KINDS = ("train", "prune", "finetune")
#: The run a ``--from`` of each kind chains from.
_SOURCE_KINDS = {"prune": ("train",), "finetune": ("prune",), "train": ("train",)}


@dataclass
class RunRequest:
    """What one run is asked to do (the CLI's options); ``None`` = take it from ``from_run`` / the recipe.
    ``budget`` is parsed here, at the edge (a ``"kind:value"`` string becomes a :class:`Budget`), and passed
    on as that object."""

    kind: str
    out: str | None = None
    from_run: str | None = None
    arch: str | None = None
    dataset: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    max_samples: int | None = None
    train_samples: int | None = None  # caps the training split alone (val/test whole); see load_data
    data_seed: int | None = None
    image_size: int | None = None
    budget: Budget | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    recipe: str | None = None
    weights: str | None = None
    mask: str | None = None
    resume: bool = False
    device: str = "auto"
    workers: int = 0
    progress: bool = True
    latency_repeats: int = 10
    round_to: int | str | None = None  # prune: channel counts in multiples of this, or 'auto' (overrides the recipe)
    wait_for_lock: bool = False  # another process on the same run folder: wait (True) or fail (False)
    argv: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.budget is not None:
            self.budget = Budget.parse(self.budget)


@dataclass(frozen=True)
class RunOptions:
    """The full, reproducible configuration of a run (``config.json``'s ``resolved``; its JSON form is
    :meth:`to_dict`, stable across versions so old run folders resume)."""

    kind: str
    arch: str
    budget: Budget | None
    seed: int
    data_kwargs: dict[str, Any]
    recipe_name: str | None
    recipe_source: str
    phase: dict[str, Any]
    weights_file: str | None = None
    mask_file: str | None = None
    source: dict[str, Any] | None = None
    workers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "arch": self.arch, "budget": str(self.budget) if self.budget else None,
                "seed": self.seed, "data_kwargs": self.data_kwargs,
                "recipe": {"name": self.recipe_name, "source": self.recipe_source, "phase": self.phase},
                "weights_file": self.weights_file, "mask_file": self.mask_file, "source": self.source,
                "workers": self.workers}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunOptions:
        recipe = raw.get("recipe") or {}
        return cls(kind=raw["kind"], arch=raw["arch"],
                   budget=Budget.parse(raw["budget"]) if raw.get("budget") else None, seed=int(raw["seed"]),
                   data_kwargs=dict(raw.get("data_kwargs") or {}), recipe_name=recipe.get("name"),
                   recipe_source=recipe.get("source"), phase=dict(recipe.get("phase") or {}),
                   weights_file=raw.get("weights_file"), mask_file=raw.get("mask_file"), source=raw.get("source"),
                   workers=int(raw.get("workers") or 0))

    def run_dir(self, out: str | None) -> Path:
        """``out``, else ``runs/<kind>-<arch>-<dataset>[-<budget>]``."""
        if out:
            return Path(out)
        dataset = Path(str(self.data_kwargs["name_or_path"])).name
        return default_run_dir(self.kind, self.arch, dataset, self.budget.slug if self.budget else None)


def _check_arch(arch: str) -> None:
    from ..models import create_model, is_model

    if not is_model(arch):
        create_model(arch)  # raises UnknownModelError with suggestions


def resolve(s: RunRequest) -> RunOptions:
    """The full, reproducible configuration of a new run."""
    from ..recipes import load_recipe, phase_config

    if s.kind not in PHASE_KINDS:
        raise RunError(f"unknown run kind {s.kind!r}")
    if s.kind == "prune" and s.budget is None:
        raise RunError("prune needs --budget kind:value (e.g. flops:0.25)")
    budget = s.budget
    source_cfg: dict[str, Any] = {}
    if s.from_run:
        source_run, source_cfg = open_source_run(s.from_run, _SOURCE_KINDS[s.kind])
    arch = s.arch or source_cfg.get("arch")
    weights, mask = s.weights, s.mask
    if s.kind == "prune" and not weights:
        if not s.from_run:
            raise RunError("prune needs dense weights: --from TRAIN_RUN or --weights FILE")
        weights = str(source_run.file(WEIGHTS))
    if s.kind == "finetune":
        if s.from_run:
            mask = mask or str(source_run.file(MASK))
            weights = weights or str(source_run.file(PRUNED_WEIGHTS))
        if not mask:
            raise RunError("finetune needs a mask: --from PRUNE_RUN or --mask FILE [--weights FILE]")
        if not Path(mask).is_file():
            raise RunError(f"mask file not found: {mask}")
        from ..mask import Mask

        mask_obj = Mask.load(mask)
        arch = arch or mask_obj.arch
        if budget is None:
            budget = mask_obj.budget
    if s.kind == "train" and s.from_run:
        weights = weights or str(source_run.file(WEIGHTS))
    if not arch:
        raise RunError("--arch is required (or --from a run)")
    _check_arch(arch)
    if s.kind == "finetune":
        mask_obj.check_arch(arch)
    if weights and not Path(weights).is_file():
        raise RunError(f"weights file not found: {weights}")

    # data: the source run's split unless the dataset changes
    src_kwargs = dict((source_cfg.get("dataset") or {}).get("load_kwargs") or {})
    if s.dataset is not None and s.dataset != src_kwargs.get("name_or_path"):
        src_kwargs = {}
    data_kwargs = {"name_or_path": s.dataset or src_kwargs.get("name_or_path")}
    if not data_kwargs["name_or_path"]:
        raise RunError("--dataset is required (or --from a run)")
    seed = s.seed if s.seed is not None else int(source_cfg.get("seed", 0))
    for key, value in (("image_column", s.image_column), ("label_column", s.label_column),
                       ("max_samples", s.max_samples), ("image_size", s.image_size)):
        data_kwargs[key] = value if value is not None else src_kwargs.get(key)
    train_samples = s.train_samples if s.train_samples is not None else src_kwargs.get("train_samples")
    if train_samples is not None:  # only when set, so the data_kwargs of earlier runs keep their form
        data_kwargs["train_samples"] = train_samples
    data_kwargs["seed"] = s.data_seed if s.data_seed is not None else src_kwargs.get("seed", seed)
    for key, value in src_kwargs.items():  # val/test fractions, augmentation, config, ...
        data_kwargs.setdefault(key, value)

    recipe_name = s.recipe or (source_cfg.get("recipe") or {}).get("source") or "paper"
    if Path(recipe_name).is_file():
        recipe_name = str(Path(recipe_name).resolve())
    recipe = load_recipe(recipe_name)
    phase = phase_config(recipe, s.kind, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                         round_to=s.round_to if s.kind == "prune" else None)
    return RunOptions(
        kind=s.kind, arch=arch, budget=budget, seed=seed, data_kwargs=data_kwargs, recipe_name=recipe.get("name"),
        recipe_source=recipe_name, phase=phase, weights_file=str(Path(weights).resolve()) if weights else None,
        mask_file=str(Path(mask).resolve()) if mask else None,
        source={"run": str(Path(s.from_run).resolve()), "kind": source_cfg.get("kind")} if s.from_run else None,
        workers=s.workers)


# --- --resume: the options given must be the run's own ---------------------------------------------
#: ``RunRequest`` fields that may differ on ``--resume``: they change how a run executes, not what it computes
#: (``kind`` is checked on its own). Every other field is compared by :func:`resume_differences`.
RESUME_FREE = ("kind", "out", "resume", "device", "workers", "progress", "latency_repeats", "wait_for_lock", "argv")


def _same_path(a: Any, b: Any) -> bool:
    return a is not None and b is not None and Path(str(a)).resolve() == Path(str(b)).resolve()


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _run_values(cfg: dict[str, Any]) -> dict[str, tuple[Any, Callable[[Any, Any], bool]]]:
    """``{RunRequest field: (the run's value, how to compare)}`` from a run's resolved configuration."""
    phase = (cfg.get("recipe") or {}).get("phase") or {}
    data = cfg.get("data_kwargs") or {}
    recipe = cfg.get("recipe") or {}
    return {
        "arch": (cfg.get("arch"), _same_value), "dataset": (data.get("name_or_path"), _same_value),
        "image_column": (data.get("image_column"), _same_value),
        "label_column": (data.get("label_column"), _same_value),
        "max_samples": (data.get("max_samples"), _same_value), "image_size": (data.get("image_size"), _same_value),
        "train_samples": (data.get("train_samples"), _same_value),
        "data_seed": (data.get("seed"), _same_value), "seed": (cfg.get("seed"), _same_value),
        "epochs": (phase.get("epochs"), _same_value), "batch_size": (phase.get("batch_size"), _same_value),
        "lr": (phase.get("lr"), _same_value), "round_to": (phase.get("round_to", 1), _same_value),
        "weights": (cfg.get("weights_file"), _same_path), "mask": (cfg.get("mask_file"), _same_path),
        "from_run": ((cfg.get("source") or {}).get("run"), _same_path),
        "budget": (cfg.get("budget"), lambda asked, had: str(asked) == had),
        "recipe": (recipe.get("source"), lambda asked, had: asked in (had, recipe.get("name")) or (
            Path(asked).is_file() and _same_path(asked, had))),
    }


def resume_differences(s: RunRequest, cfg: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The options given to a ``--resume`` that differ from the run's resolved configuration ``cfg`` (its
    JSON form): ``{RunRequest field: (the run's value, the value asked for)}``. Options not given (``None``)
    never differ. Every option that changes what the run computes must match - ``--epochs`` included: the
    learning-rate and pruning schedules depend on the total number of epochs, so a longer run is a new run
    (docs/reliability.md). Only the fields in :data:`RESUME_FREE` may differ. Values are as written in
    ``config.json`` (a budget as ``"kind:value"``)."""
    differences: dict[str, tuple[Any, Any]] = {}
    for name, (had, same) in _run_values(cfg).items():
        asked = getattr(s, name)
        if asked is not None and not same(asked, had):
            differences[name] = (had, str(asked) if isinstance(asked, Budget) else asked)
    return differences


def check_resume(run: Run, s: RunRequest, cfg: dict[str, Any]) -> None:
    """Refuse a ``--resume`` whose options differ from the run's (:class:`ResumeMismatchError`, listing them)."""
    differences = resume_differences(s, cfg)
    if differences:
        listed = "; ".join(f"{'--from' if k == 'from_run' else '--' + k.replace('_', '-')}: the run has {had!r}, "
                           f"asked {asked!r}" for k, (had, asked) in differences.items())
        raise ResumeMismatchError(
            f"cannot resume {run.path} with other options ({listed}). Resume with the run's own options (or "
            "none), or start a new run with another --out", run=str(run.path), differences=differences)
