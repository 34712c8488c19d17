"""Widths or channels? ChipNet's mask taken apart on the offline grid: how many channels per group, and which.

On the offline grid (docs/experiments.md) `slimming` is the best baseline at params 0.25 on both students,
and ChipNet's paired mean is below it (mnist5k −0.4, animal-mnist −0.9). The two masks differ in two ways:
how many channels each group keeps (ChipNet's width floor gives near-uniform widths; slimming keeps the
residual streams whole and thins the inner groups) and which channels it keeps (ChipNet's gates; |γ|).
This crosses the two: every combination of {ChipNet's widths, slimming's widths} × {ChipNet's gate scores,
slimming's |γ|, a seeded random choice}. A mask with another mask's widths has exactly its per-group counts,
so it has the same parameters and FLOPs. Each new mask is fine-tuned as the grid fine-tunes every method
(recipe `offline`, 10 epochs from the same dense model, last epoch); the two original pairings are the
grid's own `chipnet-direct` and `slimming` cells. Paired by seed (the same dense model). At every other budget
of the grid, ChipNet's widths are also filled with a random choice: does the gates' choice of channels add
anything to the widths the floor sets?

    python benchmarks/width_or_choice.py --grid /path/to/offline-grid-output      # 66 fine-tuning runs
    OMP_NUM_THREADS=1 python benchmarks/width_or_choice.py --grid ... --student mnist5k &    # or two lanes,
    OMP_NUM_THREADS=1 python benchmarks/width_or_choice.py --grid ... --student animal-mnist  # then the first
    python benchmarks/width_or_choice.py --report       # the table again, from the results file

Runs are written under ``--out`` (default ``experiments/width-or-choice``); the dense runs are the grid's.
Writes ``benchmarks/results/width_or_choice.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from chipnet_zoo import Budget, Mask
from chipnet_zoo.experiments import ExperimentConfig, Workspace, paired_interval, read_results
from chipnet_zoo.runs.folder import MASK, WEIGHTS

RESULTS = Path(__file__).parent / "results"
STUDENTS, SEEDS = ("mnist5k", "animal-mnist"), (0, 1, 2)
WIDTHS, CHOICES = ("chipnet", "slimming"), ("chipnet", "slimming", "random")
#: The grid's budgets; params 0.25 gets the full cross, the others ChipNet's widths with a random choice.
BUDGETS = ("flops:0.25", "flops:0.125", "flops:0.0625", "flops:0.03125", "params:0.25", "params:0.0625",
           "channels:0.5", "channels:0.25")
FULL_CROSS = "params:0.25"


def source_masks(ws: Workspace, grid: Workspace, student: str, budget: str, seed: int) -> dict[str, Mask]:
    """The grid's ChipNet (``chipnet-direct``: its pruning run, through ``ws``) and slimming masks (the grid's
    own file, through ``grid``, the grid's workspace) of a student, budget and seed."""
    prune = ws.prune(student, Budget.parse(budget), seed)
    return {"chipnet": Mask.load(prune / MASK),
            "slimming": Mask.load(grid.baseline_mask(student, Budget.parse(budget), "slimming", seed))}


def crossed_mask(widths: Mask, choice: Mask | None, seed: int) -> Mask:
    """``widths``'s per-group counts, filled with the top channels of ``choice``'s scores (``None``: a seeded
    random choice). Ties go to the lower index."""
    gen = torch.Generator().manual_seed(seed)
    keep, scores = {}, {}
    for name, kept in widths.keep.items():
        score = (choice.scores[name].to(torch.float64) if choice is not None
                 else torch.rand(kept.numel(), generator=gen, dtype=torch.float64))
        order = torch.sort(-score, stable=True).indices
        new = torch.zeros(kept.numel(), dtype=torch.bool)
        new[order[:int(kept.sum())]] = True
        keep[name], scores[name] = new, score.to(widths.scores[name].dtype)
    meta = {**widths.metadata, "method": f"widths-{widths.metadata['method']}-choice-"
            f"{choice.metadata['method'] if choice is not None else 'random'}"}
    return Mask(keep, scores, meta)


def grid_accuracy(rows: list[dict], student: str, budget: str, method: str, seed: int) -> float:
    cell = f"->{student}|{method}|{budget}|s{seed}"
    return float(next(r["test_accuracy"] for r in reversed(rows) if r["cell"] == cell))


