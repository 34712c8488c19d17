"""The ``experiment`` command: run (or resume) a grid from a YAML config, then optionally export the zoo."""

from __future__ import annotations

import argparse
import sys


def _lane(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lane must look like K/N (e.g. 0/2), got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"--lane K/N needs 0 <= K < N, got {text!r}")
    return k, n


def _experiment(args: argparse.Namespace) -> int:
    from ..experiments import Workspace, run_experiment

    workspace = None
    if args.shared_runs:
        def workspace(cfg, out):
            return Workspace(cfg, out, args.progress, command=args.command_line, shared_runs=args.shared_runs)
    summary = run_experiment(args.config, out=args.out, max_cells=args.max_cells, progress=args.progress,
                             lane=args.lane, command=args.command_line, workspace=workspace)
    print(summary["table"])
    print(f"{summary['done']}/{summary['total']} cells done; results in {summary['out']} "
          f"(plots: {', '.join(summary['plots']) or 'none yet'})", file=sys.stderr)
    if args.export_zoo:
        from ..experiments import export_zoo

        entries = export_zoo(summary["out"], args.export_zoo, seed=args.zoo_seed, cards=args.cards,
                             command="chipnet-zoo " + " ".join(args.command_line))
        for e in entries:
            print(e.key)
        print(f"exported {len(entries)} entries to {args.export_zoo}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
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
                        "N cores; a (student, seed) pair goes to lane (student index + seed index) mod N, so the "
                        "students of a seed run side by side; a lane waits for shared runs another is making")
    p.add_argument("--export-zoo", metavar="DIR", help="then publish the ChipNet masks (+ slim weights) and the "
                                                       "dense models of --zoo-seed into this registry folder")
    p.add_argument("--zoo-seed", type=int, default=0)
    p.add_argument("--cards", metavar="DIR", help="with --export-zoo: write a recipe card per entry here")
    p.add_argument("--shared-runs", metavar="RUNS_DIR",
                   help="take the dense and pruning runs from another experiment's runs folder (e.g. "
                        "experiments/offline/runs): finished ones made with the same options are reused, missing "
                        "ones are made there, one made with other options is an error")
    p.set_defaults(func=_experiment)
