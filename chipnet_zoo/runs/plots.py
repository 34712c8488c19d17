"""Training curves of a run (``curves.png``); the kept-channels plot is :mod:`chipnet_zoo.mask_plot`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (10, 4)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]


def plot_curves(history: list[Mapping[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Training curves: losses and accuracies (and budget ratios in a pruning run) per epoch."""
    if not history:
        return None
    epochs = [r["epoch"] for r in history]
    panels = [("loss", ["train_loss", "val_loss", "loss", "ce"]),
              ("accuracy", ["train_accuracy", "val_accuracy", "soft_val_accuracy", "hard_val_accuracy"]),
              ("ratio", ["soft_ratio", "hard_ratio", "crisp_fraction"])]
    panels = [(n, [k for k in keys if k in history[0]]) for n, keys in panels]
    panels = [(n, keys) for n, keys in panels if keys]
    fig, axes = _figure(1, len(panels), (5 * len(panels), 3.8))
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)
