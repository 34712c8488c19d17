"""Publishing an experiment into a registry folder (the shipped zoo is one): the ChipNet masks with their
fine-tuned slim weights, and the dense models they were learned from."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .recipe_cards import write_recipe_card
from .results import CONFIG, over_seeds, read_results


def export_zoo(out: str | os.PathLike, zoo: str | os.PathLike, *, seed: int = 0,
               cards: str | os.PathLike | None = None, command: str | None = None) -> list[Any]:
    """Publish an experiment's ChipNet masks into a registry folder (the shipped zoo is one).

    For every finished ``chipnet-direct`` cell of ``seed``: the fine-tuned run's mask with its slimmed,
    fine-tuned weights (``pull_model`` gives the runnable pruned model). For every ``dense`` cell: an
    entry at budget 1 (all channels kept, ``method=dense``) holding the dense weights the masks were
    learned from. ``cards``: a recipe card per entry (``<cards>/<key with / as __>.md``).
    """
    import torch

    from ..cost import CostModel
    from ..groups import build_channel_graph
    from ..mask import Mask
    from ..registry import MaskRegistry
    from ..runs.folder import MASK, WEIGHTS, Run
    from ..runs.weights import example_input, load_run_model

    out = Path(out)
    reg = MaskRegistry(zoo) if Path(zoo).is_dir() else _new_registry(Path(zoo))
    cfg = json.loads((out / CONFIG).read_text()) if (out / CONFIG).is_file() else {}
    entries = []
    rows = read_results(out)
    for row in rows:
        if row["seed"] != seed or row["method"] not in ("chipnet-direct", "dense"):
            continue
        run = Run(row["run_dir"])
        config, metrics = run.config(), run.metrics() or {}
        acc = {"val_accuracy": metrics.get("val_accuracy"), "test_accuracy": metrics.get("test_accuracy"),
               **over_seeds(rows, row)}
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
            write_recipe_card(Path(cards), entry, row, run, cfg, command)
    return entries


def _new_registry(path: Path):
    from ..registry import MaskRegistry

    path.mkdir(parents=True, exist_ok=True)
    return MaskRegistry(path)
