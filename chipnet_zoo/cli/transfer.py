"""The ``transfer`` command: a (teacher) mask applied to a student dataset, the student trained."""

from __future__ import annotations

import argparse
import json


def _transfer(args: argparse.Namespace) -> int:
    from ..budget import Budget
    from ..mask_transfer import StudentTraining, transfer

    training = StudentTraining(recipe=args.recipe, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               seed=args.seed, data_seed=args.data_seed, max_samples=args.max_samples,
                               train_samples=args.train_samples, dense_epochs=args.dense_epochs)
    metrics = transfer(args.mask, args.dataset, protocol=args.protocol,
                       budget=Budget.parse(args.budget) if args.budget else None, arch=args.arch,
                       training=training, out=args.out, dense_weights=args.dense_weights, registry=args.registry,
                       push_to=args.push, overwrite=args.overwrite, device=args.device,
                       progress=not args.no_progress, argv=args.command_line)
    if args.json:
        print(json.dumps(metrics, indent=1, sort_keys=True, default=str))
    else:
        r = metrics["ratios"]
        print(f"transfer ({args.protocol}) of {metrics['mask_origin']} to {args.dataset}: test accuracy "
              f"{metrics['test_accuracy']:.4f}, val {metrics['val_accuracy']:.4f}; flops {r['flops']:.4f}, params "
              f"{r['params']:.4f}; run folder {metrics['run_dir']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("transfer", help="apply a (teacher) mask to a student dataset and train the student",
                              description="Transfer a mask learned on one dataset to another (docs/architecture.md, 'Transfer'): "
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
    p.add_argument("--train-samples", type=int, metavar="N",
                   help="train the student on N images, keeping val and test whole (a data-poor student)")
    p.add_argument("--out", help="run folder (default: runs/transfer-<arch>-<dataset>-<budget>-<protocol>)")
    p.add_argument("--push", metavar="REGISTRY", help="push the student's mask and slim weights to this registry")
    p.add_argument("--overwrite", action="store_true", help="with --push: replace a different mask at the key")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_transfer)
