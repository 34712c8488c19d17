"""Latency budgets, validated: predicted vs measured whole-model latency ratio of slimmed models (docs/latency.md).

For every architecture, batch size and latency budget: measure (or load) the latency table on this machine,
threshold L1 channel scores at the budget (budget-exact against the table, with the pruner's default width
floor), slim the model, and time the
dense and the slimmed model in interleaved rounds (medians). The check is ``measured <= target × 1.1``.

    python benchmarks/latency_validation.py                 # the full grid (needs an idle machine: minutes)
    python benchmarks/latency_validation.py --quick         # resnet56, batch 1, budget 0.5: does it run?
    python benchmarks/latency_validation.py --arch resnet56 --batch 64 --budgets 0.5 0.3
    python benchmarks/latency_validation.py --round-to 1 auto   # free widths vs round_to="auto", side by side

Writes ``benchmarks/results/latency_validation[-quick].md``. Timings on a busy machine are noise: run the
full grid with nothing else running, and read its numbers only with the machine line in the file's header.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from functools import partial
from pathlib import Path

import torch

import chipnet_zoo as cz
from chipnet_zoo.baselines import channel_scores
from chipnet_zoo.cost import CostModel
from chipnet_zoo.errors import UnreachableBudgetError
from chipnet_zoo.groups import build_channel_graph
from chipnet_zoo.latency import build_latency_table, interleaved_medians, machine_key, resolve_round_to
from chipnet_zoo.slim import slim_model
from chipnet_zoo.threshold import threshold_scores

RESULTS = Path(__file__).parent / "results"
#: (architecture, classes, input size)
CASES = {"resnet56": (10, 32), "wrn-16-4": (10, 32), "tv/resnet18": (1000, 224), "mobilenetv2-cifar": (10, 32)}
BATCHES = (1, 64)
BUDGETS = (0.5, 0.3)
TOLERANCE = 1.1
#: The pruner's default width floor, so that no group collapses to one channel (realistic masks).
FLOOR = 1.0


def validate(arch: str, batch: int, budgets: list[float], repeats: int, progress: bool, *, device: str = "cpu",
             dtype: torch.dtype = torch.float32, channels_last: bool = False,
             round_tos: tuple[int | str, ...] = (1,)) -> list[dict]:
    """One row per budget and ``round_to``: predicted and measured latency ratios of the slimmed model (on
    ``device``, in ``dtype``, optionally channels_last: the table is measured the same way)."""
    classes, size = CASES.get(arch, (10, 32))
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = cz.create_model(arch, num_classes=classes).eval().to(device=device, dtype=dtype, memory_format=fmt)
    x = torch.randn(batch, 3, size, size, device=device, dtype=dtype).contiguous(memory_format=fmt)
    graph = build_channel_graph(model, x[:1])
    table = build_latency_table(model, x, graph=graph, progress=progress)
    cost = CostModel(graph, table)
    scores = channel_scores(model, graph, "l1")
    rows = []
    for target, round_to in [(t, r) for t in budgets for r in round_tos]:
        row = {"arch": arch, "batch": batch, "budget": target, "table": "cache" if table.from_cache else "measured",
               "remainder": table.remainder_ms / table.predicted_dense_ms, "round_to": str(round_to)}
        rounds = resolve_round_to(round_to, model=model, graph=graph, example_input=x, latency_table=table,
                                  progress=progress)
        try:
            keep = threshold_scores(scores, cost, f"latency:{target}", floor=FLOOR, round_to=rounds)
        except UnreachableBudgetError as exc:
            rows.append({**row, "note": f"unreachable (smallest {exc.smallest:.3f})"})
            continue
        small = slim_model(model, graph, keep, x[:1]).eval().to(memory_format=fmt)  # timed like the dense one
        dense_ms, small_ms = interleaved_medians([partial(model, x), partial(small, x)], x.device, repeats=repeats)
        measured = small_ms / dense_ms
        rows.append({**row, "predicted": cost.hard_ratios(keep)["latency"], "measured": measured,
                     "dense_ms": dense_ms, "slim_ms": small_ms, "flops": cost.hard_ratios(keep)["flops"],
                     "ok": measured <= target * TOLERANCE, "note": ""})
    return rows


def markdown(rows: list[dict], device: str = "cpu", settings: str = "float32") -> str:
    key = machine_key(device)
    lines = [
        "# Latency budgets: predicted vs measured",
        "",
        f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; device `{key['device']}`, "
        f"{key['threads']} threads, torch {key['torch_version']}, {settings}. L1 scores thresholded at the latency budget "
        f"(floor {FLOOR:g}) "
        f"against this machine's table; measured = slimmed / dense latency (medians of interleaved runs); "
        f"ok = measured <= budget × {TOLERANCE}. `remainder` = the table's non-layer share of the dense latency.",
        "",
        "| arch | batch | budget | round_to | predicted | measured | ok | flops ratio | dense ms | slim ms | remainder | table "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "measured" in r:
            lines.append(f"| {r['arch']} | {r['batch']} | {r['budget']:g} | {r['round_to']} | {r['predicted']:.3f} "
                         f"| {r['measured']:.3f} "
                         f"| {'yes' if r['ok'] else 'NO'} | {r['flops']:.3f} | {r['dense_ms']:.2f} | {r['slim_ms']:.2f} "
                         f"| {r['remainder']:.2f} | {r['table']} | {r['note']} |")
        else:
            lines.append(f"| {r['arch']} | {r['batch']} | {r['budget']:g} | {r['round_to']} | - | - | - | - | - | - | "
                         f"{r['remainder']:.2f} | {r['table']} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(CASES))
    parser.add_argument("--batch", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS))
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds of the dense/slimmed comparison")
    parser.add_argument("--quick", action="store_true", help="resnet56, batch 1, budget 0.5 only")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 weights and inputs")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--round-to", nargs="+", default=["1"],
                        help="thresholding granularities to compare: integers and/or 'auto' (fast widths)")
    args = parser.parse_args()
    round_tos = tuple(int(r) if r.isdigit() else r for r in args.round_to)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    if args.quick:
        args.arch, args.batch, args.budgets = ["resnet56"], [1], [0.5]
    rows = []
    for arch in args.arch:
        for batch in args.batch:
            rows += validate(arch, batch, args.budgets, args.repeats, progress=True, device=args.device, dtype=dtype,
                             channels_last=args.channels_last, round_tos=round_tos)
    text = markdown(rows, args.device, f"{'bfloat16' if args.bf16 else 'float32'}"
                                       f"{', channels_last' if args.channels_last else ''}")
    suffix = (("-quick" if args.quick else "") + ("" if args.device == "cpu" else f"-{args.device}")
              + ("" if round_tos == (1,) else "-round-to-" + "-".join(map(str, round_tos))))
    out = args.out or RESULTS / f"latency_validation{suffix}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
