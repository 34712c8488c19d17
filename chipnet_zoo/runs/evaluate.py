"""Measuring a run's model: the final metrics every phase records (val/test accuracy and loss, params,
MACs, the mask's four ratios) and the ``eval`` command (the same plus CPU latency, of a finished run)."""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..errors import RunError
from ..evaluation import evaluate, measure_latency
from .folder import MASK, RUN_KINDS, Run, library_versions, now, open_source_run, write_summary
from .options import RunRequest
from .weights import build_model, load_run_model

ALL_ONES = {"channels": 1.0, "volume": 1.0, "params": 1.0, "flops": 1.0}


def mask_ratios(mask, model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """The mask's four counted hard ratios on this model at this input size, and a latency mask's predicted
    latency ratio as the mask records it (against the table it was thresholded with)."""
    from ..cost import CostModel
    from ..groups import build_channel_graph

    graph = build_channel_graph(model, x)
    mask.check_fits(graph.structure, arch=getattr(model, "arch_name", None))
    ratios = CostModel(graph).hard_ratios(mask.keep_vector())
    if "latency" in mask.ratios and isinstance(mask.metadata.get("latency"), dict):
        ratios["latency"] = float(mask.ratios["latency"])
    return ratios


def cpu_copy(model: nn.Module) -> nn.Module:
    """A float32, contiguous CPU copy of ``model`` without accelerate's autocast wrapper."""
    cpu = copy.deepcopy(model)
    for attr in ("forward", "_original_forward"):  # accelerate's autocast wrapper, if any
        cpu.__dict__.pop(attr, None)
    return cpu.to("cpu").float().to(memory_format=torch.contiguous_format)


def final_metrics(model: nn.Module, example_input: torch.Tensor, loaders, acc) -> dict[str, Any]:
    """Val/test accuracy and loss (over every rank) and the params and MACs of ``model``."""
    from ..cost import measure_params_macs

    val_loader, test_loader = acc.prepare(loaders.val, loaders.test)
    val = evaluate(model, val_loader, accelerator=acc)
    test = evaluate(model, test_loader, accelerator=acc)
    params, macs = measure_params_macs(cpu_copy(model), example_input)
    return {"val_accuracy": val["accuracy"], "val_loss": val["loss"], "test_accuracy": test["accuracy"],
            "test_loss": test["loss"], "params": int(params), "macs": int(macs)}


def evaluate_run(s: RunRequest) -> dict[str, Any]:
    """``eval``: accuracy (val/test), the four ratios, params, MACs and CPU latency of a run's model."""
    from ..cost import measure_params_macs
    from ..data import load_data, make_loaders
    from ..mask import Mask

    if not s.from_run:
        raise RunError("eval needs --from RUN")
    source, config = open_source_run(s.from_run, RUN_KINDS)
    model = load_run_model(source.path)
    data_kwargs = dict(config["dataset"]["load_kwargs"])
    if s.dataset is not None and s.dataset != data_kwargs.get("name_or_path"):
        data_kwargs = {"name_or_path": s.dataset, "seed": data_kwargs.get("seed", 0)}
    for key, value in (("image_column", s.image_column), ("label_column", s.label_column),
                       ("max_samples", s.max_samples)):
        if value is not None:
            data_kwargs[key] = value
    bundle = load_data(**data_kwargs)
    if bundle.num_classes != int(config["num_classes"]):
        raise RunError(f"dataset {bundle.name!r} has {bundle.num_classes} classes, the run's model "
                       f"{config['num_classes']}")
    loaders = make_loaders(bundle, s.batch_size or 256, seed=0)
    device = "cuda" if s.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    model = model.to(device)
    val, test = evaluate(model, loaders.val), evaluate(model, loaders.test)
    x = torch.zeros(1, *config["input_size"])
    cpu = model.to("cpu")
    params, macs = measure_params_macs(cpu, x)
    if config["kind"] == "train":
        ratios = dict(ALL_ONES)
    else:
        ratios = mask_ratios(Mask.load(source.file(MASK)), build_model(config), x)
    latency = measure_latency(cpu, config["input_size"], (64, 1), repeats=s.latency_repeats)
    src_metrics = source.metrics() or {}
    metrics = {
        "kind": "eval", "source_run": str(source.path), "source_kind": config["kind"], "arch": config["arch"],
        "dataset": bundle.name, "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
        "val_loss": val["loss"], "test_loss": test["loss"], "ratios": ratios, "params": int(params),
        "macs": int(macs), "latency_cpu": latency, "epochs_done": src_metrics.get("epochs_done"),
        "budget": config.get("budget"), "versions": library_versions(), "created": now(),
    }
    if s.out:
        out = Run(s.out)
        out.path.mkdir(parents=True, exist_ok=True)
        settings = asdict(s)
        settings["budget"] = str(s.budget) if s.budget is not None else None
        out.write_config({"kind": "eval", "created": now(), "command": ["chipnet-zoo", *s.argv],
                          "settings": settings, "source": str(source.path), "data_kwargs": data_kwargs})
        out.write_metrics(metrics)
    else:
        from .._atomic import atomic_write_json

        atomic_write_json(source.file("eval.json"), metrics)
    write_summary(metrics)
    lat = ", ".join(f"batch {b}: {latency[f'batch_{b}_ms']:.2f} ms" for b in (64, 1))
    print(f"  CPU latency (median of {s.latency_repeats}, {latency['threads']} threads): {lat}", file=sys.stderr)
    return metrics
