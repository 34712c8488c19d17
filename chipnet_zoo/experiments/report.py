"""Reports of an experiment: ``results.json``/``.csv``/``.md`` (mean ± std, paired differences with
95 % t-intervals) and a plot per student, all from ``results.jsonl``."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from pathlib import Path
from typing import Any

from .._atomic import atomic_write
from ..budget import Budget
from .config import METHODS, ExperimentConfig, extra_cells, grid, noisy_pairs, safe_name
from .results import RESULTS_CSV, RESULTS_JSON, RESULTS_MD, latest_rows, read_results

#: Held while the reports are rewritten (two lanes can finish at once).
REPORTS_LOCK = ".reports.lock"

CSV_FIELDS = ("teacher", "student", "arch", "method", "budget_type", "budget", "seed", "test_accuracy",
              "val_accuracy", "flops", "params_ratio", "channels", "volume", "params", "macs", "seconds", "run_dir")


def write_reports(out: str | os.PathLike, cfg: ExperimentConfig, total: int | None = None) -> dict[str, Any]:
    """Write ``results.json``/``.csv``/``.md`` and a plot per student from ``results.jsonl``."""
    from filelock import FileLock

    out = Path(out)
    with FileLock(str(out / REPORTS_LOCK)):  # lanes finishing together: the last to write has read every row
        return _write_reports(out, cfg, total)


def _write_reports(out: Path, cfg: ExperimentConfig, total: int | None) -> dict[str, Any]:
    cells = {c.id for c in grid(cfg)}
    rows = latest_rows(read_results(out))
    rows = [r for r in rows if r["cell"] in cells or (cfg.extra_seeds and int(r["seed"]) in cfg.extra_seeds)]
    atomic_write(out / RESULTS_JSON, json.dumps(rows, indent=1).encode())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        ratios = r.get("ratios") or {}
        writer.writerow({**r, "flops": ratios.get("flops"), "params_ratio": ratios.get("params"),
                         "channels": ratios.get("channels"), "volume": ratios.get("volume")})
    atomic_write(out / RESULTS_CSV, buf.getvalue().encode())
    total = total if total is not None else len(grid(cfg)) + len(extra_cells(cfg, rows))
    table = markdown_table(rows, cfg, total)
    atomic_write(out / RESULTS_MD, table.encode())
    plots = [plot_student(rows, cfg, student, out / f"plot-{safe_name(student)}.png") for student in cfg.students]
    return {"rows": rows, "done": len(rows), "total": total, "out": str(out), "table": table,
            "plots": [str(p) for p in plots if p]}


def _label(teacher: str, method: str) -> str:
    return f"{method} ({teacher})" if method.startswith("transfer") else method


def _method_of(label: str) -> str:
    """The method of a :func:`_label` (its teacher removed)."""
    return label.split(" (", 1)[0]


def _row_budget(row: dict[str, Any]) -> Budget:
    return Budget(row.get("budget_type") or "flops", float(row["budget"]))


def _accuracies(rows: list[dict[str, Any]], student: str) -> dict[tuple[str, Budget], dict[int, float]]:
    """``{(method label, budget): {seed: test accuracy}}`` of one student."""
    out: dict[tuple[str, Budget], dict[int, float]] = {}
    for r in rows:
        if r["student"] == student and r.get("test_accuracy") is not None:
            out.setdefault((_label(r["teacher"], r["method"]), _row_budget(r)), {})[int(r["seed"])] = float(
                r["test_accuracy"])
    return out


def _budget_order(budgets: set[Budget]) -> list[Budget]:
    kinds = ("flops", "params", "volume", "channels", "latency")
    return sorted((b for b in budgets if b.value < 1.0), key=lambda b: (kinds.index(b.kind), -b.value))


def _fmt(accs: list[float]) -> str:
    mean = statistics.fmean(accs) * 100
    std = statistics.stdev(accs) * 100 if len(accs) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f} (n={len(accs)})"


#: Two-sided 95 % quantiles of Student's t for 1 … 30 degrees of freedom (then the normal's 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def paired_interval(differences: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95 % t-interval ``(mean, low, high)`` (``nan`` bounds for n < 2).

    Example:
        >>> paired_interval([0.02, 0.04, 0.03])
        (0.03, 0.00515..., 0.05484...)
    """
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return mean, float("nan"), float("nan")
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * statistics.stdev(differences) / n ** 0.5
    return mean, mean - half, mean + half