def combinations(budget: str) -> list[tuple[str, str]]:
    """(widths, choice) pairs run at ``budget``: the full cross at :data:`FULL_CROSS`, else ChipNet's widths
    with its own choice (the grid's cell) and with a random one."""
    if budget == FULL_CROSS:
        return [(w, c) for w in WIDTHS for c in CHOICES]
    return [("chipnet", "chipnet"), ("chipnet", "random")]


def run(grid: Path, out: Path, students: tuple[str, ...] = STUDENTS) -> list[dict]:
    cfg = ExperimentConfig.load("offline")
    ws, grid_ws = Workspace(cfg, out, shared_runs=grid / "runs"), Workspace(cfg, grid)
    rows = read_results(grid)
    original = {("chipnet", "chipnet"): "chipnet-direct", ("slimming", "slimming"): "slimming"}
    results = []
    for student in students:
        dense = {seed: ws.dense(student, seed) / WEIGHTS for seed in SEEDS}
        for budget in BUDGETS:
            for seed in SEEDS:
                masks = source_masks(ws, grid_ws, student, budget, seed)
                for width, choice in combinations(budget):
                    if (width, choice) in original:
                        acc = grid_accuracy(rows, student, budget, original[width, choice], seed)
                    else:
                        mask = crossed_mask(masks[width], masks.get(choice), seed)
                        name = f"{student}-{budget.replace(':', '-')}-s{seed}-widths-{width}-choice-{choice}"
                        path = out / "masks" / f"{name}.mask.safetensors"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        if not path.exists():  # deterministic: a re-run resumes the same fine-tuning run
                            mask.save(path)
                        acc = float(ws.finetune(name, student, seed, path, dense[seed])["test_accuracy"])
                    kept = masks[width].kept()
                    results.append({"student": student, "budget": budget, "seed": seed, "widths": width,
                                    "choice": choice, "test_accuracy": acc, "kept": list(kept.values()),
                                    "groups": list(kept)})
                    print(f"{student} {budget} s{seed} widths={width} choice={choice}: {100 * acc:.1f}", flush=True)
    return results


def report(results: list[dict]) -> str:
    acc = {(r["student"], r["budget"], r["widths"], r["choice"], r["seed"]): r["test_accuracy"] for r in results}
    lines = ["| student | budget | widths | choice | test acc % (mean ± std) | − slimming (paired, 95 % CI) | "
             "− chipnet-direct (paired, 95 % CI) |", "|---|---|---|---|---|---|---|"]

    def paired(student: str, budget: str, combo: tuple[str, str], ref: tuple[str, str]) -> str:
        if combo == ref or (student, budget, *ref, SEEDS[0]) not in acc:
            return "–"
        diffs = [acc[(student, budget, *combo, s)] - acc[(student, budget, *ref, s)] for s in SEEDS]
        mean, low, high = paired_interval(diffs)
        return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"

    for student in STUDENTS:
        for budget in BUDGETS:
            for combo in combinations(budget):
                if (student, budget, *combo, SEEDS[0]) not in acc:
                    continue
                vals = [acc[(student, budget, *combo, s)] for s in SEEDS]
                lines.append(f"| {student} | {budget} | {combo[0]} | {combo[1]} | {100 * statistics.fmean(vals):.1f} ± "
                             f"{100 * statistics.stdev(vals):.1f} | {paired(student, budget, combo, ('slimming', 'slimming'))} | "
                             f"{paired(student, budget, combo, ('chipnet', 'chipnet'))} |")
    lines += ["", f"Seeds {', '.join(map(str, SEEDS))}; widths `chipnet` + choice `chipnet` is the grid's `chipnet-direct`, "
              "widths `slimming` + choice `slimming` the grid's `slimming`."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, help="a finished offline grid's output folder (not needed with --report)")
    ap.add_argument("--out", type=Path, default=Path("experiments/width-or-choice"))
    ap.add_argument("--report", action="store_true", help="only rewrite the table from the results file")
    ap.add_argument("--student", choices=STUDENTS, help="run only this student's fine-tuning (a lane: run the "
                    "other student in a second process, then the full command, which reuses both lanes' runs)")
    args = ap.parse_args()
    if args.grid is None and not args.report:
        ap.error("--grid is needed to run (only --report works without it)")
    if args.student:
        run(args.grid, args.out, (args.student,))
        return 0
    path = RESULTS / "width_or_choice.json"
    results = json.loads(path.read_text()) if args.report else run(args.grid, args.out)
    path.write_text(json.dumps(results, indent=1) + "\n")
    table = report(results)
    (RESULTS / "width_or_choice.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
