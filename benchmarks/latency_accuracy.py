"""Accuracy at the same measured latency: a latency budget against a FLOPs budget and Torch-Pruning's uniform
pruning, each slimmed to the same measured speed and fine-tuned alike on the offline data (docs/latency.md).

For every seed and latency target ``L`` (resnet8 on mnist5k, the dense model of ``benchmarks/allocation.py``):

1. ``latency``: L1 channel scores thresholded at ``latency:L`` against this machine's table (width floor 1, as
   the pruner's default); its slimmed model's **measured** latency ratio ``m`` (slim / dense, medians of
   interleaved runs at the table's batch size) is the speed every method must reach;
2. ``flops``: the same L1 scores at the largest FLOPs budget whose slimmed model measures ``<= m``
   (bisection on the budget, each step measured);
3. ``tp-uniform``: Torch-Pruning's ``MagnitudePruner`` (L1, the same ratio in every layer, the classifier
   kept) at the largest ratio of kept channels whose model measures ``<= m`` (bisection);
4. ``latency-auto``: as 1 with ``round_to="auto"`` (the widths this machine runs fast).

All are fine-tuned from the same dense weights with the same schedule (SGD, cosine, ``--ft-epochs``), then
the four models are timed once more together (interleaved) and their test accuracy is read.

    python benchmarks/latency_accuracy.py                      # seeds 0 1 2, targets 0.5 0.3, batch 64
    python benchmarks/latency_accuracy.py --seeds 0 --targets 0.5 --ft-epochs 1 --max-samples 300   # smoke

Writes ``benchmarks/results/latency_accuracy.{jsonl,md}``. Timings need an idle machine.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from allocation import dense_model, train  # noqa: E402  (the same dense models and training loop)

from chipnet_zoo.baselines import baseline_mask  # noqa: E402
from chipnet_zoo.cost import measure_params_macs  # noqa: E402
from chipnet_zoo.data import load_data, make_loaders  # noqa: E402
from chipnet_zoo.evaluation import evaluate  # noqa: E402
from chipnet_zoo.latency import build_latency_table, interleaved_medians, machine_key  # noqa: E402

RESULTS = Path(__file__).parent / "results"
METHODS = ("latency", "latency-auto", "flops", "tp-uniform")


def measured_ratio(dense: nn.Module, model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """slim / dense latency, medians of interleaved runs."""
    dense_ms, ms = interleaved_medians([partial(dense.eval(), x), partial(model.eval(), x)], x.device, repeats=repeats)
    return ms / dense_ms


def bisect(make: Callable[[float], nn.Module], dense: nn.Module, x: torch.Tensor, target: float, repeats: int,
           steps: int) -> tuple[float, nn.Module, float]:
    """The largest knob in (0, 1] whose model measures ``<= target`` (bisection; measured each step)."""
    lo, hi, best = 0.0, 1.0, None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        try:
            model = make(mid)
        except ValueError:  # e.g. an unreachable budget
            lo = mid
            continue
        ratio = measured_ratio(dense, model, x, repeats)
        if ratio <= target:
            lo, best = mid, (mid, model, ratio)
        else:
            hi = mid
    if best is None:
        raise RuntimeError(f"nothing in the bisection measured <= {target:.3f}")
    return best


def tp_uniform(dense: nn.Module, x: torch.Tensor, keep: float) -> nn.Module:
    """Torch-Pruning's magnitude (L1) pruner, the same ratio in every layer, the classifier kept."""
    import torch_pruning as tp

    model = copy.deepcopy(dense).eval()
    pruner = tp.pruner.MagnitudePruner(model, x[:1], importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=1.0 - keep, ignored_layers=[model.fc], global_pruning=False)
    pruner.step()
    return model