def _fmt_paired(differences: list[float]) -> str:
    mean, low, high = paired_interval(differences)
    if len(differences) < 2:
        return f"{100 * mean:+.1f} (n=1)"
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] (n={len(differences)})"


BASELINE_METHODS = ("random", "l1", "slimming")

#: Schedule-matched controls: a method trained from random init is compared with the student's random mask
#: trained the same way, so that a gain can be credited to the mask rather than to the longer schedule.
CONTROLS = {"transfer-scratch": "random-scratch"}

#: Methods that are controls only: not pruning methods of their own, so not paired with the baselines.
CONTROL_METHODS = frozenset(CONTROLS.values())


def paired_comparisons(rows: list[dict[str, Any]], student: str) -> list[dict[str, Any]]:
    """Per budget and pruning method: the paired difference (same seed, hence the same dense model) to the
    best baseline at that budget (the baseline with the highest mean), to ``random`` and, for a method with a
    schedule-matched control (:data:`CONTROLS`), to that control."""
    accs = _accuracies(rows, student)
    out = []
    for budget in _budget_order({b for _, b in accs}):
        base = {m: accs[(m, budget)] for m in BASELINE_METHODS if (m, budget) in accs}
        best = max(base, key=lambda m: statistics.fmean(base[m].values())) if base else None
        for (label, b), per_seed in sorted(accs.items(), key=lambda item: item[0][0]):
            if b != budget or label in BASELINE_METHODS or label in CONTROL_METHODS or label == "dense":
                continue
            row: dict[str, Any] = {"method": label, "budget": str(budget), "best_baseline": best}
            control = CONTROLS.get(_method_of(label))
            refs = {"best": base.get(best), "random": base.get("random"),
                    "control": accs.get((control, budget)) if control else None}
            for name, ref in refs.items():
                seeds = sorted(set(per_seed) & set(ref)) if ref else []
                row[f"vs_{name}"] = [per_seed[s] - ref[s] for s in seeds]
            row["control"] = control
            out.append(row)
    return out


def scoreboard(rows: list[dict[str, Any]], student: str) -> list[dict[str, Any]]:
    """Per method and reference (best baseline, random, schedule-matched control): over the budgets of one
    student, how many paired means are ≥ 0, how many 95 % intervals lie wholly above or below 0, and the
    budgets where the mean is below 0 (with the mean, in points). A budget with one seed has no interval:
    it counts in neither interval column (``single_seed`` counts those budgets)."""
    paired = paired_comparisons(rows, student)
    out = []
    for method in dict.fromkeys(p["method"] for p in paired):
        rows_of = [p for p in paired if p["method"] == method]
        for ref, name in (("best", "best baseline"), ("random", "random"), ("control", rows_of[0]["control"])):
            diffs = [(p["budget"], p[f"vs_{ref}"]) for p in rows_of if p[f"vs_{ref}"]]
            if not diffs:
                continue
            stats = [(budget, paired_interval(d)) for budget, d in diffs]
            out.append({"method": method, "reference": name, "budgets": len(stats),
                        "mean_at_least_0": sum(m >= 0 for _, (m, _, _) in stats),
                        "interval_above_0": sum(lo > 0 for _, (_, lo, _) in stats),
                        "interval_below_0": sum(hi < 0 for _, (_, _, hi) in stats),
                        "single_seed": sum(len(d) < 2 for _, d in diffs),
                        "below": [(budget, 100 * m) for budget, (m, _, _) in stats if m < 0]})
    return out


