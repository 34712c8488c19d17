"""Experiments (``chipnet-zoo experiment CONFIG.yaml``): teacher × student × budgets × methods × seeds, resumable.

Methods (docs/experiments.md), all at the same budget through the same thresholding:

==================  =====================================================================================
``dense``           the dense student (one per student and seed; its accuracy is drawn at budget 1)
``chipnet-direct``  ChipNet pruning on the student's dense model, then fine-tuning (a prune run, then a finetune run)
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
    extra_seeds: [3, 4]          # optional: added where a method's std over seeds exceeds extra_seeds_above_std
    extra_seeds_above_std: 0.03  # (a fraction: 3 points)
    recipe: cpu                  # shipped recipe name or a YAML file (relative to the config)
    epochs: {train: 15, prune: 8, finetune: 10}   # optional overrides of the recipe
    max_samples: null            # or a number, or {dataset: number}
    train_samples: null          # or a number, or {dataset: number}: caps train alone (val/test whole)
    data_seed: 0                 # the data split (the same for every seed and method)
    out: experiments/offline     # relative to the current directory

The package holds the shipped configs (``offline.yaml``, loaded by name) and one module per step of the
data flow: :mod:`.config` (YAML -> :class:`ExperimentConfig` -> grid of :class:`Cell`), :mod:`.workspace`
(a cell -> run folders under ``<out>/runs``), :mod:`.results` (``results.jsonl``), :mod:`.runner` (the
resumable loop), :mod:`.report` (tables, paired statistics, plots), :mod:`.zoo_export` and
:mod:`.recipe_cards` (publishing the masks).
"""

from __future__ import annotations

from .config import METHODS, Cell, ExperimentConfig, extra_cells, grid, lane_of, list_configs, noisy_pairs
from .report import markdown_table, paired_comparisons, paired_interval, scoreboard, write_reports
from .results import read_results
from .runner import run_experiment
from .workspace import Workspace
from .zoo_export import export_zoo

__all__ = ["METHODS", "Cell", "ExperimentConfig", "Workspace", "export_zoo", "extra_cells", "grid", "lane_of",
           "list_configs", "markdown_table", "noisy_pairs", "paired_comparisons", "paired_interval", "read_results",
           "run_experiment", "scoreboard", "write_reports"]
