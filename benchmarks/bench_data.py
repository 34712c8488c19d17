"""Data-loading benchmark (issue 3): is the loader ever the bottleneck of training?

    python benchmarks/bench_data.py                 # writes benchmarks/results/data.json, prints a table
    python benchmarks/bench_data.py --quick         # fewer batches

For each source it measures ``load_data`` time, the samples/s of the training DataLoader alone (with
augmentation, one pass) and the samples/s of a full SGD training step of a small ResNet on batches of the
same shape. ``loader/step`` > 1 means the loader outruns training.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from chipnet_zoo.data import load_data, make_loaders

RESULTS = Path(__file__).parent / "results"


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.short(x))


def _fallback_resnet(in_chans: int, num_classes: int, n: int = 3) -> nn.Module:
    """ResNet-20 (CIFAR style: 3 stages x 3 basic blocks, 16/32/64 channels)."""
    layers: list[nn.Module] = [nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for i, c in enumerate((16, 32, 64)):
        for j in range(n):
            layers.append(_Block(cin, c, 2 if (i > 0 and j == 0) else 1))
            cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def _model(arch: str, in_chans: int, num_classes: int) -> tuple[nn.Module, str]:
    try:
        import chipnet_zoo as cz

        return cz.create_model(arch, num_classes=num_classes, in_chans=in_chans), f"chipnet_zoo {arch}"
    except Exception:  # noqa: BLE001 - the model zoo may not be there yet
        return _fallback_resnet(in_chans, num_classes), "resnet20 (benchmark's own definition)"


def loader_rate(loader, max_batches: int) -> float:
    it = iter(loader)
    next(it)  # start-up (workers) is not throughput
    n, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(it):
        n += len(x)
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - start)


def step_rate(model: nn.Module, shape: tuple[int, ...], num_classes: int, batch: int, steps: int,
              device: str = "cpu") -> float:
    """Samples/s of an SGD step (on CUDA: bf16 autocast + channels_last, as the trainer runs it)."""
    cuda = device.startswith("cuda")
    x, y = torch.randn(batch, *shape, device=device), torch.randint(0, num_classes, (batch,), device=device)
    model = model.to(device)
    if cuda:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    times = []
    for i in range(steps + 3):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def _synthetic_cifar(root: Path, n: int) -> Path:
    """A CIFAR-shaped save_to_disk dataset (PNG-encoded 32x32 RGB, 10 classes) to time the ``datasets`` path."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    imgs = [PILImage.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
    ds = Dataset.from_dict({"img": imgs, "label": [i % 10 for i in range(n)]},
                           features=Features({"img": Image(), "label": ClassLabel(num_classes=10)}))
    ds.save_to_disk(str(root / "synthetic-cifar"))
    return root / "synthetic-cifar"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", help="where the training step runs (cpu, cuda)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers to try")
    ap.add_argument("--out", type=Path, default=RESULTS / "data.json")
    args = ap.parse_args()
    max_batches, steps = (8, 3) if args.quick else (1000, 8)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    synth = _synthetic_cifar(tmp, 2000 if args.quick else 6000)
    sources = [  # (label, source, load_data kwargs)
        ("mnist5k", "mnist5k", {}),
        ("animal-mnist", "animal-mnist", {}),
        ("cifar-shaped (datasets, in memory)", str(synth), {}),
        ("cifar-shaped (datasets, lazy decode)", str(synth), {"in_memory": False}),
    ]
    cases = [(label, src, kw, w) for label, src, kw in sources for w in args.workers]
    rows, step_cache = [], {}
    for label, src, kw, workers in cases:
        t = time.perf_counter()
        b = load_data(src, seed=0, **kw)
        setup = time.perf_counter() - t
        loaders = make_loaders(b, args.batch_size, num_workers=workers, seed=0)
        lrate = loader_rate(loaders.train, max_batches)
        key = (b.input_size, b.num_classes)
        if key not in step_cache:
            model, model_name = _model(args.arch, b.in_chans, b.num_classes)
            rate = step_rate(model, b.input_size, b.num_classes, args.batch_size, steps, args.device)
            step_cache[key] = (rate, model_name)
        srate, model_name = step_cache[key]
        rows.append({"dataset": label, "input_size": list(b.input_size), "train_size": len(b.train),
                     "num_workers": workers, "load_data_s": round(setup, 3), "loader_samples_per_s": round(lrate, 1),
                     "train_step_samples_per_s": round(srate, 1), "loader_over_step": round(lrate / srate, 2),
                     "model": model_name})
    result = {"batch_size": args.batch_size, "step_device": args.device, "torch_threads": torch.get_num_threads(), "rows": rows,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "cpus": torch.get_num_threads()},
              "quick": args.quick}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    head = f"{'dataset':38s} {'workers':>7s} {'load s':>7s} {'loader/s':>10s} {'step/s':>9s} {'ratio':>6s}"
    print(f"batch {args.batch_size}, model {rows[0]['model']}, step on {args.device}, "
          f"{torch.get_num_threads()} torch threads")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['dataset']:38s} {r['num_workers']:7d} {r['load_data_s']:7.2f} {r['loader_samples_per_s']:10.0f} "
              f"{r['train_step_samples_per_s']:9.0f} {r['loader_over_step']:6.1f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
