"""The model card (README.md) of a registry: ``huggingface_hub.ModelCard`` from the Jinja template
``chipnet_zoo/cards/registry.md.j2``. It links only what exists: the paper, and chipnet-zoo's own package
metadata (its version; its home page when the installed package records one)."""

from __future__ import annotations

from importlib import metadata, resources
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .._version import __version__
from ..metadata import headline_accuracy
from .index import RegistryEntry
from .keys import plot_path

#: Hub dataset ids of the datasets chipnet-zoo knows by short name (for the card's ``datasets``).
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}
#: Project-URL labels of the package metadata that name its home page, in order of preference.
_HOME_LABELS = ("homepage", "home", "repository", "source", "documentation")


def _library() -> dict[str, str | None]:
    """``{"version", "url"}`` of the installed chipnet-zoo, from its package metadata (``url``: ``None``
    when the package records no home page)."""
    try:
        meta = metadata.metadata("chipnet-zoo")
    except metadata.PackageNotFoundError:
        return {"version": __version__, "url": None}
    urls = {}
    for item in meta.get_all("Project-URL") or []:
        label, _, url = item.partition(",")
        urls[label.strip().lower()] = url.strip()
    home = next((urls[k] for k in _HOME_LABELS if urls.get(k, "").startswith("https://")), None)
    if home is None and str(meta.get("Home-page") or "").startswith("https://"):
        home = str(meta["Home-page"])
    return {"version": str(meta.get("Version") or __version__), "url": home}


def _md(value: Any) -> str:
    """A value safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def render_card(entries: list[RegistryEntry], *, location: str, name: str, plots: set[str] | None = None,
                title: str | None = None) -> str:
    """The registry's model card: YAML metadata (``model-index`` per entry) + a table, usage and plots.

    Args:
        entries: the registry's entries.
        location: what ``MaskRegistry(...)`` takes to open the registry (shown in the usage example).
        name: the registry's name, for the title (a Hub repo id, a folder's name).
        plots: the plot files (``plots/<key>.png``) that exist, linked from the card.
        title: a title instead of ``chipnet-zoo masks: <name>``.
    """
    entries = sorted(entries, key=lambda e: e.key)
    plots = plots or set()
    name = title or f"chipnet-zoo masks: {name}"
    datasets = sorted({HUB_DATASETS.get(e.dataset, e.dataset) for e in entries})
    results = []
    for e in entries:
        acc = headline_accuracy(e.metrics)
        if acc is not None:
            results.append(EvalResult(
                task_type="image-classification", task_name="Image Classification",
                dataset_type=HUB_DATASETS.get(e.dataset, e.dataset), dataset_name=e.dataset,
                dataset_split=acc[1], metric_type="accuracy", metric_name=acc[0], metric_value=acc[2],
                metric_config=e.key))
    card_data = ModelCardData(
        library_name="chipnet-zoo", tags=["pruning", "chipnet", "structured-pruning", "image-classification"],
        datasets=datasets or None, metrics=["accuracy"], pipeline_tag="image-classification",
        model_name=name, eval_results=results or None)
    rows = []
    for e in entries:
        r = e.ratios
        acc = headline_accuracy(e.metrics)
        rows.append({
            "key": _md(e.key), "arch": _md(e.arch), "dataset": _md(e.dataset),
            "budget": _md(f"{e.budget.kind} {format(e.budget.value, 'g')}"),
            **{k: (f"{float(r[k]):.4f}" if k in r else "-") for k in ("channels", "volume", "params", "flops", "latency")},
            "accuracy": f"{acc[2]:.4f}" if acc else "-", "method": _md(e.method or "-"),
            "weights": _md(e.weights["kind"]) if e.weights else "-",
            "measured_on": _md(e.measured_on) if e.measured_on else None,
            "plot": plot_path(e.key) if plot_path(e.key) in plots else None,
        })
    example = entries[0] if entries else None
    template = resources.files("chipnet_zoo").joinpath("cards/registry.md.j2").read_text(encoding="utf-8")
    card = ModelCard.from_template(
        card_data, template_str=template, title=_md(name), location=location, rows=rows,
        example_key=example.key if example else "<arch>/<dataset>/<budget_type>-<budget>",
        example_arch=example.arch if example else "<arch>",
        example_classes=(example.num_classes or 10) if example else 10, n_entries=len(entries),
        library=_library())
    return str(card)
