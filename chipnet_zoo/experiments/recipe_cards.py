"""Recipe cards: ``<cards>/<key>.md``, exactly how a zoo entry was produced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._atomic import atomic_write


def _seeds_line(metrics: dict[str, Any]) -> str:
    per_seed = metrics.get("test_accuracy_seeds") or {}
    if not per_seed:
        return "- test accuracy over seeds: not recorded"
    return (f"- test accuracy over {len(per_seed)} seeds: mean {metrics['test_accuracy_mean']:.4f}, std "
            f"{metrics['test_accuracy_std']:.4f}; per seed " + ", ".join(f"{k}: {v:.4f}" for k, v in per_seed.items()))


def write_recipe_card(cards: Path, entry: Any, row: dict[str, Any], run: Any, cfg: dict[str, Any],
                      command: str | None) -> Path:
    """``cards/<key>.md``: exactly how a zoo entry was produced."""
    config = run.config()
    chain, seen, todo = [], set(), [config]
    while todo:  # finetune <- prune <- train: the runs' "source" records and the runs their weights and mask came from
        current = todo.pop(0)
        phase = (current.get("recipe") or {}).get("phase") or {}
        chain.append(f"- `{current.get('kind')}`: recipe `{(current.get('recipe') or {}).get('name')}`, "
                     f"{phase.get('epochs')} epochs, {phase.get('optimizer')} lr {phase.get('lr')}, batch "
                     f"{phase.get('batch_size')}, seed {current.get('seed')}"
                     + (f", budget {current.get('budget')}" if current.get("budget") else ""))
        sources = [(current.get("source") or {}).get("run")]
        sources += [str(Path(current[k]).parent) for k in ("mask_file", "weights_file") if current.get(k)]
        for src in sources:
            if src and src not in seen and (Path(src) / "config.json").is_file():
                seen.add(src)
                todo.append(json.loads((Path(src) / "config.json").read_text()))
    split = (config.get("dataset") or {}).get("split_info") or {}
    ratios = ", ".join(f"{k} {v:.4f}" for k, v in entry.ratios.items())
    lines = [
        f"# Recipe card: `{entry.key}`", "",
        f"- architecture: `{entry.arch}`; dataset: `{entry.dataset}` ({config.get('num_classes')} classes, input "
        f"{config.get('input_size')}); method: `{entry.method}`",
        f"- achieved ratios: {ratios}",
        f"- test accuracy {row.get('test_accuracy'):.4f}, val accuracy {row.get('val_accuracy'):.4f} "
        f"(params {row.get('params')}, MACs {row.get('macs')}); these weights are seed {row.get('seed')}'s",
        _seeds_line(entry.metrics),
        f"- weights: {entry.weights['kind'] if entry.weights else 'none'} "
        "(`MaskRegistry.builtin().pull_model(key)` returns the runnable model)",
        f"- data: `load_data({json.dumps((config.get('dataset') or {}).get('load_kwargs'))})`, split sizes "
        f"{split.get('sizes') or {k: split.get(k) for k in ('train', 'val', 'test') if k in split}}",
        "", "## How it was produced", "",
        f"Experiment `{cfg.get('name')}` (`{command or 'chipnet-zoo experiment offline'}`), cell `{row['cell']}`, "
        f"run folder `{Path(row['run_dir']).name}`. Phases (newest first):", "", *chain, "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in (config.get("versions") or {}).items()), "",
    ]
    cards.mkdir(parents=True, exist_ok=True)
    path = cards / (entry.key.replace("/", "__") + ".md")
    return atomic_write(path, "\n".join(lines).encode())
