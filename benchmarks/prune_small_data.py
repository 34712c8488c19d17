"""The pruning phase on a small data set (docs/benchmarks.md, "The pruning phase on small data").

resnet20 on mnist5k (3,500 training digits, 28x28, 1 channel), pretrained a few epochs with SGD, then
the ChipNet pruning phase at a FLOPs budget. Reports per epoch the soft/hard ratio, the fraction of
crisp gates (|z - z~| < 0.05), soft and hard validation accuracy, and the hard accuracy after
re-estimating BN statistics under the hard mask (no weight update).

    python benchmarks/prune_small_data.py --epochs 20                     # the defaults
    python benchmarks/prune_small_data.py --epochs 20 --harden 0 --crispness-weight 10 --no-group-normalize
                                                        # the authors' purely soft phase, for comparison
    python benchmarks/prune_small_data.py --plot        # one figure of every result file of 20 epochs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import chipnet_zoo as cz
from chipnet_zoo.data import load_data, make_loaders
from chipnet_zoo.evaluation import evaluate

RESULTS = Path(__file__).parent / "results"


def pretrain(model, loader, epochs: int, lr: float = 0.05) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


@torch.no_grad()
def recalibrated_hard_accuracy(pruner: cz.ChipNetPruner, train, val, batches: int = 30) -> float:
    """Hard-mask accuracy after re-estimating BN statistics under the hard mask (state restored after)."""
    model = pruner.model
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    pruner.gates.fixed = pruner.hard_keep().float()
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        for i, (x, _) in enumerate(train):
            if i >= batches:
                break
            model(x)
        return evaluate(model, val)["accuracy"]
    finally:
        pruner.gates.fixed = None
        model.load_state_dict(saved)
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum


def plot_results(budget: str, epochs: int) -> Path:
    """Soft/hard ratio, crisp fraction and hard-mask val accuracy per epoch, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted(RESULTS.glob(f"prune_small_data-{budget.replace(':', '-')}-e{epochs}-*.json"))
    if not files:
        raise SystemExit(f"no result files for {budget}, {epochs} epochs in {RESULTS}")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    target = float(budget.split(":")[1])
    for path in files:
        result = json.loads(path.read_text())
        hp, hist = result["hparams"], result["history"]
        label = (f"harden {hp['harden']:g}, w_c {hp['crispness_weight']:g}, "
                 f"{'group-norm' if hp['group_normalize'] else 'raw gates'}")
        ep = [r["epoch"] for r in hist]
        line, = axes[0].plot(ep, [r["soft_ratio"] for r in hist], label=f"{label} (soft)")
        axes[0].plot(ep, [r["hard_ratio"] for r in hist], ls=":", color=line.get_color())
        axes[1].plot(ep, [r["crisp_fraction"] for r in hist], color=line.get_color(), label=label)
        axes[2].plot(ep, [r["hard_val_accuracy"] for r in hist], color=line.get_color(), label=label)
    axes[0].axhline(target, color="grey", lw=0.8)
    for ax, title in zip(axes, (f"{budget} ratio (solid soft, dotted hard)", "crisp gates |z - z~| < 0.05",
                                "val accuracy under the hard mask")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"ChipNet pruning phase, resnet20 on mnist5k, {epochs} epochs")
    fig.tight_layout()
    out = RESULTS / f"prune_small_data-{budget.replace(':', '-')}-e{epochs}.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--psi-travel", type=float, default=None)
    parser.add_argument("--budget", default="flops:0.25")
    parser.add_argument("--harden", type=float, default=None,
                        help="final fraction of the phase trained under the hard mask (default: the pruner's)")
    parser.add_argument("--crispness-weight", type=float, default=None, help="default: the pruner's")
    parser.add_argument("--no-group-normalize", action="store_true",
                        help="the authors' gates (no division by each group's largest gate)")
    parser.add_argument("--plot", action="store_true",
                        help="only plot the existing result files of --epochs epochs and --budget")
    args = parser.parse_args()
    if args.plot:
        print(f"wrote {plot_results(args.budget, args.epochs)}")
        return
    data = load_data("mnist5k", seed=0)
    train, val, _ = make_loaders(data, batch_size=32, seed=0)
    pre, _, _ = make_loaders(data, batch_size=128, seed=0)
    torch.manual_seed(0)
    model = cz.create_model("resnet20", num_classes=10, in_chans=1)
    start = time.perf_counter()
    pretrain(model, pre, args.pretrain_epochs)
    dense = evaluate(model, val)["accuracy"]
    print(f"dense: val accuracy {dense:.3f} after {args.pretrain_epochs} epochs ({time.perf_counter() - start:.0f} s)")
    kwargs = {} if args.psi_travel is None else {"psi_travel": args.psi_travel}
    kwargs["group_normalize"] = not args.no_group_normalize
    pruner = cz.ChipNetPruner(model, args.budget, example_input=torch.randn(1, 1, 28, 28), **kwargs)
    rows = []

    def report(record, p):
        record["recalibrated_hard_val_accuracy"] = recalibrated_hard_accuracy(p, train, val)
        rows.append(dict(record))
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                       if k in ("epoch", "soft_ratio", "hard_ratio", "crisp_fraction", "soft_val_accuracy",
                                "hard_val_accuracy", "recalibrated_hard_val_accuracy", "gamma", "hard_mix",
                                "seconds")),
              flush=True)

    fit_kwargs = {} if args.harden is None else {"harden": args.harden}
    if args.crispness_weight is not None:
        fit_kwargs["crispness_weight"] = args.crispness_weight
    pruner.fit(train, val, epochs=args.epochs, callback=report, progress=False, **fit_kwargs)
    RESULTS.mkdir(exist_ok=True)
    hp = pruner._hparams
    variant = f"h{hp['harden']:g}-wc{hp['crispness_weight']:g}" + ("-gn" if hp["group_normalize"] else "")
    out = RESULTS / f"prune_small_data-{args.budget.replace(':', '-')}-e{args.epochs}-{variant}.json"
    out.write_text(json.dumps({"args": vars(args), "dense_val_accuracy": dense, "history": rows,
                               "hparams": hp}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
