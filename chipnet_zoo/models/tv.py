"""Every torchvision classification model as ``tv/<name>``, randomly initialised.

Registered lazily: ``torchvision.models`` is imported only when a ``tv/*`` name is listed or built.
Only ``torchvision.models.list_models(module=torchvision.models)`` is exposed: the classification
models, not detection, segmentation, video, optical flow or quantized ones.

``in_chans != 3`` replaces the stem (the first ``nn.Conv2d``, which takes 3 channels) by a conv of
the same configuration with ``in_chans`` inputs; its weights are derived from the original random
ones as timm's ``adapt_input_conv`` does (summed for 1 channel, else tiled and scaled by 3/in_chans),
which keeps the layer's initial output scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..errors import UnsupportedModelError
from ._registry import register_namespace

#: Keyword arguments some models need to build cleanly with random weights (the user's override them).
EXTRA_KWARGS: dict[str, dict[str, object]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _names() -> list[str]:
    import torchvision.models as tvm

    return list(tvm.list_models(module=tvm))


def _adapt_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = math.ceil(in_chans / weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def replace_stem(model: nn.Module, in_chans: int) -> str:
    """Swap the first ``nn.Conv2d`` of ``model`` for one with ``in_chans`` inputs; returns its name."""
    found = next(((q, m) for q, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no Conv2d stem to adapt to {in_chans} channels"
        )
    qname, conv = found
    if conv.groups != 1:
        raise UnsupportedModelError(f"{type(model).__name__}: the stem conv {qname!r} is grouped")
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(_adapt_weight(conv.weight, in_chans))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent_name, _, attr = qname.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return qname


def build(name: str, *, num_classes: int, in_chans: int, **kwargs: object) -> nn.Module:
    """Build ``torchvision.models.<name>`` with ``weights=None`` (unless given) and ``num_classes``."""
    import torchvision.models as tvm

    kw = {**EXTRA_KWARGS.get(name, {}), "weights": None, **kwargs, "num_classes": num_classes}
    model = tvm.get_model(name, **kw)
    if in_chans != 3:
        replace_stem(model, in_chans)
    return model


register_namespace("tv/", _names, build, input_hw=(224, 224))
