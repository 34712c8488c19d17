"""``results.jsonl``: one JSON line per finished cell (the record a resumed experiment skips by)."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from .config import Cell, ExperimentConfig

RESULTS, RESULTS_JSON, RESULTS_CSV, RESULTS_MD = "results.jsonl", "results.json", "results.csv", "results.md"
#: The experiment's own config, written at every start (``export_zoo`` reads its ``budget_type``).
CONFIG = "config.json"


def read_results(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every row of ``<out>/results.jsonl`` (a line cut by a kill is skipped: that cell is redone)."""
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


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: the last one written."""
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        latest[r["cell"]] = r
    return list(latest.values())


def record(cell: Cell, cfg: ExperimentConfig, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The ``results.jsonl`` line of a finished cell."""
    ratios = metrics.get("ratios") or {}
    return {"cell": cell.id, "teacher": cell.teacher, "student": cell.student, "arch": cfg.arch,
            "method": cell.method, "budget_type": cell.budget.kind, "budget": cell.budget.value, "seed": cell.seed,
            "test_accuracy": metrics.get("test_accuracy"), "val_accuracy": metrics.get("val_accuracy"),
            "ratios": ratios, "params": metrics.get("params"), "macs": metrics.get("macs"),
            "seconds": round(seconds, 2), "run_dir": metrics.get("run_dir"), "finished": time.time()}


def over_seeds(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    """The test accuracy of ``row``'s cell over every seed that finished it: mean, std and per seed."""
    same = {int(r["seed"]): float(r["test_accuracy"]) for r in rows
            if (r["teacher"], r["student"], r["method"], r.get("budget_type"), r["budget"])
            == (row["teacher"], row["student"], row["method"], row.get("budget_type"), row["budget"])
            and r.get("test_accuracy") is not None}
    values = [same[s] for s in sorted(same)]
    return {"test_accuracy_seeds": {str(s): same[s] for s in sorted(same)},
            "test_accuracy_mean": statistics.fmean(values) if values else None,
            "test_accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0}
