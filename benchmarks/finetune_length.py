"""Does a longer fine-tuning schedule change the ranking at the tightest budgets? A lever of the offline grid.

In the offline grid (docs/experiments.md) every fine-tuned method gets 10 epochs from the dense student,
and at the tightest budgets a random mask trained from scratch for 60 epochs beats all of them. This runs
the fine-tuned methods that matter for the targets (``chipnet-direct``, ``transfer-finetune``, ``random``)
at FLOPs 0.03125 and params 0.0625 on both students, seeds 0-2, with ``--epochs`` fine-tuning epochs (the
same schedule shape: SGD, multistep at 50 % / 75 %), and reports them next to the grid's 10-epoch cells
(``docs/results/offline/results.json``), paired by seed.

    python benchmarks/finetune_length.py --epochs 40 --reuse /path/to/grid-output   # one process
    OMP_NUM_THREADS=1 python benchmarks/finetune_length.py --epochs 40 --lane 0/2 &  # or two lanes
    OMP_NUM_THREADS=1 python benchmarks/finetune_length.py --epochs 40 --lane 1/2
    python benchmarks/finetune_length.py --epochs 40 --report

``--reuse`` takes the dense and pruning runs from a finished offline grid's ``runs`` folder in place (the same
recipe, seeds, split and train/prune epochs, so they are reused as finished; a missing one would be made
there), so only the fine-tuning runs are new. Writes (without ``--lane``, or with ``--report``)
``benchmarks/results/finetune_length.md``; run folders go to ``--out`` (default ``/tmp/finetune-length``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from chipnet_zoo.cli.experiment import _lane  # the CLI's K/N parser
from chipnet_zoo.experiments import ExperimentConfig, Workspace, paired_interval, read_results, run_experiment
from chipnet_zoo.experiments.report import _accuracies, _method_of  # the report's per-seed accuracies, labels

HERE = Path(__file__).parent
RESULT = HERE / "results" / "finetune_length.md"
GRID = HERE.parent / "docs" / "results" / "offline" / "results.json"
BUDGETS = ["flops:0.03125", "params:0.0625"]
METHODS = ["chipnet-direct", "transfer-finetune", "random"]
SEEDS = [0, 1, 2]
STUDENTS = ["mnist5k", "animal-mnist"]


def config(epochs: int) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "name": f"finetune-e{epochs}", "arch": "resnet8", "teachers": ["animal-mnist", "mnist5k"],
        "students": STUDENTS, "budgets": BUDGETS, "methods": ["dense", *METHODS], "seeds": SEEDS,
        "recipe": "offline", "epochs": {"finetune": epochs}, "max_samples": {"animal-mnist": 3000},
        "data_seed": 0})


def _per_seed(rows: list[dict]) -> dict[tuple[str, str, str], dict[int, float]]:
    """``{(student, budget, method label): {seed: test accuracy}}`` of the methods and seeds compared here."""
    out = {}
    for student in STUDENTS:
        for (label, budget), per_seed in _accuracies(rows, student).items():
            if _method_of(label) in METHODS and str(budget) in BUDGETS:
                out[student, str(budget), label] = {s: v for s, v in per_seed.items() if s in SEEDS}
    return out


def _interval(d: list[float]) -> str:
    mean, low, high = paired_interval(d)
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]" if len(d) > 1 else f"{100 * mean:+.1f}"


def _fmt(accs: dict[int, float], seeds: list[int]) -> str:
    xs = [100 * accs[s] for s in seeds]
    return f"{statistics.fmean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def _vs(accs: dict[int, float], ref: dict[int, float], seeds: list[int]) -> str:
    common = [s for s in seeds if s in ref]
    return _interval([accs[s] - ref[s] for s in common]) if common else "-"


def table(out: Path, epochs: int) -> str:
    short = _per_seed(json.loads(GRID.read_text()))
    long = _per_seed(read_results(out))
    lines = [f"Fine-tuning for 10 epochs (the offline grid) and for {epochs} epochs, seeds {SEEDS}: test accuracy % "
             "(mean ± std), the gain from the longer schedule, and each method minus `random` at the same "
             "length (paired by seed, 95 % t-interval).", "",
             f"| student | budget | method | 10 epochs | {epochs} epochs | {epochs} − 10 | − random (10) | "
             f"− random ({epochs}) | n |", "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(long, key=lambda k: (STUDENTS.index(k[0]), BUDGETS.index(k[1]), k[2])):
        student, budget, label = key
        a, b = short.get(key, {}), long[key]
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        ra, rb = short.get((student, budget, "random"), {}), long.get((student, budget, "random"), {})
        vs_a, vs_b = ("-", "-") if label == "random" else (_vs(a, ra, seeds), _vs(b, rb, seeds))
        lines.append(f"| {student} | {budget} | {label} | {_fmt(a, seeds)} | {_fmt(b, seeds)} | "
                     f"{_interval([b[s] - a[s] for s in seeds])} | {vs_a} | {vs_b} | {len(seeds)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40, help="fine-tuning epochs (the grid uses 10)")
    parser.add_argument("--out", default="/tmp/finetune-length")
    parser.add_argument("--reuse", help="a finished offline grid's output folder whose dense/prune runs to use")
    parser.add_argument("--lane", type=_lane, metavar="K/N", help="run lane K of N (the experiment runner's split of the (student, seed) pairs)")
    parser.add_argument("--report", action="store_true", help="only write the table of what has run")
    args = parser.parse_args()
    out = Path(args.out) / f"e{args.epochs}"
    if not args.report:
        shared = Path(args.reuse) / "runs" if args.reuse else None
        run_experiment(config(args.epochs), out=out, lane=args.lane,
                       workspace=lambda cfg, path: Workspace(cfg, path, shared_runs=shared))
    text = table(out, args.epochs)
    if args.report or not args.lane:  # a lane's table may miss the other lane's cells
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
