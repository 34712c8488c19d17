"""Registry commands: ``push``, ``pull``, ``list``, ``card``.

``--registry`` takes a folder or ``hf://<owner>/<repo>[@<revision>]`` (default: the user-level folder,
env ``CHIPNET_ZOO_REGISTRY``). Hub tokens come from the usual places (``HF_TOKEN``, ``hf auth login``);
there is deliberately no ``--token`` flag (command lines end up in shell histories and process lists).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..budget import BUDGET_KINDS
from ..metadata import headline_accuracy

_REGISTRY_HELP = "a folder or hf://<owner>/<repo>[@<revision>] (default: $CHIPNET_ZOO_REGISTRY or the user cache)"


def _registry(args: argparse.Namespace, **kwargs):
    from ..registry import MaskRegistry

    return MaskRegistry(args.registry, **kwargs)


def _push(args: argparse.Namespace) -> int:
    source = Path(args.source)
    reg = _registry(args, private=args.private)
    if source.is_dir():
        if args.dataset or args.budget or args.weights:
            raise ValueError("--dataset, --budget and --weights apply to a single mask file, not a registry folder")
        entries = reg.push_registry(source, overwrite=args.overwrite, message=args.message)
        for e in entries:
            print(e.key)
        print(f"published {len(entries)} entries from {source} to {reg.location}", file=sys.stderr)
        return 0
    if not source.is_file():
        raise FileNotFoundError(f"no mask file or registry folder at {source}")
    entry = reg.push(source, dataset=args.dataset, budget=args.budget, weights=args.weights,
                     weights_as=args.weights_as, overwrite=args.overwrite, message=args.message)
    print(entry.key)
    return 0


def _pull(args: argparse.Namespace) -> int:
    reg = _registry(args)
    out = reg.pull_file(args.key, args.out)
    print(out)
    return 0


def _list(args: argparse.Namespace) -> int:
    # without --registry: + the read-only zoo shipped with the package (what a pull would find)
    entries = _registry(args).list(arch=args.arch, dataset=args.dataset, budget_type=args.budget_type,
                                   include_builtin=not args.no_builtin)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=1, sort_keys=True))
        return 0
    if not entries:
        print("(no entries)", file=sys.stderr)
        return 0
    latency = any(e.measured_on for e in entries)
    head = ("key", "channels", "params", "flops", "accuracy", "method", "weights") + (("measured on",) if latency else ())
    rows = []
    for e in entries:
        acc = (headline_accuracy(e.metrics) or (None, None, None))[2]
        rows.append((e.key, *(f"{e.ratios[k]:.4f}" if k in e.ratios else "-" for k in ("channels", "params", "flops")),
                     f"{acc:.4f}" if acc is not None else "-", e.method or "-",
                     e.weights["kind"] if e.weights else "-")
                    + ((e.measured_on or "-",) if latency else ()))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _card(args: argparse.Namespace) -> int:
    text = _registry(args).render_card(title=args.title)
    if args.out:
        from .._atomic import atomic_write

        atomic_write(Path(args.out), text.encode())
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("push", help="publish a mask file (or a whole local registry) to a registry",
                              description="Publish a mask file, or every entry of a local registry folder, to a "
                                          "registry (one commit on the Hub).")
    p.add_argument("source", metavar="MASK_FILE_OR_REGISTRY_DIR")
    p.add_argument("--registry", "-r", default=None, help=_REGISTRY_HELP)
    p.add_argument("--dataset", help="override the mask's dataset (part of its key)")
    p.add_argument("--budget", help="override the mask's budget, e.g. flops:0.1 (must not be below its ratio)")
    p.add_argument("--weights", help="a safetensors file with the slimmed (or the dense) model's weights")
    p.add_argument("--weights-as", choices=("auto", "slim", "dense"), default="auto",
                   help="what --weights holds (default: told apart by the tensor shapes)")
    p.add_argument("--private", action="store_true", help="create a missing Hub repo as private")
    p.add_argument("--overwrite", action="store_true", help="replace a different mask already at the key")
    p.add_argument("--message", "-m", help="commit message (Hub)")
    p.set_defaults(func=_push)

    p = subparsers.add_parser("pull", help="download a mask file from a registry (sha256-verified)",
                              description="Write the mask file at KEY to --out, checked against the sha256 in the "
                                          "registry's index. Without --registry, a key the default registry does "
                                          "not hold is taken from the zoo shipped with the package.")
    p.add_argument("key", metavar="KEY", help="<arch>/<dataset>/<budget_type>-<budget>, e.g. resnet56/cifar100/flops-0.1")
    p.add_argument("--registry", "-r", default=None, help=_REGISTRY_HELP)
    p.add_argument("--out", "-o", required=True, help="where to write the mask file")
    p.set_defaults(func=_pull)

    p = subparsers.add_parser("list", help="list the masks in a registry",
                              description="List a registry's entries (key, achieved ratios, accuracy, method, "
                                          "weights), optionally filtered. Without --registry, the zoo shipped with "
                                          "the package is listed too (--no-builtin leaves it out).")
    p.add_argument("--registry", "-r", default=None, help=_REGISTRY_HELP)
    p.add_argument("--arch", help="only entries of this architecture (e.g. resnet56, tv/resnet50)")
    p.add_argument("--dataset", help="only entries learned on this dataset")
    p.add_argument("--budget-type", choices=BUDGET_KINDS,
                   help="only entries with this budget kind")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.add_argument("--no-builtin", action="store_true",
                   help="without --registry: leave out the read-only zoo shipped with the package")
    p.set_defaults(func=_list)

    p = subparsers.add_parser("card", help="render a registry's model card (README.md) to check it",
                              description="Render the model card (README.md) that a Hub push writes for the "
                                          "registry's current entries, titled by the registry's name.")
    p.add_argument("--registry", "-r", default=None, help=_REGISTRY_HELP)
    p.add_argument("--out", "-o", help="write the card here instead of stdout")
    p.add_argument("--title", help="card title (default: 'chipnet-zoo masks: <registry name>')")
    p.set_defaults(func=_card)
