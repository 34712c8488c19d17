"""Sources read through the ``datasets`` library: Hub ids and local imagefolder / parquet / ``save_to_disk``.

``datasets`` is imported inside functions only, so ``import chipnet_zoo`` stays light. Images are decoded by
PIL straight from the stored bytes (the image column is cast to ``Image(decode=False)``), converted to 1 or
3 channels and resized once, giving uint8 ``(C, H, W)`` arrays.
"""

from __future__ import annotations

import glob as globlib
import io
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

IMAGE_NAMES = ("img", "image", "pixel_values")
LABEL_NAMES = ("label", "labels", "fine_label", "target")
VAL_SPLITS = ("validation", "valid", "val", "dev")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}  # plus "I;16*"
_GLOB_CHARS = set("*?[")


# --- opening sources -----------------------------------------------------------------------------
def _as_dict(obj: Any) -> dict[str, Any]:
    import datasets

    if isinstance(obj, datasets.DatasetDict):
        return {str(k): v for k, v in obj.items()}
    if isinstance(obj, datasets.Dataset):
        return {"train": obj}
    raise DatasetError(f"expected a Dataset or DatasetDict, got {type(obj).__name__}")


def looks_like_path(s: str) -> bool:
    """True for strings meant as local paths: existing, globbed, explicit (./ / ~) or ending in .parquet."""
    return (
        os.path.exists(os.path.expanduser(s))
        or bool(_GLOB_CHARS & set(s))
        or s.startswith((".", "/", "~", "\\"))
        or s.endswith(".parquet")
        or s.count("/") > 1  # a repo id has at most one '/'
        or "\\" in s
    )


def _split_of(filename: str) -> str:
    m = re.search(r"(?:^|[-_./])(train|test|validation|valid|val|dev)(?:[-_.]|$)", filename.lower())
    return m.group(1) if m else "train"