def run_seed(seed: int, args) -> list[dict[str, Any]]:
    data = load_data("mnist5k", seed=0, max_samples=args.max_samples)
    torch.manual_seed(seed)
    loaders = make_loaders(data, batch_size=64, seed=seed)
    dense = dense_model("mnist5k", seed, loaders, args.dense_epochs, Path(args.cache), args.max_samples).eval()
    x = torch.randn(args.batch, 1, 28, 28)
    table = build_latency_table(dense, x, progress=False)
    dense_macs = measure_params_macs(dense, x[:1])[1]
    rows = []
    for target in args.targets:
        models: dict[str, tuple[nn.Module, str]] = {}
        for method, round_to in (("latency", 1), ("latency-auto", "auto")):
            mask = baseline_mask(copy.deepcopy(dense), f"latency:{target}", "l1", example_input=x, floor=1.0,
                                 latency_table=table, round_to=round_to)
            models[method] = (mask.slim(copy.deepcopy(dense), x[:1]), f"latency:{target}")
        speed = measured_ratio(dense, models["latency"][0], x, args.repeats)

        def flops_model(f: float) -> nn.Module:
            mask = baseline_mask(copy.deepcopy(dense), f"flops:{f:.4f}", "l1", example_input=x[:1], floor=1.0)
            return mask.slim(copy.deepcopy(dense), x[:1])

        f, model, _ = bisect(flops_model, dense, x, speed, args.repeats, args.steps)
        models["flops"] = (model, f"flops:{f:.4f}")
        keep, model, _ = bisect(partial(tp_uniform, dense, x), dense, x, speed, args.repeats, args.steps)
        models["tp-uniform"] = (model, f"keep {keep:.3f} per layer")
        for method in METHODS:
            model, setting = models[method]
            torch.manual_seed(seed)
            train(model, loaders.train, args.ft_epochs, 0.02)
            models[method] = (model.eval(), setting)
        times = interleaved_medians([partial(dense, x)] + [partial(models[m][0], x) for m in METHODS], x.device,
                                    repeats=args.repeats)
        for method, ms in zip(METHODS, times[1:]):
            model, setting = models[method]
            params, macs = measure_params_macs(model, x[:1])
            rows.append({"seed": seed, "target": target, "batch": args.batch, "method": method, "setting": setting,
                         "measured": ms / times[0], "reference": speed, "flops": macs / dense_macs,
                         "params": params, "test_accuracy": evaluate(model, loaders.test)["accuracy"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], args) -> str:
    key = machine_key("cpu")
    lines = [
        "# Accuracy at the same measured latency",
        "",
        f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; `{key['device']}`, {key['threads']} threads, "
        f"torch {key['torch_version']}; resnet8 on mnist5k ({args.max_samples} training images), dense "
        f"{args.dense_epochs} epochs, batch {args.batch} for latency, fine-tuning {args.ft_epochs} epochs; "
        f"seeds {' '.join(map(str, args.seeds))}. `measured` = latency / dense latency after fine-tuning (medians "
        f"of {args.repeats} interleaved runs); `flops` and `tp-uniform` were matched (bisection) to the `latency` "
        "model's measured ratio before fine-tuning. Paired: each method minus `latency` on the same seed.",
        "",
        "| target | method | setting (seed 0) | measured (mean) | flops ratio (mean) | test % (mean ± std) "
        "| − latency (paired mean, min..max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for target in args.targets:
        base = {r["seed"]: r["test_accuracy"] for r in rows if r["target"] == target and r["method"] == "latency"}
        for method in METHODS:
            sel = [r for r in rows if r["target"] == target and r["method"] == method]
            if not sel:
                continue
            acc = [100 * r["test_accuracy"] for r in sel]
            diff = [100 * (r["test_accuracy"] - base[r["seed"]]) for r in sel if r["seed"] in base]
            std = statistics.stdev(acc) if len(acc) > 1 else 0.0
            lines.append(
                f"| {target:g} | {method} | {sel[0]['setting']} | {statistics.mean(r['measured'] for r in sel):.3f} "
                f"| {statistics.mean(r['flops'] for r in sel):.3f} | {statistics.mean(acc):.1f} ± {std:.1f} (n={len(acc)}) "
                f"| {statistics.mean(diff):+.1f} ({min(diff):+.1f}..{max(diff):+.1f}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.3])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-samples", type=int, default=2000)
    parser.add_argument("--dense-epochs", type=int, default=30)
    parser.add_argument("--ft-epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--steps", type=int, default=7, help="bisection steps of the FLOPs and TP matching")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "chipnet-zoo-bench"))
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_accuracy")
    args = parser.parse_args()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = markdown(rows, args)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
