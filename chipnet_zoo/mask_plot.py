"""The kept-channels plot of a mask: kept vs total channels per channel group, groups in network order
(the order of the modules in the model), as deterministic PNG bytes (the same mask gives the same bytes).

    >>> from chipnet_zoo.mask_plot import save_kept_channels
    >>> save_kept_channels(mask, "kept_channels.png")                    # doctest: +SKIP
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from .mask import Mask


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """``layer10`` after ``layer2``; the order when the architecture cannot be built."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def network_order(mask: Mask) -> list[str]:
    """The mask's groups in the order of their modules in the model (``named_modules``); groups named
    after no module, or an architecture that cannot be built, fall back to natural name order."""
    names = [n for n, _ in mask.structure]
    try:
        from .models import create_model

        model = create_model(mask.arch, num_classes=int(mask.metadata.get("num_classes") or 10),
                             in_chans=int((mask.metadata.get("input_size") or [3])[0]))
        position = {n: i for i, (n, _) in enumerate(model.named_modules())}
    except Exception:  # noqa: BLE001 - any failure to build the model: natural order is still readable
        position = {}
    return sorted(names, key=lambda n: (position.get(n, len(position)), _natural_key(n)))


def kept_channels_png(mask: Mask, title: str = "") -> bytes:
    """A bar chart of kept / total channels per group (network order), as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    totals_by_name = dict(mask.structure)
    names = network_order(mask)
    totals = [totals_by_name[n] for n in names]
    kept_by_name = mask.kept()
    kept = [kept_by_name[n] for n in names]
    fig = Figure(figsize=(max(6.0, 0.32 * len(names) + 2), 4.5), tight_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = list(range(len(names)))
    ax.bar(xs, totals, color="#d0d0d0", label="total")
    ax.bar(xs, kept, color="#2a7ab9", label="kept")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("channels")
    ratios = ", ".join(f"{k} {v:.3f}" for k, v in mask.ratios.items())
    ax.set_title(title or f"{mask.arch}: kept channels per group, budget {mask.budget}\nratios: {ratios}", fontsize=9)
    for x, k, t in zip(xs, kept, totals):
        ax.text(x, t, f"{k}/{t}", ha="center", va="bottom", fontsize=6)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def save_kept_channels(mask: Mask, path: str | Path, *, title: str = "") -> Path:
    """Write :func:`kept_channels_png` to ``path``."""
    from ._atomic import atomic_write

    atomic_write(Path(path), kept_channels_png(mask, title))
    return Path(path)