def load_local(path_str: str, *, config: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open a local imagefolder dir, parquet file/glob/dir or ``save_to_disk`` dir -> (splits, source info)."""
    import datasets

    expanded = os.path.expanduser(path_str)
    path = Path(expanded)
    info: dict[str, Any] = {"path": str(path.resolve()) if path.exists() else expanded}
    try:
        if path.is_dir():
            if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                info["kind"] = "save_to_disk"
                return _as_dict(datasets.load_from_disk(str(path))), info
            # hidden files and folders *inside* the dataset are skipped; the path leading to it may be hidden
            files = [p for p in path.rglob("*")
                     if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts)]
            if any(p.suffix == ".parquet" for p in files):
                info["kind"] = "parquet"
                return _as_dict(datasets.load_dataset(str(path), data_dir=config)), info
            if any(p.suffix.lower() in IMAGE_EXTS for p in files):
                info["kind"] = "imagefolder"
                return _as_dict(datasets.load_dataset("imagefolder", data_dir=str(path))), info
            raise DatasetError(
                f"{path}: a directory with no parquet files, no images and no save_to_disk state "
                "(dataset_dict.json / state.json)"
            )
        if path.is_file():
            if path.suffix != ".parquet":
                raise DatasetError(f"{path}: unsupported file type {path.suffix!r} (expected .parquet)")
            info["kind"] = "parquet"
            return _as_dict(datasets.load_dataset("parquet", data_files={"train": str(path)})), info
        if _GLOB_CHARS & set(expanded):
            matches = sorted(globlib.glob(expanded, recursive=True))
            if not matches:
                raise DatasetError(f"{path_str}: the glob matches no files")
            bad = [m for m in matches if not m.endswith(".parquet")]
            if bad:
                raise DatasetError(f"{path_str}: the glob matches non-parquet files, e.g. {bad[0]}")
            groups: dict[str, list[str]] = {}
            for m in matches:
                groups.setdefault(_split_of(os.path.basename(m)), []).append(m)
            info["kind"] = "parquet"
            return _as_dict(datasets.load_dataset("parquet", data_files=groups)), info
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear error
        raise DatasetError(f"could not load the local dataset {path_str!r}: {type(e).__name__}: {e}") from e
    raise DatasetError(f"{path_str}: no such file or directory")


def load_hub(repo_id: str, *, config: str | None = None) -> dict[str, Any]:
    """``datasets.load_dataset(repo_id, config)`` -> splits. Exceptions propagate (the caller words them)."""
    import datasets

    return _as_dict(datasets.load_dataset(repo_id, name=config))


def is_missing_config(exc: BaseException) -> bool:
    """True for the ``datasets`` error raised when a repo has no config of the requested name."""
    return isinstance(exc, ValueError) and "BuilderConfig" in str(exc) and "not found" in str(exc)


# --- columns -------------------------------------------------------------------------------------
def describe_columns(features: Any) -> str:
    return ", ".join(f"{k} ({_ftype(v)})" for k, v in features.items()) or "(none)"


def _ftype(f: Any) -> str:
    name = type(f).__name__
    dtype = getattr(f, "dtype", None)
    return f"{name}:{dtype}" if name == "Value" else name


def _image_ok(f: Any) -> bool:
    import datasets

    if isinstance(f, datasets.Image):
        return True
    if type(f).__name__ in ("Array2D", "Array3D", "Sequence", "List", "LargeList") or isinstance(f, list):
        return True
    return isinstance(f, datasets.Value) and f.dtype in ("binary", "large_binary")


def _label_ok(f: Any) -> bool:
    import datasets

    if isinstance(f, datasets.ClassLabel):
        return True
    return isinstance(f, datasets.Value) and (
        f.dtype.startswith(("int", "uint")) or f.dtype in ("string", "large_string", "bool")
    )


def detect_columns(
    features: Any, image_column: str | None, label_column: str | None, where: str
) -> tuple[str, str]:
    """Pick the image and label columns (explicit names are validated). Errors name the columns there are."""
    import datasets

    cols = describe_columns(features)
    if image_column is not None:
        if image_column not in features:
            raise DatasetError(f"{where}: no image column {image_column!r}; its columns are: {cols}")
        if not _image_ok(features[image_column]):
            raise DatasetError(
                f"{where}: column {image_column!r} ({_ftype(features[image_column])}) is not an image or "
                f"pixel array; its columns are: {cols}"
            )
    else:
        image_column = next((k for k, v in features.items() if isinstance(v, datasets.Image)), None)
        if image_column is None:
            image_column = next((n for n in IMAGE_NAMES if n in features and _image_ok(features[n])), None)
        if image_column is None:
            raise DatasetError(
                f"{where}: no usable image column (an Image feature or one named {', '.join(IMAGE_NAMES)}); "
                f"its columns are: {cols}. Name one with image_column= / --image-column."
            )
    if label_column is not None:
        if label_column not in features:
            raise DatasetError(f"{where}: no label column {label_column!r}; its columns are: {cols}")
        if not _label_ok(features[label_column]):
            raise DatasetError(
                f"{where}: column {label_column!r} ({_ftype(features[label_column])}) is not a class label "
                f"(ClassLabel, integer or string); its columns are: {cols}"
            )
    else:
        label_column = next(
            (k for k, v in features.items() if isinstance(v, datasets.ClassLabel) and k != image_column), None
        )
        if label_column is None:
            label_column = next((n for n in LABEL_NAMES if n in features and _label_ok(features[n])), None)
        if label_column is None:
            raise DatasetError(
                f"{where}: no usable label column (a ClassLabel or one named {', '.join(LABEL_NAMES)}); "
                f"its columns are: {cols}. Name one with label_column= / --label-column."
            )
    return image_column, label_column


def read_labels(ds: Any, column: str) -> tuple[np.ndarray, list[str] | None]:
    """A split's labels as a numpy array (ints, or objects for string labels) and ClassLabel names if any."""
    import datasets

    feat = ds.features[column]
    values = ds.select_columns([column]).with_format("numpy")[column][:]
    arr = np.asarray(values)
    if isinstance(feat, datasets.ClassLabel):
        return arr.astype(np.int64), list(feat.names)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64), None
    return np.asarray([str(v) for v in values], dtype=object), None


# --- decoding ------------------------------------------------------------------------------------
def _is_colour(mode: str) -> bool:
    return not (mode in _GRAY_MODES or mode.startswith("I;16"))


