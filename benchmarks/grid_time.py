"""How long does the offline grid take on 2 cores, measured on an idle machine, and does it reproduce?

The offline grid (docs/experiments.md) recorded each cell's seconds, but part of it ran beside other
benchmarks, so its sums overstate the grid's own time. This re-runs seed 0 of the grid (every method,
budget and student: the 114 cells that share seed 0's dense models) on 2 lanes of an otherwise idle
machine, with the code as it is now, and

- checks that every re-run cell gives the grid's recorded test accuracy to the last digit;
- times each cell, and estimates the whole grid on 2 lanes from them: every cell of the grid costs what
  the re-run's seed-0 cell of the same (student, method, budget) cost, summed per lane as the runner
  splits the grid (``--lane K/2``, :func:`chipnet_zoo.experiments.lane_of`).

    OMP_NUM_THREADS=1 python benchmarks/grid_time.py --rerun /tmp/grid-s0 --lane 0/2 &   # the re-run, one
    OMP_NUM_THREADS=1 python benchmarks/grid_time.py --rerun /tmp/grid-s0 --lane 1/2     # process per core
    python benchmarks/grid_time.py --rerun /tmp/grid-s0 --grid /path/to/grid-output      # the report

Writes ``benchmarks/results/grid_time.md`` and ``grid_time.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from chipnet_zoo.cli.experiment import _lane  # the CLI's K/N parser
from chipnet_zoo.experiments import ExperimentConfig, lane_of, read_results, run_experiment
from chipnet_zoo.experiments.config import Cell
from chipnet_zoo.experiments.report import _row_budget  # the report's budget of a results row

HERE = Path(__file__).parent
RESULT = HERE / "results" / "grid_time"
LANES = 2


def seed0_config() -> ExperimentConfig:
    """The shipped offline grid, seed 0 only (its cell ids are the grid's)."""
    cfg = ExperimentConfig.load("offline")
    return ExperimentConfig.from_dict({**cfg.to_dict(), "seeds": [0], "extra_seeds": []})


def _cell(row: dict) -> Cell:
    return Cell(row["teacher"], row["student"], row["method"], _row_budget(row), int(row["seed"]))


def _shape(row: dict) -> tuple:
    """What a cell's cost depends on: its student, method and budget (not its seed)."""
    return row["student"], row["method"], _row_budget(row)


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``(start, end)`` intervals: the wall time during which some cell ran (a
    stop of the re-run, e.g. between two sessions, is not counted)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def report(rerun_dir: Path, grid_dir: Path) -> dict:
    grid_cfg = ExperimentConfig.load("offline")
    grid_rows = {r["cell"]: r for r in read_results(grid_dir)}
    rerun_rows = read_results(rerun_dir)
    # 1. the re-run against the grid's record
    same = [r for r in rerun_rows if r["test_accuracy"] == grid_rows[r["cell"]]["test_accuracy"]]
    diffs = [abs(r["test_accuracy"] - grid_rows[r["cell"]]["test_accuracy"]) for r in rerun_rows]
    # 2. per method: seconds per cell, re-run (idle, seed 0) against the grid's record (all seeds)
    by_method_rerun, by_method_grid = defaultdict(list), defaultdict(list)
    for r in rerun_rows:
        by_method_rerun[r["method"]].append(r["seconds"])
    for r in grid_rows.values():
        by_method_grid[r["method"]].append(r["seconds"])
    # 3. every grid cell at its seed-0 shape's idle time, summed per lane
    idle = {_shape(r): r["seconds"] for r in rerun_rows}
    base_seeds = set(grid_cfg.seeds)

    def lanes(keep) -> dict[str, list[float]]:
        """Idle seconds per lane, base seeds and extra seeds apart (the runner starts the extra seeds once
        every base cell has finished, so the wall time is the longer base lane plus the longer extra lane)."""
        totals = {"base": [0.0] * LANES, "extra": [0.0] * LANES}
        for r in grid_rows.values():
            if keep(r):
                stage = "base" if int(r["seed"]) in base_seeds else "extra"
                totals[stage][lane_of(grid_cfg, _cell(r), LANES)] += idle[_shape(r)]
        return totals

    variants = {
        "the whole grid (416 cells)": lanes(lambda r: True),
        "without the random-scratch control": lanes(lambda r: r["method"] != "random-scratch"),
        "seeds 0-2 only (no extra seeds)": lanes(lambda r: int(r["seed"]) in base_seeds),
        "seeds 0-2, without random-scratch": lanes(lambda r: int(r["seed"]) in base_seeds
                                                   and r["method"] != "random-scratch"),
    }
    rerun_cfg, rerun_lanes = seed0_config(), [0.0] * LANES
    for r in rerun_rows:
        rerun_lanes[lane_of(rerun_cfg, _cell(r), LANES)] += r["seconds"]
    return {
        "cells": len(rerun_rows), "identical_test_accuracy": len(same), "max_abs_difference": max(diffs),
        "seconds_per_cell": {m: {"rerun_median": statistics.median(by_method_rerun[m]),
                                 "grid_median": statistics.median(by_method_grid[m]),
                                 "grid_cells": len(by_method_grid[m])} for m in by_method_rerun},
        "rerun_wall_seconds": busy_seconds([(r["finished"] - r["seconds"], r["finished"]) for r in rerun_rows]),
        "rerun_lane_seconds": rerun_lanes,
        "estimated_lane_seconds": variants,
        "grid_recorded_cell_seconds": sum(r["seconds"] for r in grid_rows.values()),
    }


def markdown(result: dict) -> str:
    h = lambda s: f"{s / 3600:.2f} h"  # noqa: E731
    lines = [f"Seed 0 of the offline grid re-run on 2 lanes of an idle machine: {result['cells']} cells; "
             f"{result['identical_test_accuracy']} give the grid's recorded test accuracy exactly (largest "
             f"difference {result['max_abs_difference']:.2g}).", "",
             "| method | cells in the grid | s per cell, grid as recorded (median) | s per cell, idle re-run (median, seed 0) |",
             "|---|---|---|---|"]
    for method, s in result["seconds_per_cell"].items():
        lines.append(f"| {method} | {s['grid_cells']} | {s['grid_median']:.0f} | {s['rerun_median']:.0f} |")
    wall, lanes = result["rerun_wall_seconds"], result["rerun_lane_seconds"]
    lines += ["", f"The re-run itself: {h(wall)} of wall time with a cell running; its lanes' cells sum to "
                  f"{h(lanes[0])} and {h(lanes[1])}.", "",
              "Every cell of the grid at the idle time of its seed-0 cell, per lane (base seeds + extra seeds); the "
              "wall time is the longer lane of the base seeds plus the longer lane of the extra seeds, which "
              "start when every base cell has finished:", "",
              "| grid | lane 0 | lane 1 | wall time on 2 lanes |", "|---|---|---|---|"]
    for name, t in result["estimated_lane_seconds"].items():
        lane = [t["base"][k] + t["extra"][k] for k in range(LANES)]
        lines.append(f"| {name} | {h(lane[0])} | {h(lane[1])} | {h(max(t['base']) + max(t['extra']))} |")
    lines += ["", f"The grid's recorded cell times sum to {h(result['grid_recorded_cell_seconds'])} (part of it "
                  "ran beside other benchmarks)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rerun", type=Path, required=True, help="the re-run's output folder")
    parser.add_argument("--lane", type=_lane, metavar="K/N", help="run this lane of the re-run")
    parser.add_argument("--grid", type=Path, help="the full grid's output folder: write the report")
    args = parser.parse_args()
    if args.lane is not None or args.grid is None:
        run_experiment(seed0_config(), out=args.rerun, lane=args.lane)
    if args.grid is not None:
        result = report(args.rerun, args.grid)
        RESULT.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        RESULT.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))


if __name__ == "__main__":
    main()
