"""Datasets for chipnet-zoo: named, Hub ids and local paths -> seeded train/val/test torch Datasets.

    >>> from chipnet_zoo.data import load_data, make_loaders
    >>> bundle = load_data("mnist5k", seed=0, max_samples=500)
    >>> bundle.num_classes, bundle.input_size
    (10, (1, 28, 28))
    >>> train, val, test = make_loaders(bundle, batch_size=64, seed=0)

Items are ``(float32 tensor C x H x W, normalised; int label)``. ``huggingface_hub`` and ``datasets`` are
only imported when a Hub or local ``datasets`` source is loaded.
"""

from __future__ import annotations

from .core import (
    DataBundle,
    LazyImageDataset,
    Loaders,
    Normalize255,
    TensorImageDataset,
    build_transforms,
    load_data,
    make_loaders,
)
from .named import NAMED_DATASETS, DatasetSpec, list_datasets, read_pickled_ndarray

__all__ = [
    "NAMED_DATASETS",
    "DataBundle",
    "DatasetSpec",
    "LazyImageDataset",
    "Loaders",
    "Normalize255",
    "TensorImageDataset",
    "build_transforms",
    "list_datasets",
    "load_data",
    "make_loaders",
    "read_pickled_ndarray",
]
