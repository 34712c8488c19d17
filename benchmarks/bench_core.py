"""Core benchmarks (docs/benchmarks.md): gate overhead, slimmed speed-up, pruner set-up time.

    python benchmarks/bench_core.py            # writes benchmarks/results/core.json and prints a table

Every number is a ratio against a baseline measured in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import chipnet_zoo as cz
from chipnet_zoo.gates import crispness_loss, soft_keep

RESULTS = Path(__file__).parent / "results"


def _median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_overhead(arch: str, batch: int, repeats: int) -> dict:
    """One pruning-phase step (gated forward, CE + budget + crispness, AdamW) / one plain training step."""
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    plain = cz.create_model(arch, num_classes=10)
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-3)

    def plain_step():
        loss = F.cross_entropy(plain(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    gated = cz.create_model(arch, num_classes=10)
    pruner = cz.ChipNetPruner(gated, "flops:0.25", example_input=x[:1])
    gates = pruner.gates
    opt2 = torch.optim.AdamW([{"params": [p for p in gated.parameters() if p is not gates.psi]},
                              {"params": [gates.psi], "weight_decay": 0.0}], lr=1e-3)

    def gated_step():
        ce = F.cross_entropy(gated(x), y)
        z, zt = gates.last_z, gates.last_z_tilde  # as in ChipNetPruner.fit: cost on z, crispness on raw z
        loss = ce + 30 * (pruner.cost.ratio("flops", soft_keep(z, gates.steepness)) - 0.25) ** 2 \
            + 10 * crispness_loss(gates.last_z_raw, zt)
        opt2.zero_grad()
        loss.backward()
        opt2.step()

    # interleave the two so that drift of the machine affects both alike
    t_plain, t_gated = [], []
    for _ in range(repeats):
        t_plain.append(_median_time(plain_step, 3, warmup=1))
        t_gated.append(_median_time(gated_step, 3, warmup=1))
    p, g = statistics.median(t_plain), statistics.median(t_gated)
    return {"arch": arch, "batch": batch, "plain_step_s": p, "pruning_step_s": g, "ratio": g / p}


def slim_speedup(arch: str, budgets: list[float], batch: int, repeats: int, round_to: int = 1) -> list[dict]:
    """CPU inference latency of the slimmed model vs the dense one at FLOPs budgets (random-score masks;
    ``round_to``: channel counts in multiples of it)."""
    torch.manual_seed(0)
    dense = cz.create_model(arch, num_classes=10).eval()
    x = torch.randn(batch, 3, 32, 32)
    rows = []
    for b in budgets:
        pruner = cz.ChipNetPruner(dense, f"flops:{b}", example_input=x[:1], round_to=round_to)
        with torch.no_grad():
            pruner.gates.psi.copy_(torch.randn_like(pruner.gates.psi))
        mask = pruner.mask()
        pruner.remove()
        slim = mask.slim(dense).eval()
        with torch.inference_mode():
            t_dense = _median_time(lambda m=dense: m(x), repeats)
            t_slim = _median_time(lambda m=slim: m(x), repeats)
        ideal = 1 / mask.ratios["flops"]
        rows.append({"arch": arch, "round_to": round_to, "budget": b, "flops_ratio": mask.ratios["flops"], "dense_ms": 1e3 * t_dense,
                     "slim_ms": 1e3 * t_slim, "speedup": t_dense / t_slim, "ideal": ideal,
                     "fraction_of_ideal": (t_dense / t_slim) / ideal})
    return rows


def setup_times(arch: str = "tv/resnet50", size: int = 224) -> dict:
    model = cz.create_model(arch, num_classes=1000)
    x = torch.randn(1, 3, size, size)
    start = time.perf_counter()
    pruner = cz.ChipNetPruner(model, "flops:0.25", example_input=x)
    construct = time.perf_counter() - start
    mask_s = _median_time(pruner.mask, 5, warmup=1)
    with torch.inference_mode():
        forward_s = _median_time(lambda: model(x), 3, warmup=1)
    return {"arch": arch, "input": size, "construct_s": construct, "mask_s": mask_s,
            "dense_forward_s_for_scale": forward_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, one architecture")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    archs = ["resnet56"] if args.quick else ["resnet56", "wrn-16-4"]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}",
        "step_overhead": [step_overhead(a, 32, repeats) for a in archs],
        "slim_speedup": [r for a in archs for rt in (1, 8) for r in slim_speedup(a, [0.5, 0.25, 0.125], 64, repeats, rt)],
        "setup": setup_times(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps(result, indent=2))
    print(f"machine: {result['machine']}")
    print("\npruning-phase step / plain step (batch 32, target <= 1.15)")
    for r in result["step_overhead"]:
        print(f"  {r['arch']:<10} plain {1e3 * r['plain_step_s']:.1f} ms  pruning {1e3 * r['pruning_step_s']:.1f} ms"
              f"  ratio {r['ratio']:.3f}")
    print("\nslimmed vs dense CPU inference (batch 64; target >= 0.75 x ideal at 25 %)")
    for r in result["slim_speedup"]:
        print(f"  {r['arch']:<10} round_to {r['round_to']}  flops {r['flops_ratio']:.4f}  dense {r['dense_ms']:.1f} ms  slim {r['slim_ms']:.1f} ms"
              f"  speed-up {r['speedup']:.2f}x  ideal {r['ideal']:.2f}x  ({r['fraction_of_ideal']:.2f} of ideal)")
    s = result["setup"]
    print(f"\n{s['arch']} @ {s['input']}px: ChipNetPruner(...) {s['construct_s']:.2f} s (target < 3 s), "
          f".mask() {s['mask_s'] * 1e3:.0f} ms (target < 500 ms)")


if __name__ == "__main__":
    main()
