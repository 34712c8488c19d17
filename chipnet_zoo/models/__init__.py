"""Architectures by name: ``create_model(name, num_classes, in_chans)`` and ``list_models(filter)``.

CIFAR family (32x32 by default, any small input works): ``resnet8/20/32/56/110``,
``wrn-<depth>-<width>`` (e.g. ``wrn-16-4``, ``wrn-26-12``), ``preresnet11``, ``preresnet164``,
``mobilenetv2-cifar``; every torchvision classification model as ``tv/<name>`` (224x224); and, with
the optional extra ``chipnet-zoo[timm]``, every timm model as ``timm/<name>``.

Example:
    >>> from chipnet_zoo.models import create_model, list_models
    >>> model = create_model("wrn-16-4", num_classes=100)
    >>> model.classifier_name, model.default_input_size
    ('fc', (3, 32, 32))
    >>> "tv/resnet50" in list_models("tv/*")
    True
"""

from __future__ import annotations

from . import cifar_resnet, mobilenetv2, preresnet, timm_models, tv  # noqa: F401  (registration side effects)
from ._registry import (
    create_model,
    find_classifier,
    is_model,
    list_models,
    register_model,
    register_model_pattern,
)

__all__ = [
    "create_model",
    "find_classifier",
    "is_model",
    "list_models",
    "register_model",
    "register_model_pattern",
]
