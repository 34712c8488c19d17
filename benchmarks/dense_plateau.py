"""Is the dense model trained to a plateau? The protocol check of the offline experiment.

For each number of dense training epochs, the experiment runner trains the dense student (recipe
``offline``) and fine-tunes a pruned model at FLOPs 0.5 from it (``l1``, the same fine-tuning as the
grid). The criterion (docs/experiments.md): doubling the dense epochs changes dense test accuracy by less
than the seed noise, and the pruned model at 0.5 does not beat its dense model by more than the seed noise
(paired over seeds).

    python benchmarks/dense_plateau.py --epochs 15 30 60 --seeds 0 1 2
    python benchmarks/dense_plateau.py --report

Writes ``benchmarks/results/dense_plateau.md``; run folders go to ``--out`` (default ``/tmp/dense-plateau``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from chipnet_zoo.experiments import ExperimentConfig, paired_interval, read_results, run_experiment

RESULT = Path(__file__).parent / "results" / "dense_plateau.md"
MAX_SAMPLES = {"animal-mnist": 3000, "mnist5k": None}


def config(dataset: str, epochs: int, seeds: list[int]) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "name": f"plateau-{dataset}-e{epochs}", "arch": "resnet8", "students": [dataset],
        "budgets": ["flops:0.5"], "methods": ["dense", "l1"], "seeds": seeds, "recipe": "offline",
        "epochs": {"train": epochs}, "max_samples": MAX_SAMPLES, "data_seed": 0})


def table(out: Path, datasets: list[str], epochs: list[int]) -> str:
    lines = ["| dataset | dense epochs | dense test % (mean ± std) | l1 at FLOPs 0.5 − dense (paired, points) | n |",
             "|---|---|---|---|---|"]
    for dataset in datasets:
        for e in epochs:
            rows = read_results(out / f"{dataset}-e{e}")
            dense = {r["seed"]: r["test_accuracy"] for r in rows if r["method"] == "dense"}
            pruned = {r["seed"]: r["test_accuracy"] for r in rows if r["method"] == "l1"}
            seeds = sorted(set(dense) & set(pruned))
            if not dense:
                continue
            acc = [100 * v for v in dense.values()]
            spread = f"{statistics.fmean(acc):.1f} ± {statistics.stdev(acc):.1f}" if len(acc) > 1 else f"{acc[0]:.1f}"
            diff = "-"
            if len(seeds) > 1:
                mean, low, high = paired_interval([pruned[s] - dense[s] for s in seeds])
                diff = f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
            lines.append(f"| {dataset} | {e} | {spread} | {diff} | {len(seeds)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mnist5k", "animal-mnist"])
    parser.add_argument("--epochs", nargs="+", type=int, default=[15, 30, 60])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="/tmp/dense-plateau")
    parser.add_argument("--report", action="store_true", help="only write the table of what has run")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.report:
        for dataset in args.datasets:
            for e in args.epochs:
                run_experiment(config(dataset, e, args.seeds), out=out / f"{dataset}-e{e}")
    text = table(out, args.datasets, args.epochs)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
