"""chipnet-zoo: budget-exact structured pruning of CNNs with ChipNet, a registry of learned masks
(local folder or Hugging Face Hub) and cross-dataset mask transfer.

Example:
    >>> import torch, chipnet_zoo as cz
    >>> model = cz.create_model("resnet20", num_classes=10)
    >>> pruner = cz.ChipNetPruner(model, cz.Budget("flops", 0.5), example_input=torch.randn(1, 3, 32, 32))
    >>> mask = pruner.mask()
    >>> mask.ratios["flops"] <= 0.5
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = [
    "Budget",
    "ChipNetPruner",
    "Mask",
    "MaskRegistry",
    "StudentTraining",
    "create_model",
    "list_models",
    "transfer",
    "__version__",
]

# Lazy exports: `import chipnet_zoo` stays cheap and never imports huggingface_hub or datasets.
_LAZY = {
    "Budget": ".budget",
    "ChipNetPruner": ".pruner",
    "Mask": ".mask",
    "MaskRegistry": ".registry",
    "StudentTraining": ".mask_transfer",
    "create_model": ".models",
    "list_models": ".models",
    "transfer": ".mask_transfer",  # not ".transfer": a submodule would shadow the function
}

if TYPE_CHECKING:  # pragma: no cover
    from .budget import Budget
    from .mask import Mask
    from .mask_transfer import StudentTraining, transfer
    from .models import create_model, list_models
    from .pruner import ChipNetPruner
    from .registry import MaskRegistry


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chipnet_zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
