"""The resumable experiment loop: every cell not yet in ``results.jsonl`` is run, then the reports."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._atomic import atomic_write
from .config import Cell, ExperimentConfig, extra_cells, grid, lane_of
from .report import write_reports
from .results import CONFIG, RESULTS, latest_rows, read_results, record
from .workspace import Workspace


def run_experiment(config: ExperimentConfig | str | os.PathLike, *, out: str | os.PathLike | None = None,
                   max_cells: int | None = None, progress: bool = False,
                   on_cell: Callable[[Cell], None] | None = None,
                   workspace: Callable[[ExperimentConfig, Path], Workspace] | None = None,
                   lane: tuple[int, int] | None = None, command: list[str] | None = None,
                   poll_seconds: float = 30.0, stall_seconds: float = 3 * 3600.0) -> dict[str, Any]:
    """Run (or resume) the grid; returns ``{"rows", "done", "total", "out", "table"}``.

    ``max_cells`` stops after that many *new* cells (the rest are run next time). ``on_cell`` is called
    before each new cell (tests use it to interrupt a run). ``lane=(k, n)`` runs only the cells of every
    n-th (student, seed) pair from the k-th: n processes on one ``out`` share the grid (run folders are
    locked, so a lane that needs a shared run another lane is making waits for it). ``command``: the
    command line (without ``chipnet-zoo``) recorded in every new run folder's ``config.json``.
    With ``extra_seeds`` in the config, the cells of those seeds where the spread over the base seeds is large
    (:func:`~.config.extra_cells`) follow once every base cell has finished: a lane with extra seeds of its own
    waits for the others, polling every ``poll_seconds``, and gives up (run it again later) when no cell
    finishes for ``stall_seconds``.
    """
    cfg = config if isinstance(config, ExperimentConfig) else ExperimentConfig.load(config)
    out = Path(out or cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / CONFIG, json.dumps(cfg.to_dict(), indent=1).encode())  # loadable as a config: no extra keys
    ws = workspace(cfg, out) if workspace is not None else Workspace(cfg, out, progress, command=command)
    cells = grid(cfg)
    new = _run_cells(cells, cfg, ws, out, lane, max_cells, on_cell, stage="")
    if cfg.extra_seeds and (max_cells is None or new < max_cells):
        # the extra seeds are chosen from the spread over all base seeds: wait for the other lanes' cells
        base = {c.id for c in cells}
        mine = lane is None or any(lane_of(cfg, c, lane[1]) == lane[0] for c in grid(cfg, seeds=cfg.extra_seeds))
        waited, seen, last_change = False, -1, time.monotonic()
        while mine and not base <= (finished := {r["cell"] for r in read_results(out)}):
            if lane is None:
                break  # a single process that could not finish the base grid (it raised): nothing to add
            if len(finished) != seen:
                seen, last_change = len(finished), time.monotonic()
            elif time.monotonic() - last_change > stall_seconds:
                print(f"no other lane finished a cell for {stall_seconds:g} s: stopping; run again to add the extra "
                      "seeds once the base seeds are done", file=sys.stderr, flush=True)
                break
            if not waited:
                print("waiting for the other lanes to finish the base seeds ...", file=sys.stderr, flush=True)
                waited = True
            time.sleep(poll_seconds)
        else:
            if not mine:  # no extra seed falls to this lane: nothing to wait for
                return write_reports(out, cfg)
            extra = extra_cells(cfg, latest_rows(read_results(out)))
            print(f"extra seeds {cfg.extra_seeds}: {len(extra)} cells where a method's std over seeds "
                  f"{cfg.seeds} exceeds {100 * cfg.extra_seeds_above_std:g} points", file=sys.stderr, flush=True)
            cells = cells + extra
            new += _run_cells(extra, cfg, ws, out, lane, None if max_cells is None else max_cells - new, on_cell,
                              stage="extra seeds ")
    return write_reports(out, cfg, total=len(cells))


def _run_cells(cells: list[Cell], cfg: ExperimentConfig, ws: Workspace, out: Path, lane: tuple[int, int] | None,
               max_cells: int | None, on_cell: Callable[[Cell], None] | None, stage: str) -> int:
    """Run the cells of ``cells`` not yet in ``results.jsonl`` (those of ``lane``); returns how many ran."""
    done = {r["cell"] for r in read_results(out)} & {c.id for c in cells}  # rows of other grids don't count
    todo = [c for c in cells if c.id not in done and (lane is None or lane_of(cfg, c, lane[1]) == lane[0])]
    print(f"experiment {cfg.name}: {stage}{len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run "
          f"-> {out}", file=sys.stderr, flush=True)
    new = 0
    for i, cell in enumerate(todo):
        if max_cells is not None and new >= max_cells:
            print(f"stopping after {new} new cells (max_cells); run again to continue", file=sys.stderr)
            break
        if on_cell is not None:
            on_cell(cell)
        print(f"[{stage}{len(done) + i + 1}/{len(cells)}] {cell.id}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        metrics = ws.run_cell(cell)
        row = record(cell, cfg, metrics, time.perf_counter() - start)
        with open(out / RESULTS, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        new += 1
    return new
