"""GPU check (run by hand on a CUDA machine, never by CI): the CUDA path of every phase, and the
throughput of dense vs slimmed models.

    bash benchmarks/gpu_check.sh                 # writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --allow-cpu --quick   # dry run of this script's logic on a CPU

1. The CLI chain ``train -> prune -> finetune -> eval`` on a small offline dataset with ``--device cuda``:
   each phase runs a few steps through accelerate with bf16 autocast and channels_last (checked in the
   run's config), and its time is recorded.
2. Throughput (images/s) of dense vs slimmed models at a 25 % FLOPs mask: inference (bf16 autocast,
   channels_last) and one training step (forward + backward + SGD), each the median of timed repeats.
3. Latency budgets on the device (bf16, channels_last): the latency table and the predicted vs measured
   latency ratio of slimmed models (``benchmarks/latency_validation.py``'s check).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import chipnet_zoo as cz
from chipnet_zoo.cli import main as cli

RESULTS = Path(__file__).parent / "results"


def phases(dataset: str, arch: str, max_samples: int, device: str, workdir: Path) -> dict:
    """The CLI chain on ``device``; returns per-phase seconds and key metrics."""
    out: dict = {}
    common = ["--dataset", dataset, "--max-samples", str(max_samples), "--recipe", "tiny", "--epochs", "1",
              "--device", device, "--no-progress"]
    runs = {k: workdir / k for k in ("train", "prune", "finetune")}
    steps = [
        ("train", ["train", "--arch", arch, *common, "--out", str(runs["train"])]),
        ("prune", ["prune", "--from", str(runs["train"]), "--budget", "flops:0.25", "--epochs", "1", "--device",
                   device, "--no-progress", "--out", str(runs["prune"])]),
        ("finetune", ["finetune", "--from", str(runs["prune"]), "--epochs", "1", "--device", device,
                      "--no-progress", "--out", str(runs["finetune"])]),
        ("eval", ["eval", "--from", str(runs["finetune"]), "--device", device, "--latency-repeats", "5"]),
    ]
    for name, argv in steps:
        start = time.perf_counter()
        rc = cli(argv)
        seconds = time.perf_counter() - start
        if rc != 0:
            raise SystemExit(f"{name} failed with exit code {rc}")
        out[name] = {"seconds": round(seconds, 2)}
        if name != "eval":
            config = json.loads((runs[name] / "config.json").read_text())
            metrics = json.loads((runs[name] / "metrics.json").read_text())
            out[name].update({"accelerate": config["accelerate"], "val_accuracy": metrics["val_accuracy"],
                              "params": metrics["params"], "macs": metrics["macs"],
                              "train_seconds": metrics.get("train_seconds")})
            if device == "cuda":
                acc = config["accelerate"]
                assert acc["device"].startswith("cuda"), acc
                assert acc["mixed_precision"] == "bf16" and acc["channels_last"], acc
    mask = cz.Mask.load(runs["prune"] / "mask.safetensors")
    out["prune"]["ratios"] = mask.ratios
    assert mask.ratios["flops"] <= 0.25
    return out


def _median_s(fn, repeats: int, warmup: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(model: torch.nn.Module, input_size, batch: int, device: torch.device, repeats: int) -> dict:
    """Images/s of inference and of a training step (bf16 autocast + channels_last on CUDA)."""
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)
    x = torch.randn(batch, *input_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    @torch.no_grad()
    def infer():
        with autocast:
            model(x)

    def train_step():
        with autocast:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.eval()
    t_inf = _median_s(infer, repeats, 3, device)
    model.train()
    t_train = _median_s(train_step, repeats, 3, device)
    return {"infer_images_per_s": round(batch / t_inf, 1), "train_images_per_s": round(batch / t_train, 1)}


def dense_vs_slim(arch: str, input_size, batch: int, budget: str, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    dense = cz.create_model(arch, num_classes=10, in_chans=input_size[0])
    x = torch.randn(1, *input_size)
    mask = cz.ChipNetPruner(dense, budget, example_input=x).mask()  # thresholded initial gates: speed only
    dense = cz.create_model(arch, num_classes=10, in_chans=input_size[0])
    slim = mask.slim(dense, x)
    row = {"arch": arch, "input_size": list(input_size), "batch": batch, "budget": budget, "ratios": mask.ratios,
           "dense": throughput(dense, input_size, batch, device, repeats),
           "slim": throughput(slim, input_size, batch, device, repeats)}
    for kind in ("infer_images_per_s", "train_images_per_s"):
        row[f"speedup_{kind.split('_')[0]}"] = round(row["slim"][kind] / row["dense"][kind], 2)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(RESULTS), help="folder for gpu_check.json")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--max-samples", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="tiny sizes (for a dry run of the script)")
    p.add_argument("--allow-cpu", action="store_true", help="run on CPU when there is no GPU (dry run)")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("no CUDA device; this check is for a GPU machine (use --allow-cpu for a dry run)", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    report: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "chipnet_zoo": cz.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with tempfile.TemporaryDirectory(prefix="chipnet-gpu-check-") as tmp:
        report["phases"] = phases(args.dataset, args.arch, 256 if args.quick else args.max_samples,
                                  "cuda" if cuda else "cpu", Path(tmp))
    cases = [("resnet20", (3, 32, 32), 256), ("resnet56", (3, 32, 32), 256), ("wrn-16-4", (3, 32, 32), 256),
             ("tv/resnet50", (3, 224, 224), 64)]
    if args.quick:
        cases = [("resnet8", (3, 32, 32), 16)]
    repeats = 3 if args.quick else args.repeats
    report["throughput"] = [dense_vs_slim(a, s, b, "flops:0.25", device, repeats) for a, s, b in cases]
    sys.path.insert(0, str(Path(__file__).parent))
    from latency_validation import validate

    lat_cases = [("resnet8", 16)] if args.quick else [("resnet56", 1), ("resnet56", 64), ("wrn-16-4", 64),
                                                     ("tv/resnet18", 64)]
    report["latency"] = [row for arch, batch in lat_cases
                         for row in validate(arch, batch, [0.5] if args.quick else [0.5, 0.3], repeats, progress=False,
                                             device=device.type, dtype=torch.bfloat16 if cuda else torch.float32,
                                             channels_last=cuda, round_tos=(1, "auto"))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'arch':<12} {'batch':>5} {'dense inf/s':>12} {'slim inf/s':>11} {'x':>5} {'dense trn/s':>12} "
          f"{'slim trn/s':>11} {'x':>5}")
    for r in report["throughput"]:
        d, s = r["dense"], r["slim"]
        print(f"{r['arch']:<12} {r['batch']:>5} {d['infer_images_per_s']:>12} {s['infer_images_per_s']:>11} "
              f"{r['speedup_infer']:>5} {d['train_images_per_s']:>12} {s['train_images_per_s']:>11} "
              f"{r['speedup_train']:>5}")
    for r in report["latency"]:
        print(f"latency {r['arch']} batch {r['batch']} budget {r['budget']} round_to {r['round_to']}: predicted "
              f"{r.get('predicted', float('nan')):.3f} measured {r.get('measured', float('nan')):.3f} {r['note']}")
    for name, ph in report["phases"].items():
        print(f"phase {name}: {ph['seconds']} s", file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