def _pil_from_array(a: np.ndarray) -> Any:
    """A numeric array (flat square, HW, HWC or CHW; uint8 or float) -> a PIL image in L / RGB / RGBA."""
    from PIL import Image

    a = np.asarray(a)
    if a.ndim == 1:
        side = math.isqrt(a.size)
        if side * side != a.size:
            raise DatasetError(f"a flat pixel array of length {a.size} is not a square image")
        a = a.reshape(side, side)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise DatasetError(f"cannot read a pixel array of shape {a.shape} as an image")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        top = float(a.max()) if a.size else 0.0
        if a.dtype.kind == "f" and top <= 1.0:
            a = a * 255.0
        elif top > 255.0:
            a = a * (255.0 / top)
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def to_chw(img: Any, chans: int, size: tuple[int, int] | None) -> np.ndarray:
    """A PIL image of any mode -> uint8 ``(chans, H, W)``; alpha is composited onto black, 16-bit/float
    images are rescaled to 0..255, then the image is resized (bilinear, antialiased) to ``size``."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        img = _pil_from_array(np.asarray(img).astype(np.float64) / (257.0 if mode.startswith("I;16") else 1.0))
    elif mode == "1":
        img = img.convert("L")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
    if img.mode in ("LA", "RGBA"):
        a = np.asarray(img).astype(np.uint16)
        rgb = (a[..., :-1] * a[..., -1:] + 127) // 255
        img = Image.fromarray(rgb.astype(np.uint8).squeeze(-1) if rgb.shape[-1] == 1 else rgb.astype(np.uint8))
    if chans == 1 and img.mode != "L":
        img = img.convert("L")
    elif chans == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    a = np.asarray(img)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


class HFImageSource:
    """One split's image column, decoded on demand by PIL (never through ``datasets``' own decoding)."""

    def __init__(self, ds: Any, image_column: str):
        import datasets

        feat = ds.features[image_column]
        self.kind = "image" if isinstance(feat, datasets.Image) else (
            "bytes" if isinstance(feat, datasets.Value) else "array"
        )
        if self.kind == "image":
            ds = ds.cast_column(image_column, datasets.Image(decode=False))
        ds = ds.select_columns([image_column])
        self.ds = ds.with_format("numpy") if self.kind == "array" else ds
        self.column = image_column

    def __len__(self) -> int:
        return len(self.ds)

    def _open(self, value: Any) -> Any:
        from PIL import Image

        if self.kind == "array":
            return _pil_from_array(value)
        if self.kind == "bytes":
            return Image.open(io.BytesIO(value))
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"]))
        if value.get("path"):
            return Image.open(value["path"])
        raise DatasetError(f"column {self.column!r} holds an empty image entry")

    def rows(self, indices: Sequence[int]) -> list[Any]:
        return list(self.ds[[int(i) for i in indices]][self.column])

    def probe(self, indices: Sequence[int]) -> list[tuple[bool, tuple[int, int]]]:
        """(is colour, (H, W)) per row; PIL reads only the header."""
        out = []
        for value in self.rows(indices):
            img = self._open(value)
            out.append((_is_colour(img.mode), (img.size[1], img.size[0])))
        return out

    def decode(self, indices: Sequence[int], chans: int, size: tuple[int, int], progress: bool = False) -> np.ndarray:
        """Rows ``indices`` as one uint8 ``(N, chans, H, W)`` array, decoded in chunks."""
        from tqdm.auto import tqdm

        out = np.empty((len(indices), chans, size[0], size[1]), dtype=np.uint8)
        chunk = 512
        starts = range(0, len(indices), chunk)
        bar = tqdm(starts, desc="decoding images", unit="chunk", disable=not progress, leave=False)
        for s in bar:
            for j, value in enumerate(self.rows(indices[s : s + chunk])):
                out[s + j] = to_chw(self._open(value), chans, size)
        return out

    def decode_one(self, index: int, chans: int, size: tuple[int, int]) -> np.ndarray:
        return to_chw(self._open(self.ds[int(index)][self.column]), chans, size).copy()  # writable
