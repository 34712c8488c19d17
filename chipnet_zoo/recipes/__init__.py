"""Training recipes: the shipped YAML files in this folder (``paper``, ``paper-r164``, ``cpu``, ``offline``,
``tiny``), loaded by name or path, and the settings of one phase (defaults < recipe < overrides).

    >>> from chipnet_zoo.recipes import load_recipe, phase_config
    >>> cfg = phase_config(load_recipe("paper"), "train")
    >>> cfg["optimizer"], cfg["lr"], cfg["epochs"]
    ('sgd', 0.05, 200)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..threshold import check_round_to

RECIPE_DIR = Path(__file__).parent
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


def list_recipes() -> list[str]:
    """Names of the recipes that ship with the package."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def read_yaml_mapping(path: Path, not_a_mapping: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` (safe loader); :class:`RunError` for invalid YAML, or ``not_a_mapping``."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RunError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RunError(not_a_mapping)
    return data


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """A recipe (YAML): a shipped name (``paper``, ``cpu``, ...) or a path. Returns its mapping."""
    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise RunError(f"unknown recipe {str(name_or_path)!r}: not a file, and not one of the shipped "
                           f"recipes ({', '.join(list_recipes())})")
    data = read_yaml_mapping(path, f"recipe {path} must be a mapping with sections {', '.join(PHASES)}")
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
