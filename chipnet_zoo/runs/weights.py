"""Weights and models of run folders: safetensors state dicts (strict loading: :mod:`chipnet_zoo.weights`), and
:func:`load_run_model` (the runnable model a run produced, in one call).

    >>> from chipnet_zoo.runs import load_run_model
    >>> model = load_run_model("runs/finetune-resnet8-mnist5k-flops-0.25")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_tensors, save_tensors
from ..errors import RunError
from ..weights import load_weights_into  # the one strict loader (runs and the registry)
from .folder import MASK, PRUNED_WEIGHTS, RUN_KINDS, WEIGHTS, Run


def save_state_dict(path: str | Path, state: Mapping[str, torch.Tensor], **metadata: Any) -> Path:
    """A model's ``state_dict`` as safetensors (atomic); metadata under ``chipnet_zoo.*`` as strings."""
    meta = {f"chipnet_zoo.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    save_tensors(Path(path), dict(state), meta)
    return Path(path)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"weights file not found: {path}")
    try:
        return load_tensors(path)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise RunError(f"cannot read weights file {path}: {exc}") from None


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised model of the run's architecture, class count and input channels."""
    from ..models import create_model

    return create_model(config["arch"], num_classes=int(config["num_classes"]), in_chans=int(config["in_chans"]))


def example_input(config: Mapping[str, Any], batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, *[int(v) for v in config["input_size"]])


def load_run_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The runnable model a run produced, in eval mode, with ONE call.

    ``train``: the dense model; ``prune``: the pruned-phase weights slimmed with the mask (computes what
    the masked model does); ``finetune``: the slimmed, fine-tuned model (arch rebuilt, slimmed with the
    run's mask, weights loaded strictly).
    """
    from ..mask import Mask

    run = Run(run_dir)
    config = run.config()
    kind = config.get("kind")
    if kind not in RUN_KINDS:
        raise RunError(f"{run.path}: unknown run kind {kind!r}")
    model = build_model(config)
    if kind == "train":
        model = load_weights_into(model, load_state_dict_file(run.file(WEIGHTS)), source=str(run.file(WEIGHTS)))
    else:
        mask = Mask.load(run.file(MASK))
        mask.check_arch(config["arch"])
        if kind == "prune":
            load_weights_into(model, load_state_dict_file(run.file(PRUNED_WEIGHTS)), source=str(run.file(PRUNED_WEIGHTS)))
            model = mask.slim(model, example_input(config))
        else:
            model = mask.slim(model, example_input(config))
            load_weights_into(model, load_state_dict_file(run.file(WEIGHTS)), source=str(run.file(WEIGHTS)))
    for attr in ("arch_name", "num_classes", "in_chans", "default_input_size", "classifier_name"):
        if not hasattr(model, attr):
            setattr(model, attr, config.get({"default_input_size": "input_size"}.get(attr, attr)))
    return model.to(device).eval()