def markdown_table(rows: list[dict[str, Any]], cfg: ExperimentConfig, total: int) -> str:
    """Per student: test accuracy (%) mean ± std over seeds (a row per method, a column per budget), then
    the paired differences to the best baseline, to random and to a schedule-matched control with 95 %
    intervals."""
    partial = len(rows) < total
    kinds = sorted({b.kind for b in cfg.budgets})
    lines = [f"# Experiment `{cfg.name}`: {cfg.arch}, {', '.join(kinds)} budgets", ""]
    if partial:
        lines += [f"**PARTIAL RESULTS: {len(rows)} of {total} cells finished.**", ""]
    seeds = f"Seeds {', '.join(map(str, cfg.seeds))}"
    if cfg.extra_seeds:
        noisy = sorted(noisy_pairs(cfg, rows), key=lambda p: (p[0], p[1].kind, -p[1].value))
        seeds += (f"; seeds {', '.join(map(str, cfg.extra_seeds))} added where a method's std over those exceeds "
                  f"{100 * cfg.extra_seeds_above_std:g} points: "
                  + (", ".join(f"{s} {b}" for s, b in noisy) if noisy else "nowhere (so far)"))
    lines += [seeds + ".", ""]
    order = {m: i for i, m in enumerate(METHODS)}
    for student in cfg.students:
        accs = _accuracies(rows, student)
        labels = sorted({lab for lab, _ in accs}, key=lambda lab: (order.get(_method_of(lab), 99), lab))
        budgets = _budget_order({b for _, b in accs})
        lines += [f"## Student `{student}` (test accuracy %, mean ± std over seeds)", ""]
        lines.append("| method | " + " | ".join(f"{b.kind} {format(b.value, 'g')}" for b in budgets) + " |")
        lines.append("|---|" + "---|" * len(budgets))
        for lab in labels:
            if lab == "dense":
                dense = [v for (m, _), per_seed in accs.items() if m == "dense" for v in per_seed.values()]
                cells = [_fmt(dense) if dense else "-"] * len(budgets)
            else:
                cells = [_fmt(list(accs[(lab, b)].values())) if (lab, b) in accs else "-" for b in budgets]
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
        lines.append("")
        paired = paired_comparisons(rows, student)
        if paired:
            lines += [f"### Student `{student}`: paired differences (points; mean [95 % t-interval] over seeds)", "",
                      "| budget | method | best baseline | − best baseline | − random | − its control |",
                      "|---|---|---|---|---|---|"]
            for p in paired:
                control = f"{_fmt_paired(p['vs_control'])} ({p['control']})" if p["vs_control"] else "-"
                lines.append(f"| {p['budget']} | {p['method']} | {p['best_baseline'] or '-'} | "
                             f"{_fmt_paired(p['vs_best']) if p['vs_best'] else '-'} | "
                             f"{_fmt_paired(p['vs_random']) if p['vs_random'] else '-'} | {control} |")
            lines.append("")
            lines += [f"### Student `{student}`: scoreboard (paired, over budgets)", "",
                      "| method | − reference | budgets | mean ≥ 0 | interval > 0 | interval < 0 | mean < 0 at |",
                      "|---|---|---|---|---|---|---|"]
            for b in scoreboard(rows, student):
                below = ", ".join(f"{budget} ({mean:+.1f})" for budget, mean in b["below"]) or "-"
                budgets = f"{b['budgets']} ({b['single_seed']} with n=1: no interval)" if b["single_seed"] else b["budgets"]
                lines.append(f"| {b['method']} | {b['reference']} | {budgets} | {b['mean_at_least_0']} | "
                             f"{b['interval_above_0']} | {b['interval_below_0']} | {below} |")
            lines.append("")
    return "\n".join(lines)


def plot_student(rows: list[dict[str, Any]], cfg: ExperimentConfig, student: str, path: Path) -> Path | None:
    """Accuracy vs budget (log-x), one panel per budget kind, one line per method, error bars = std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    accs = _accuracies(rows, student)
    if not accs:
        return None
    budgets = _budget_order({b for _, b in accs})
    kinds = list(dict.fromkeys(b.kind for b in budgets)) or [cfg.budget_type]
    dense = [v for (m, _), per_seed in accs.items() if m == "dense" for v in per_seed.values()]
    fig = Figure(figsize=(5.5 * len(kinds), 4.5))
    FigureCanvasAgg(fig)
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        if dense:
            mean = statistics.fmean(dense) * 100
            ax.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"dense ({mean:.1f}%)")
        for label in sorted({lab for lab, _ in accs if lab != "dense"}):
            pts = sorted((b.value, list(v.values())) for (lab, b), v in accs.items() if lab == label and b.kind == kind)
            if not pts:
                continue
            ax.errorbar([x for x, _ in pts], [statistics.fmean(a) * 100 for _, a in pts],
                        yerr=[statistics.stdev(a) * 100 if len(a) > 1 else 0.0 for _, a in pts],
                        marker="o", capsize=3, label=label)
        xs = [b.value for b in budgets if b.kind == kind]
        ax.set_xscale("log", base=2)
        if xs:
            ax.set_xticks(xs)
            ax.set_xticklabels([format(x, "g") for x in xs])
        ax.set_xlabel(f"{kind} budget (fraction of the dense model, log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{cfg.arch} on {student}, {kind}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
