"""Every timm model as ``timm/<name>`` (the optional extra ``pip install chipnet-zoo[timm]``).

Registered lazily: ``timm`` is imported only when a ``timm/*`` name is listed or built. Models are
randomly initialised, so nothing is downloaded and offline use keeps working; pretrained weights load
the usual timm way when asked for: ``create_model("timm/resnet50", pretrained=True)`` reads the
Hugging Face cache (set ``HF_HUB_OFFLINE=1`` to never touch the network), and
``pretrained=True, pretrained_cfg_overlay=dict(file="weights.safetensors")`` a local file. timm adapts
the classifier to ``num_classes`` and the stem to ``in_chans`` itself. The default input size is the
model's ``pretrained_cfg["input_size"]``.
"""

from __future__ import annotations

import torch.nn as nn

from ..errors import UnknownModelError
from ._registry import register_namespace

#: What to install when ``timm`` is missing.
INSTALL_HINT = "timm models need the optional extra: pip install 'chipnet-zoo[timm]'"


def _names() -> list[str]:
    try:
        import timm
    except ImportError:
        return []
    return list(timm.list_models())


def build(name: str, *, num_classes: int, in_chans: int, **kwargs: object) -> nn.Module:
    """``timm.create_model(name, num_classes=, in_chans=, pretrained=False, **kwargs)``."""
    try:
        import timm
    except ImportError:  # pragma: no cover - _names() already hides timm/* names then
        raise UnknownModelError(INSTALL_HINT) from None
    kw = {"pretrained": False, **kwargs, "num_classes": num_classes, "in_chans": in_chans}
    model = timm.create_model(name, **kw)
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    if size and len(size) == 3:
        model.default_input_hw = (int(size[1]), int(size[2]))
    return model


register_namespace("timm/", _names, build, input_hw=(224, 224), missing_hint=INSTALL_HINT)
