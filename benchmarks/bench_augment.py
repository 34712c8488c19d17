"""The training augmentation: torchvision v2 against chipnet-zoo's ``PadCropFlip``, and what it costs an epoch.

    python benchmarks/bench_augment.py            # writes benchmarks/results/augment.json, prints a table

Both pipelines draw the same random numbers and return the same tensors (tests/test_data.py); this measures
the DataLoader's samples/s with each (one worker-less pass after its first batch, batch 64, one thread,
interleaved repeats, median; ``bench_data.loader_rate``), and the samples/s of a training step of resnet8 dense and of resnet8 slimmed to FLOPs 0.03125 (a
random mask), to show the loader's share of a training epoch with each pipeline.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_data import loader_rate, step_rate  # noqa: E402  (the data benchmark's two timers)

import chipnet_zoo as cz  # noqa: E402
from chipnet_zoo.baselines import baseline_mask  # noqa: E402
from chipnet_zoo.data import Normalize255, TensorImageDataset, build_transforms, load_data  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STEPS = 20  # timed training steps per model (median)


def torchvision_pipeline(shape: tuple[int, ...], pad: int, hflip: bool, norm: Normalize255):
    """The pipeline chipnet-zoo used before ``PadCropFlip``."""
    from torchvision.transforms import v2

    aug = ([v2.RandomCrop(list(shape[1:]), padding=pad)] if pad else []) + ([v2.RandomHorizontalFlip()] if hflip else [])
    return v2.Compose([*aug, norm])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "augment.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mnist = load_data("mnist5k", seed=0)
    rng = np.random.default_rng(0)
    rgb_shape = (3, 32, 32)
    rgb = TensorImageDataset(torch.from_numpy(rng.integers(0, 256, (3500, *rgb_shape), dtype=np.uint8)),
                             torch.from_numpy(rng.integers(0, 10, 3500)), np.arange(3500))
    rgb_norm = Normalize255((0.5,) * 3, (0.25,) * 3)
    cases = [  # (label, dataset, input shape, ours, torchvision's)
        ("mnist5k (1×28×28, pad 2)", mnist.train, mnist.input_size, mnist.train_transform,
         torchvision_pipeline(mnist.input_size, 2, False, mnist.eval_transform)),
        ("CIFAR-shaped (3×32×32, pad 4, flip)", rgb, rgb_shape,
         build_transforms(rgb_shape, rgb_norm.mean, rgb_norm.std, augment=True, hflip=True, pad=4)[0],
         torchvision_pipeline(rgb_shape, 4, True, rgb_norm)),
    ]
    dense = cz.create_model("resnet8", num_classes=10, in_chans=1)
    x = torch.randn(1, 1, 28, 28)
    slim = baseline_mask(dense, "flops:0.03125", "random", example_input=x).slim(copy.deepcopy(dense), x)
    steps = {name: step_rate(model, mnist.input_size, 10, args.batch_size, STEPS)
             for name, model in (("resnet8 dense", dense), ("resnet8 FLOPs 0.03125 (slim)", slim))}
    rows = []
    for label, dataset, shape, ours, theirs in cases:
        rates: dict[str, list[float]] = {"torchvision v2": [], "PadCropFlip": []}
        for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
            for name, transform in (("torchvision v2", theirs), ("PadCropFlip", ours)):
                loader = torch.utils.data.DataLoader(dataset.with_transform(transform), batch_size=args.batch_size,
                                                     shuffle=True)
                rates[name].append(loader_rate(loader, max_batches=len(loader)))
        tv, pcf = statistics.median(rates["torchvision v2"]), statistics.median(rates["PadCropFlip"])
        row = {"data": label, "loader_samples_per_s": {"torchvision v2": round(tv, 1), "PadCropFlip": round(pcf, 1)},
               "speedup": round(pcf / tv, 2), "loader_share_of_epoch": {}}
        if shape == tuple(mnist.input_size):
            for model, srate in steps.items():  # the loader's share of (loading + training) one sample
                row["loader_share_of_epoch"][model] = {
                    name: round((1 / rate) / (1 / rate + 1 / srate), 3) for name, rate in (("torchvision v2", tv),
                                                                                            ("PadCropFlip", pcf))}
        rows.append(row)
    result = {"batch_size": args.batch_size, "torch_threads": 1, "repeats": args.repeats,
              "train_step_samples_per_s": {k: round(v, 1) for k, v in steps.items()}, "rows": rows,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| data | loader samples/s, torchvision v2 | loader samples/s, PadCropFlip | speed-up | "
          "loader share of a resnet8 epoch, dense (v2 → ours) | same, FLOPs 0.03125 slim (v2 → ours) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        share = r["loader_share_of_epoch"]
        cols = [f"{100 * s['torchvision v2']:.0f} % → {100 * s['PadCropFlip']:.0f} %" for s in share.values()] or ["–", "–"]
        print(f"| {r['data']} | {r['loader_samples_per_s']['torchvision v2']:,.0f} | "
              f"{r['loader_samples_per_s']['PadCropFlip']:,.0f} | {r['speedup']:.1f}× | {' | '.join(cols)} |")
    print(f"train step samples/s (batch {args.batch_size}, 1 thread): {result['train_step_samples_per_s']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
