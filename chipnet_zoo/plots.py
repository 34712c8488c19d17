"""Plots of a mask, as PNG bytes (matplotlib, imported on first use, Agg backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .mask import Mask


def kept_channels_png(mask: Mask, title: str = "") -> bytes:
    """A bar chart of kept / total channels per group, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    names = list(mask.keep)
    kept = [int(v.sum()) for v in mask.keep.values()]
    total = [int(v.numel()) for v in mask.keep.values()]
    fig = Figure(figsize=(max(4.0, 0.22 * len(names) + 1.5), 3.0), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), total, color="#d0d0d0", label="total")
    ax.bar(range(len(names)), kept, color="#1f77b4", label="kept")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("channels")
    ax.set_title(title or "kept channels per group", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
