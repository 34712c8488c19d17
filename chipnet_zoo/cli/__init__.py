"""The ``chipnet-zoo`` command line. Each command group lives in its own module and exposes
``register(subparsers)``; this entry only wires them together and funnels errors."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from .. import constants
from .._version import __version__
from ..errors import ChipNetZooError

#: Command modules, in the order their commands appear in ``--help``.
COMMAND_MODULES = ("run_commands", "registry", "transfer", "experiment", "demo", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chipnet-zoo",
        description="Budget-exact ChipNet pruning, a mask registry (local or Hugging Face Hub) and mask transfer.",
    )
    parser.add_argument("--version", action="version", version=f"chipnet-zoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __name__).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)  # recorded in the runs' config.json
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ChipNetZooError, OSError, ValueError) as exc:  # OSError: disk full, permissions, ...
        from .._secrets import scrub

        if constants.CHIPNET_DEBUG:
            traceback.print_exc()
        message = scrub(exc if not isinstance(exc, OSError) or isinstance(exc, ChipNetZooError)
                        or not exc.strerror else f"{exc.strerror}: {exc.filename or ''}".rstrip(": "))
        print(f"chipnet-zoo {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        if not constants.CHIPNET_DEBUG:
            print("(set CHIPNET_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
