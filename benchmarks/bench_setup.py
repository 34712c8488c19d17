"""Set-up cost on ResNet-50-class models at 224×224: what a user waits for before pruning starts.

    OMP_NUM_THREADS=1 python benchmarks/bench_setup.py   # -> benchmarks/results/setup.json + a table

Per model (untrained, one CPU thread), median of 3 after one warm-up:

* ``graph``: ``build_channel_graph`` (Torch-Pruning's dependency graph, channel groups, units, refusals);
* ``pruner``: ``ChipNetPruner(...)`` with ``check=False`` (graph, cost model, gates) and with the default
  ``check=True`` (plus the masked == slimmed probe on the example input);
* ``mask``: ``pruner.mask()`` (budget-exact thresholding of the gates at ``flops:0.5``);
* ``forward``: one dense forward pass, for scale.

Targets: pruner (graph + gates) under 3 s, ``.mask()`` under 0.5 s.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's chipnet_zoo
import chipnet_zoo as cz  # noqa: E402
from chipnet_zoo.groups import build_channel_graph  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "setup.json"
MODELS = ["tv/resnet50", "timm/resnet50", "tv/resnext50_32x4d", "timm/resnext50_32x4d", "tv/regnet_y_1_6gf"]


def _median(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(arch: str, size: int = 224) -> dict:
    torch.manual_seed(0)
    model = cz.create_model(arch, num_classes=1000).eval()
    x = torch.randn(1, 3, size, size)
    out: dict = {"arch": arch, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}

    def forward():
        with torch.no_grad():
            model(x)

    out["forward_s"] = _median(forward)
    out["graph_s"] = _median(lambda: build_channel_graph(model, x))

    def pruner(check: bool):
        def fn():
            cz.ChipNetPruner(model, "flops:0.5", example_input=x, check=check).remove()
        return fn

    out["pruner_s"] = _median(pruner(False))
    out["pruner_checked_s"] = _median(pruner(True))
    p = cz.ChipNetPruner(model, "flops:0.5", example_input=x, check=False)
    out["mask_s"] = _median(p.mask)
    out["granularity"] = max(g.granularity for g in p.graph.groups)
    p.remove()
    return out


def main() -> None:
    torch.set_num_threads(1)
    rows = [measure(arch) for arch in MODELS]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.machine(), "threads": 1, "rows": rows}, indent=1))
    print("| model | params (M) | unit | forward (s) | graph (s) | pruner (s) | pruner + probe (s) | .mask() (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arch']} | {r['params_m']:.1f} | {r['granularity']} | {r['forward_s']:.2f} | {r['graph_s']:.2f} | "
              f"{r['pruner_s']:.2f} | {r['pruner_checked_s']:.2f} | {r['mask_s']:.3f} |")


if __name__ == "__main__":
    main()
