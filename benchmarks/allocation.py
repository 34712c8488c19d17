"""Where the channels go: ChipNet's allocation per group under a tight budget, for variants of the phase.

For one dense resnet8 per (dataset, seed) — trained once, cached — each variant of the pruning phase is
run at each budget and reports:

- the kept channels per group (in network order), the achieved ratios;
- the hard mask's accuracy *before fine-tuning* (the phase's own weights, val and test);
- a random mask of the same budget, given the same steps on the dense weights;
- test accuracy after the same short fine-tuning from the dense weights (every method alike, last epoch).

    python benchmarks/allocation.py --budgets flops:0.125 flops:0.0625 --variants default authors uniform
    python benchmarks/allocation.py --report      # the markdown table of every result in the results file

Results append to ``benchmarks/results/allocation.jsonl`` (one line per variant × budget × dataset × seed).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import chipnet_zoo as cz
from chipnet_zoo.baselines import baseline_mask, channel_scores
from chipnet_zoo.data import load_data, make_loaders
from chipnet_zoo.evaluation import evaluate
from chipnet_zoo.pruner import distillation_loss

RESULTS = Path(__file__).parent / "results" / "allocation.jsonl"

#: Variants of the pruning phase: (constructor kwargs, fit kwargs, description).
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "default": ({}, {}, "the package defaults (since this study: a width floor of the whole budget, floor=1.0)"),
    "nofloor": ({"floor": 0.0}, {}, "the defaults before this study: no width floor"),
    "ufloor50-aware": ({"floor": 0.5}, {"floor_aware": True}, "ufloor50 with the floor-aware soft budget"),
    "ufloor75-aware": ({"floor": 0.75}, {"floor_aware": True}, "ufloor75 with the floor-aware soft budget"),
    "ufloor100-aware": ({"floor": 1.0}, {"floor_aware": True}, "ufloor100 with the floor-aware soft budget"),
    "authors": ({"group_normalize": False, "floor": 0.0}, {"harden": 0.0, "crispness_weight": 10.0},
                "the authors' phase: raw gates, no hardening, crispness weight 10"),
    "uniform": ({"floor": 0.0}, {"budget_grad_power": 0.0}, "budget gradient normalised by each channel's cost"),
    "sqrt": ({"floor": 0.0}, {"budget_grad_power": 0.5}, "budget gradient ∝ sqrt(cost)"),
    "floor": ({"min_keep": 0.25, "floor": 0.0}, {}, "every group keeps ≥ 25 % of its channels"),
    "uniform-floor": ({"min_keep": 0.25, "floor": 0.0}, {"budget_grad_power": 0.0}, "uniform + floor 25 %"),
    "floor125": ({"min_keep": 0.125, "floor": 0.0}, {}, "every group keeps ≥ 12.5 % of its channels"),
    "uniform-floor125": ({"min_keep": 0.125, "floor": 0.0}, {"budget_grad_power": 0.0}, "uniform + floor 12.5 %"),
    "long": ({"floor": 0.0}, {"epochs_factor": 4}, "a 4× longer phase"),
    "uniform-long": ({"floor": 0.0}, {"epochs_factor": 4, "budget_grad_power": 0.0}, "uniform, 4× longer phase"),
    "linear": ({"floor": 0.0}, {"soft_count": "linear"}, "the soft budget counts z itself (a half-open channel costs half)"),
    "linear-uniform": ({"floor": 0.0}, {"soft_count": "linear", "budget_grad_power": 0.0}, "linear count + uniform gradient"),
    "linear-floor": ({"min_keep": 0.25, "floor": 0.0}, {"soft_count": "linear"}, "linear count + floor 25 %"),
    "harden60": ({"floor": 0.0}, {"harden": 0.6}, "hardening over the last 60 % of the phase"),
    "sqrt-floor125": ({"min_keep": 0.125, "floor": 0.0}, {"budget_grad_power": 0.5}, "sqrt gradient + floor 12.5 %"),
    "sqrt-harden60": ({"floor": 0.0}, {"budget_grad_power": 0.5, "harden": 0.6}, "sqrt gradient + hardening 60 %"),
    "floor-harden60": ({"min_keep": 0.25, "floor": 0.0}, {"harden": 0.6}, "floor 25 % + hardening 60 %"),
    "sqrt-floor125-harden60": ({"min_keep": 0.125, "floor": 0.0}, {"budget_grad_power": 0.5, "harden": 0.6},
                               "sqrt gradient + floor 12.5 % + hardening 60 %"),
    "ufloor50": ({"floor": 0.5}, {}, "a uniform skeleton spending half the budget, the rest by score"),
    "ufloor75": ({"floor": 0.75}, {}, "a uniform skeleton spending 3/4 of the budget"),
    "ufloor100": ({"floor": 1.0}, {}, "uniform widths; ChipNet only picks the channels within each group"),
    "ufloor25": ({"floor": 0.25}, {}, "a uniform skeleton spending a quarter of the budget"),
    "sqrt-ufloor50": ({"floor": 0.5}, {"budget_grad_power": 0.5}, "sqrt gradient + uniform floor 50 %"),
    "ufloor50-harden60": ({"floor": 0.5}, {"harden": 0.6}, "uniform floor 50 % + hardening 60 %"),
    "refgrad": ({"floor": 0.0}, {"budget_grad_at": "uniform"}, "marginal costs taken at the uniformly thinned model"),
    "refgrad-ufloor50": ({"floor": 0.5}, {"budget_grad_at": "uniform"}, "refgrad + uniform floor 50 %"),
    "refgrad-sqrt": ({"floor": 0.0}, {"budget_grad_at": "uniform", "budget_grad_power": 0.5}, "refgrad, ∝ sqrt(cost)"),
    "noharden": ({"floor": 0.0}, {"harden": 0.0}, "defaults without hardening"),
    "default-long": ({}, {"epochs_factor": 4}, "the defaults with a 4× longer phase (20 epochs, as many as the authors')"),
    "default-xlong": ({}, {"epochs_factor": 89}, "the defaults with the authors' step count: 89× the phase (445 epochs "
                      "of 63 steps, ~28 k steps, as the authors' CIFAR run)"),
    "psi-l1": ({}, {"psi_init": "l1"}, "the defaults, ψ warm-started from the filters' L1 norms (rank within the group)"),
    "distill": ({}, {"distill": True}, "the defaults, distillation from the dense model in the phase and in every "
                "method's fine-tuning (weight 0.5, T 4)"),
    "wb10": ({"floor": 0.0}, {"budget_weight": 10.0}, "budget weight 10"),
}


def train(model, loader, epochs: int, lr: float, *, optimizer: str = "sgd", teacher=None) -> None:
    """SGD (momentum 0.9, wd 1e-3) with a cosine schedule, or AdamW at a constant rate (the phase's);
    with ``teacher``, the loss distils it (weight 0.5, temperature 4)."""
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    total = max(1, epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)) if optimizer == "sgd" else 1.0)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            logits = model(x)
            if teacher is None:
                loss = F.cross_entropy(logits, y)
            else:
                with torch.no_grad():
                    target = teacher(x)
                loss = distillation_loss(logits, target, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def dense_model(dataset: str, seed: int, loaders, epochs: int, cache: Path, max_samples: int | None):
    path = cache / f"dense-{dataset}-n{max_samples}-s{seed}-e{epochs}.safetensors"
    torch.manual_seed(seed)
    model = cz.create_model("resnet8", num_classes=10, in_chans=1)
    if path.is_file():
        model.load_state_dict(load_file(path))
    else:
        train(model, loaders.train, epochs, 0.05)
        cache.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return model


def warm_start_psi(pruner, scores: torch.Tensor, spread: float = 2.0) -> None:
    """ψ from an importance score: each channel's rank within its group, mapped to [−spread/2, spread/2]
    (the authors draw ψ from U(0, 0.01); ranks within a group keep the budget's cost signal untouched)."""
    psi = torch.empty_like(pruner.gates.psi)
    for group in pruner.graph.groups:
        idx = torch.arange(group.offset, group.offset + group.size)
        ranks = scores[idx].argsort().argsort().to(psi.dtype)
        psi[idx] = spread * (ranks / max(group.size - 1, 1) - 0.5)
    with torch.no_grad():
        pruner.gates.psi.copy_(psi)


def masked_accuracy(mask, model, x, loaders) -> tuple[float, float]:
    net = mask.apply(copy.deepcopy(model), x)
    return evaluate(net, loaders.val)["accuracy"], evaluate(net, loaders.test)["accuracy"]


def finetune(mask, dense, x, loaders, epochs: int, *, distill: bool = False) -> float:
    slim = mask.slim(copy.deepcopy(dense), x)
    train(slim, loaders.train, epochs, 0.02, teacher=dense.eval() if distill else None)
    return evaluate(slim, loaders.test)["accuracy"]


def run_one(variant: str, budget: str, dataset: str, seed: int, args) -> dict[str, Any]:
    data = load_data(dataset, seed=0, max_samples=args.max_samples)
    torch.manual_seed(seed)
    loaders = make_loaders(data, batch_size=64, seed=seed)
    prune_loaders = make_loaders(data, batch_size=32, seed=seed)
    x = torch.randn(1, 1, 28, 28)
    dense = dense_model(dataset, seed, loaders, args.dense_epochs, Path(args.cache), args.max_samples)
    dense_test = evaluate(dense, loaders.test)["accuracy"]
    ctor, fit, _ = VARIANTS[variant]
    fit = dict(fit)
    epochs = args.prune_epochs * int(fit.pop("epochs_factor", 1))
    psi_init, distill = fit.pop("psi_init", None), bool(fit.pop("distill", False))
    if distill:
        fit["distill_from"] = copy.deepcopy(dense).eval()
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = copy.deepcopy(dense)
    pruner = cz.ChipNetPruner(model, budget, example_input=x, **ctor)
    if psi_init is not None:
        warm_start_psi(pruner, channel_scores(model, pruner.graph, psi_init, seed=seed))
    pruner.fit(prune_loaders.train, prune_loaders.val, epochs=epochs, progress=False, **fit)
    mask = pruner.mask()
    hard_val, hard_test = evaluate(model, prune_loaders.val)["accuracy"], None
    pruner.gates.fixed = mask.keep_vector().float()
    hard_test = evaluate(model, prune_loaders.test)["accuracy"]
    pruner.gates.fixed = None
    pruner.remove()
    phase_seconds = time.perf_counter() - start
    # a random mask of the same budget (and the same floor), given the same steps on the dense weights
    rnd = baseline_mask(copy.deepcopy(dense), budget, "random", example_input=x, seed=seed,
                        min_keep=ctor.get("min_keep", 0.0), floor=ctor.get("floor", 0.0))
    rnd_model = rnd.apply(copy.deepcopy(dense), x)
    torch.manual_seed(seed)
    train(rnd_model, prune_loaders.train, epochs, 1e-3, optimizer="adamw")
    rnd_val, rnd_test = evaluate(rnd_model, loaders.val)["accuracy"], evaluate(rnd_model, loaders.test)["accuracy"]
    row = {
        # a plain random mask (no floor) fine-tuned as in every other row: the reference of the paired column
        "random_plain": not ctor.get("floor", 0.0) and not ctor.get("min_keep", 0.0) and not distill,
        "distill": distill,
        "variant": variant, "budget": budget, "dataset": dataset, "seed": seed, "max_samples": args.max_samples,
        "dense_epochs": args.dense_epochs, "prune_epochs": epochs, "finetune_epochs": args.finetune_epochs,
        "steps": epochs * len(prune_loaders.train), "dense_test": dense_test,
        "kept": list(mask.kept().values()), "groups": list(mask.kept()),
        "sizes": [n for _, n in mask.structure], "ratios": mask.ratios,
        "hard_val": hard_val, "hard_test": hard_test, "phase_seconds": phase_seconds,
        "random_kept": list(rnd.kept().values()), "random_same_steps_val": rnd_val,
        "random_same_steps_test": rnd_test,
    }
    if args.finetune_epochs:
        torch.manual_seed(seed)
        row["chipnet_ft_test"] = finetune(mask, dense, x, loaders, args.finetune_epochs, distill=distill)
        torch.manual_seed(seed)
        row["random_ft_test"] = finetune(rnd, dense, x, loaders, args.finetune_epochs, distill=distill)
    return row


def network_order(row: dict[str, Any]) -> list[int]:
    """Kept channels listed in network order (by the first layer of each group's name)."""
    order = {"conv1": 0, "layer1.0.conv1": 1, "layer2.0.shortcut.0": 2, "layer2.0.conv1": 3,
             "layer3.0.shortcut.0": 4, "layer3.0.conv1": 5}
    pairs = sorted(zip(row["groups"], row["kept"]), key=lambda p: order.get(p[0], 99))
    return [k for _, k in pairs]


def report(rows: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds per (dataset, budget, variant); allocation of the lowest seed; the paired
    difference to the plain random mask (no floor) of the same seed after the same fine-tuning."""
    from chipnet_zoo.experiments.report import paired_interval

    def key(r):
        return r["dataset"], r["budget"], r["variant"], r["prune_epochs"]

    def plain_random(r) -> bool:  # rows whose random mask had no floor
        return bool(r.get("random_plain"))

    runs: dict[tuple[str, str, int], list[float]] = {}
    for r in rows:  # every fine-tuned plain random mask of a (dataset, budget, seed); averaged (FT noise)
        if plain_random(r) and "random_ft_test" in r:
            runs.setdefault((r["dataset"], r["budget"], r["seed"]), []).append(r["random_ft_test"])
    plain = {k: statistics.mean(v) for k, v in runs.items()}
    def order(k):  # dataset; FLOPs budgets first, then the other kinds, each from loose to tight; variant
        budget = cz.Budget.parse(k[1])
        return (k[0], budget.kind != "flops", budget.kind, -budget.value,
                list(VARIANTS).index(k[2]) if k[2] in VARIANTS else 99, k[3])

    keys = sorted({key(r) for r in rows}, key=order)
    out = ["| dataset | budget | variant | seeds | kept per group (first seed) | before FT: ChipNet hard mask | "
           "before FT: random mask, same steps¹ | after FT: ChipNet | after FT: random¹ | "
           "after FT: ChipNet − plain random (paired, 95 % CI) |",
           "|---|---|---|---|---|---|---|---|---|---|"]

    def ms(values: list[float]) -> str:
        values = [100 * v for v in values]
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

    for k in keys:
        group = sorted((r for r in rows if key(r) == k), key=lambda r: r["seed"])
        group = list({r["seed"]: r for r in group}.values())  # the latest row of each seed
        ft = [r for r in group if "chipnet_ft_test" in r]
        # distillation changes every method's fine-tuning: those rows are paired with their own random mask
        diffs = [r["chipnet_ft_test"] - (r["random_ft_test"] if r.get("distill")
                                         else plain[(r["dataset"], r["budget"], r["seed"])]) for r in ft
                 if r.get("distill") or (r["dataset"], r["budget"], r["seed"]) in plain]
        if len(diffs) > 1:
            mean, low, high = paired_interval(diffs)
            paired = f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] (n={len(diffs)})"
        else:
            paired = f"{100 * diffs[0]:+.1f} (n=1)" if diffs else "–"
        label = k[2] + (f" ({k[3]} ep)" if "long" in k[2] else "")
        out.append(f"| {k[0]} | {k[1]} | {label} | {len(group)} | {', '.join(map(str, network_order(group[0])))} | "
                   f"{ms([r['hard_test'] for r in group])} | {ms([r['random_same_steps_test'] for r in group])} | "
                   f"{ms([r['chipnet_ft_test'] for r in ft]) if ft else '–'} | "
                   f"{ms([r['random_ft_test'] for r in ft]) if ft else '–'} | {paired} |")
    out.append("")
    out.append("¹ with the same width floor as ChipNet's mask, except in the `nofloor`-like rows (no floor) and the "
               "`ufloor100-aware`, `psi-l1`, `distill`, `default-long` and `default-xlong` rows, whose random mask had no floor. The paired "
               "column compares with a plain random mask (no floor) of the same seed, averaged over the fine-tuning "
               "runs of that mask; the `distill` rows with their own random mask, fine-tuned with distillation too.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["mnist5k"])
    parser.add_argument("--budgets", nargs="+", default=["flops:0.125"])
    parser.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--dense-epochs", type=int, default=30)
    parser.add_argument("--prune-epochs", type=int, default=5)
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "chipnet-zoo-bench"))
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--report", action="store_true", help="print the table of the results file and stop")
    args = parser.parse_args()
    results = Path(args.results)
    if args.report:
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        print(report(rows))
        return
    torch.set_num_threads(args.threads)
    results.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        for seed in args.seeds:
            for budget in args.budgets:
                for variant in args.variants:
                    try:
                        row = run_one(variant, budget, dataset, seed, args)
                    except cz.UnreachableBudgetError as exc:
                        print(f"{dataset} s{seed} {budget} {variant}: skipped ({exc})", flush=True)
                        continue
                    with results.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(f"{dataset} s{seed} {budget} {variant}: kept {network_order(row)} "
                          f"hard {row['hard_test']:.3f} random-same-steps {row['random_same_steps_test']:.3f} "
                          f"ft {row.get('chipnet_ft_test', float('nan')):.3f} vs {row.get('random_ft_test', float('nan')):.3f}"
                          f" ({row['phase_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
