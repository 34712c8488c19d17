"""The ``demo`` command: the offline CPU demo (:mod:`chipnet_zoo.demo`)."""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(quick=args.quick, out=args.out, registry=args.registry, fresh=args.fresh, argv=args.command_line)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
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
