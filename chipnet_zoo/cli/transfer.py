"""Transfer and experiment commands: ``transfer``, ``experiment``, ``demo``."""

from __future__ import annotations

import argparse
import json
import sys


def _transfer(args: argparse.Namespace) -> int:
    from ..mask_transfer import transfer

    metrics = transfer(args.mask, args.dataset, args.protocol, budget=args.budget, arch=args.arch,
                       recipe=args.recipe, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       seed=args.seed, data_seed=args.data_seed, max_samples=args.max_samples, out=args.out,
                       dense_weights=args.dense_weights, dense_epochs=args.dense_epochs, registry=args.registry,
                       push_to=args.push, overwrite=args.overwrite, device=args.device,
                       progress=not args.no_progress, argv=sys.argv[1:])
    if args.json:
        print(json.dumps(metrics, indent=1, sort_keys=True, default=str))
    else:
        r = metrics["ratios"]
        print(f"transfer ({args.protocol}) of {metrics['mask_origin']} to {args.dataset}: test accuracy "
              f"{metrics['test_accuracy']:.4f}, val {metrics['val_accuracy']:.4f}; flops {r['flops']:.4f}, params "
              f"{r['params']:.4f}; run folder {metrics['run_dir']}")
    return 0


def _lane(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lane must look like K/N (e.g. 0/2), got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"--lane K/N needs 0 <= K < N, got {text!r}")
    return k, n


def _experiment(args: argparse.Namespace) -> int:
    from ..experiment import run_experiment

    summary = run_experiment(args.config, out=args.out, max_cells=args.max_cells, progress=args.progress,
                             lane=args.lane)
    print(summary["table"])
    print(f"{summary['done']}/{summary['total']} cells done; results in {summary['out']} "
          f"(plots: {', '.join(summary['plots']) or 'none yet'})", file=sys.stderr)
    if args.export_zoo:
        from ..experiment import export_zoo

        entries = export_zoo(summary["out"], args.export_zoo, seed=args.zoo_seed, cards=args.cards,
                             command="chipnet-zoo " + " ".join(sys.argv[1:]))
        for e in entries:
            print(e.key)
        print(f"exported {len(entries)} entries to {args.export_zoo}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(quick=args.quick, out=args.out, registry=args.registry, fresh=args.fresh)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("transfer", help="apply a (teacher) mask to a student dataset and train the student",
                              description="Transfer a mask learned on one dataset to another (DESIGN §7): "
                                          "'scratch' trains the slimmed student from random init (the paper's "
                                          "protocol); 'finetune' applies the mask to a dense student and "
                                          "fine-tunes it.")
    p.add_argument("--mask", required=True, help="a mask file, or a registry key such as resnet8/animal-mnist/flops-0.125")
    p.add_argument("--registry", "-r", help="where a key is looked up (default: the default registry, then the "
                                            "zoo shipped with the package)")
    p.add_argument("--dataset", required=True, help="the student dataset (a name, Hub id or local path)")
    p.add_argument("--protocol", choices=("scratch", "finetune"), default="scratch")
    p.add_argument("--budget", help="the student's budget, e.g. flops:0.1 (default: the teacher's)")
    p.add_argument("--arch", help="expected architecture (a mask for another one is refused)")
    p.add_argument("--recipe", default="cpu", help="recipe name or YAML (default: cpu)")
    p.add_argument("--epochs", type=int, help="fine-tune epochs (default: the recipe's)")
    p.add_argument("--dense-epochs", type=int, help="finetune protocol: epochs of the dense student training")
    p.add_argument("--dense-weights", help="finetune protocol: dense student weights (file or train run folder)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, help="seed of the data split (default: --seed)")
    p.add_argument("--max-samples", type=int, help="use a subset of the training split")
    p.add_argument("--out", help="run folder (default: runs/transfer-<arch>-<dataset>-<budget>-<protocol>)")
    p.add_argument("--push", metavar="REGISTRY", help="push the student's mask and slim weights to this registry")
    p.add_argument("--overwrite", action="store_true", help="with --push: replace a different mask at the key")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_transfer)

    p = subparsers.add_parser("experiment", help="run (or resume) a teacher x student x budget x method x seed grid",
                              description="Run a transfer experiment grid from a YAML config (or the name of a "
                                          "shipped one, e.g. 'offline'). Finished cells are skipped; interrupted "
                                          "runs resume.")
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument("--out", help="output folder (default: the config's 'out')")
    p.add_argument("--max-cells", type=int, help="stop after this many new cells")
    p.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    p.add_argument("--lane", type=_lane, metavar="K/N",
                   help="run only lane K of N (0-based): start N processes with 0/N ... N-1/N on one --out to use "
                        "N cores; each lane takes every N-th (student, seed) pair and waits for shared runs")
    p.add_argument("--export-zoo", metavar="DIR", help="then publish the ChipNet masks (+ slim weights) and the "
                                                       "dense models of --zoo-seed into this registry folder")
    p.add_argument("--zoo-seed", type=int, default=0)
    p.add_argument("--cards", metavar="DIR", help="with --export-zoo: write a recipe card per entry here")
    p.set_defaults(func=_experiment)

    p = subparsers.add_parser("demo", help="offline CPU demo: prune on animal-mnist, transfer to mnist5k, compare",
                              description="Train resnet8 on animal-mnist, ChipNet-prune it at two FLOPs budgets, "
                                          "push the masks to a registry inside the output folder (never the "
                                          "default registry), pull them back, transfer them to mnist5k and compare "
                                          "with direct ChipNet, random and dense.")
    p.add_argument("--quick", action="store_true", help="a ~1-minute version (tiny subsets, 1 epoch, one budget)")
    p.add_argument("--out", help="output folder (default: ./chipnet-zoo-demo or ./chipnet-zoo-demo-quick)")
    p.add_argument("--registry", "-r", help="registry for the teacher masks (default: OUT/registry, so the demo never "
                                                 "changes what MaskRegistry() pulls)")
    p.add_argument("--fresh", action="store_true", help="delete the output folder first")
    p.set_defaults(func=_demo)
