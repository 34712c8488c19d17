"""Run commands: ``train``, ``prune``, ``finetune``, ``eval``.

    chipnet-zoo train    --arch resnet20 --dataset mnist5k --recipe cpu --out runs/dense
    chipnet-zoo prune    --from runs/dense --budget flops:0.25 --out runs/pruned
    chipnet-zoo finetune --from runs/pruned --out runs/finetuned
    chipnet-zoo eval     --from runs/finetuned --json

Several GPUs or processes: ``torchrun --nproc_per_node N -m chipnet_zoo train ...`` or
``accelerate launch -m chipnet_zoo train ...``. Progress goes to stderr; ``--json`` prints only the
final metrics on stdout.
"""

from __future__ import annotations

import argparse
import json
import math


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--from", dest="from_run", metavar="RUN",
                   help={"train": "continue training from a train run's weights",
                         "prune": "a train run folder (its arch, dataset and dense weights)",
                         "finetune": "a prune run folder (its mask and pruned-phase weights)",
                         "eval": "the run folder to evaluate"}[kind])
    p.add_argument("--arch", help="architecture (see `python -c 'import chipnet_zoo as cz; print(cz.list_models())'`)")
    p.add_argument("--dataset", help="named dataset (mnist5k, animal-mnist, cifar10, ...), Hub id or local path")
    p.add_argument("--image-column", help="the image column of a Hub / local dataset")
    p.add_argument("--label-column", help="the label column of a Hub / local dataset")
    p.add_argument("--max-samples", type=int, metavar="N", help="use a subset of N training images (smoke runs)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON on stdout")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    if kind == "eval":
        p.add_argument("--out", metavar="DIR", help="write config.json + metrics.json here "
                                                     "(default: eval.json inside the evaluated run)")
        p.add_argument("--latency-repeats", type=int, default=10, help="timed forward passes per batch size")
        p.add_argument("--onnx-latency", action="store_true", help="also time the model exported to ONNX under "
                                                                   "onnxruntime (same batches, repeats, threads)")
        return
    p.add_argument("--out", metavar="DIR", help="the run folder (default: runs/<kind>-<arch>-<dataset>[-<budget>])")
    p.add_argument("--budget", metavar="KIND:VALUE",
                   help="e.g. flops:0.25 (kinds: channels, volume, params, flops, latency: measured on this machine, docs/latency.md)" if kind == "prune"
                   else "re-threshold the mask's scores at this budget" if kind == "finetune" else argparse.SUPPRESS)
    if kind == "prune":
        p.add_argument("--round-to", type=_round_to_arg, metavar="N|auto",
                       help="every channel group keeps a multiple of N channels (or all of them); e.g. 8 for "
                            "widths that run near their ideal speed; 'auto': per group, the widths this machine "
                            "runs fast, measured once (docs/latency.md) (default: the recipe's, 1)")
    p.add_argument("--train-samples", type=int, metavar="N",
                   help="train on N images of the training split, keeping val and test whole (a data-poor run "
                        "measured on the full test set; default: the --from run's)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, help="training seed (default 0, or the --from run's)")
    p.add_argument("--data-seed", type=int, help="seed of the train/val/test split (default: --seed, or the "
                                                  "--from run's split)")
    p.add_argument("--image-size", type=int, help="resize images to this size")
    p.add_argument("--recipe", help="a shipped recipe (paper, paper-r164, cpu, tiny) or a YAML file; default: paper "
                                    "or the --from run's")
    p.add_argument("--weights", metavar="FILE", help="initial weights (safetensors state dict)"
                   if kind != "finetune" else "dense-shaped weights to slim (default: random init = from scratch)")
    if kind == "finetune":
        p.add_argument("--mask", metavar="FILE", help="a mask file (instead of --from PRUNE_RUN)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (a finished run "
                                                         "is reported, not redone); other options, if given, must "
                                                         "be the run's own (--epochs included)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


_EPILOG = "examples:\n" + __doc__.split("\n\n", 1)[1].rstrip()


def register(subparsers: argparse._SubParsersAction) -> None:
    helps = {
        "train": "train a dense model (SGD recipe) into a run folder",
        "prune": "run the ChipNet pruning phase from dense weights -> mask.safetensors",
        "finetune": "slim a model with a mask and fine-tune it (mask frozen)",
        "eval": "accuracy, ratios, params, MACs and CPU latency of a run's model",
    }
    for kind, text in helps.items():
        p = subparsers.add_parser(kind, help=text, description=text, epilog=_EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, kind)
        p.set_defaults(func=_handler(kind))


def _handler(kind: str):
    def run(args: argparse.Namespace) -> int:
        from ..budget import Budget
        from ..distributed import is_rank0
        from ..runs import RunRequest, execute

        request = RunRequest(
            kind=kind, out=args.out, from_run=args.from_run, arch=args.arch, dataset=args.dataset,
            image_column=args.image_column, label_column=args.label_column, max_samples=args.max_samples,
            batch_size=args.batch_size, device=args.device, argv=_command_line(kind, args),
        )
        if kind == "eval":
            request.latency_repeats = args.latency_repeats
        else:
            for name in ("data_seed", "image_size", "train_samples", "epochs", "lr", "seed", "recipe", "weights",
                         "resume", "workers"):
                setattr(request, name, getattr(args, name))
            # the budget is parsed here, once; a bad one is an error before anything runs
            request.budget = Budget.parse(args.budget) if args.budget else None
            request.mask = getattr(args, "mask", None)
            request.round_to = getattr(args, "round_to", None)
            request.progress = not args.no_progress
        if kind == "eval" and args.onnx_latency:
            from ..export import require_onnx

            require_onnx()  # before the evaluation, not after it
        metrics = execute(request)
        if kind == "eval" and args.onnx_latency:
            from pathlib import Path

            from ..export import add_onnx_latency

            add_onnx_latency(metrics, args.from_run, repeats=args.latency_repeats,
                             metrics_file=Path(args.out) / "metrics.json" if args.out else Path(args.from_run) / "eval.json")
        if args.json and is_rank0():
            print(json.dumps(_json_safe(metrics), indent=1, sort_keys=True))
        return 0

    return run


def _command_line(kind: str, args: argparse.Namespace) -> list[str]:
    """The options given, as a command line (recorded in config.json)."""
    out = [kind]
    for key, value in sorted(vars(args).items()):
        if key in ("func", "command", "command_line") or value is None or value is False:
            continue
        flag = "--from" if key == "from_run" else "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _round_to_arg(text: str) -> int | str:
    """``--round-to``: an integer, else the text (``auto``); the recipe check reports a bad value."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text
