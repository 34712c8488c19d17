"""Pipeline numbers (issue 3): dense and ChipNet pruned + fine-tuned accuracy, with the time of each phase.

    python benchmarks/pipeline_numbers.py                       # out: experiments/offline (the experiment's)
    python benchmarks/pipeline_numbers.py --out /tmp/offline --seed 0

Uses the run folders of the offline experiment (``chipnet_zoo/experiments/offline.yaml``: resnet8, the
``cpu`` recipe, 10 train / 5 prune / 8 fine-tune epochs, the same subsets): a run that is already there is
reused, a missing one (e.g. the 0.5 budget, which the experiment does not have) is run. Writes
``benchmarks/results/pipeline_numbers.json`` and prints a Markdown table. Times are each run's
``train_seconds`` on the machine that ran it.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from chipnet_zoo.experiments import Cell, ExperimentConfig, Workspace
from chipnet_zoo.runs import Run

RESULTS = Path(__file__).parent / "results"
CONFIG = Path(__file__).parents[1] / "chipnet_zoo" / "experiments" / "offline.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="experiments/offline", help="the experiment's output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["animal-mnist", "mnist5k"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.25, 0.125, 0.0625])
    args = parser.parse_args()
    cfg = ExperimentConfig.load(CONFIG)
    runs = Workspace(cfg, args.out)
    rows = []
    for dataset in args.datasets:
        dense = Run(runs.dense(dataset, args.seed)).metrics()
        rows.append({"dataset": dataset, "budget": 1.0, "test_accuracy": dense["test_accuracy"],
                     "params": dense["params"], "macs": dense["macs"], "train_seconds": dense["train_seconds"],
                     "prune_seconds": None, "pruned_hard_val_accuracy": None, "finetune_seconds": None})
        for budget in args.budgets:
            tuned = runs.run_cell(Cell("-", dataset, "chipnet-direct", budget, args.seed))
            pruned = Run(runs.prune(dataset, budget, args.seed)).metrics()
            rows.append({"dataset": dataset, "budget": budget, "test_accuracy": tuned["test_accuracy"],
                         "flops_ratio": tuned["ratios"]["flops"], "params": tuned["params"], "macs": tuned["macs"],
                         "train_seconds": dense["train_seconds"], "prune_seconds": pruned["train_seconds"],
                         "pruned_hard_val_accuracy": pruned["val_accuracy"],
                         "finetune_seconds": tuned["train_seconds"]})
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "pipeline_numbers.json"
    out.write_text(json.dumps({"config": str(CONFIG.name), "seed": args.seed, "epochs": cfg.epochs,
                               "max_samples": cfg.max_samples, "machine": platform.processor() or platform.machine(),
                               "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print("| dataset | FLOPs budget | test acc % | val acc % after pruning (hard mask) | params | MACs | "
          "dense train s | prune s | fine-tune s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        hard = "—" if r["pruned_hard_val_accuracy"] is None else f"{100 * r['pruned_hard_val_accuracy']:.1f}"
        secs = [f"{r[k]:.0f}" if r[k] is not None else "—" for k in ("train_seconds", "prune_seconds",
                                                                        "finetune_seconds")]
        print(f"| {r['dataset']} | {'dense' if r['budget'] == 1.0 else format(r['budget'], 'g')} | "
              f"{100 * r['test_accuracy']:.1f} | {hard} | {r['params']:,} | {r['macs']:,} | " + " | ".join(secs) + " |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
