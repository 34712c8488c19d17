"""``MaskRegistry``: learned masks (and optional weights) keyed by (architecture, dataset, budget), in a
local folder or a Hugging Face Hub repo (``hf://<owner>/<repo>[@<revision>]``), with the same layout in
both (DESIGN §5)::

    index.json                                        # every entry: key, path, sha256, size, metadata
    masks/<arch>/<dataset>/<budget_type>-<budget>.safetensors
    weights/<arch>/<dataset>/<budget_type>-<budget>.safetensors   # optional: the slimmed model
    weights/<arch>/<dataset>/dense.safetensors                    # optional: the dense model
    plots/<arch>/<dataset>/<budget_type>-<budget>.png             # Hub: kept channels per group
    README.md                                                     # Hub: the model card

**Keys** are ``<arch>/<dataset>/<budget_type>-<budget>``, the budget written with ``format(v, "g")``
(``resnet56/cifar100/flops-0.1``). Every path segment is ``[A-Za-z0-9._-]``, starts with a letter, digit
or ``_``, and holds no ``..`` or ``--``. A ``/`` inside an architecture or dataset name (torchvision's
``tv/resnet50``, a Hub dataset id ``uoft-cs/cifar10``) is written ``--`` in keys and paths
(``tv--resnet50/cifar10/flops-0.25``); the encoding is reversible because ``--`` is not allowed in a
segment. ``pull("tv/resnet50/cifar10/flops-0.25")`` is accepted too (extra leading segments belong to
the architecture).

A local folder stores each file content-addressed next to that path (``flops-0.25.<sha256>.safetensors``)
so that the atomic replacement of ``index.json`` is the single commit point of a push (see
``_registry_local.LocalBackend``); the paths in the index are the same for both backends.

Only safetensors and JSON are ever read; every file is checked against the sha256 in the index, and the
index and mask contents against their schema (``chipnet_zoo/validation.py``, docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import constants
from ._secrets import register_secret
from .budget import BUDGET_KINDS, Budget
from .errors import (
    BudgetExceededError,
    EntryExistsError,
    EntryNotFoundError,
    IndexFormatError,
    IntegrityError,
    InvalidKeyError,
    MaskContentError,
    MaskFormatError,
    OutputPathError,
)
from .validation import MAX_INDEX_BYTES, MAX_MASK_BYTES, check_index_document, check_index_row, load_json

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .mask import Mask

INDEX_FILE = "index.json"
#: The read-only zoo shipped inside the package (see :meth:`MaskRegistry.builtin`).
BUILTIN_ZOO = Path(__file__).resolve().parent / "zoo"
INDEX_FORMAT = "chipnet-zoo-registry"
INDEX_VERSION = 1
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_MAX_KEY_LENGTH = 200

Mutator = Callable[[dict[str, "RegistryEntry"]], tuple[dict[str, "RegistryEntry"], dict[str, bytes]]]


# --- keys and paths --------------------------------------------------------------------------------
def _check_segment(segment: str, what: str) -> str:
    if (not isinstance(segment, str) or not _SEGMENT.fullmatch(segment) or ".." in segment
            or "--" in segment or segment.endswith("-")):
        raise InvalidKeyError(
            f"invalid {what} {segment!r}: use letters, digits, '.', '_' and '-' (starting with a letter, digit "
            "or '_', no '..' or '--', no trailing '-')")
    return segment


def encode_name(name: str, what: str = "name") -> str:
    """Encode an architecture or dataset name as one path segment: ``tv/resnet50`` -> ``tv--resnet50``."""
    if not isinstance(name, str) or not name:
        raise InvalidKeyError(f"{what} must be a non-empty string, got {name!r}")
    if "\\" in name or name.startswith("/") or name.endswith("/"):
        raise InvalidKeyError(f"invalid {what} {name!r}: no backslashes, leading or trailing '/'")
    return "--".join(_check_segment(part, what) for part in name.split("/"))


def decode_name(segment: str, what: str = "name") -> str:
    """Inverse of :func:`encode_name`: ``tv--resnet50`` -> ``tv/resnet50``."""
    return "/".join(_check_segment(part, what) for part in segment.split("--"))


def make_key(arch: str, dataset: str, budget: Budget | str, value: float | None = None) -> str:
    """The canonical key: ``make_key("tv/resnet50", "cifar10", "flops", 0.25)`` ->
    ``"tv--resnet50/cifar10/flops-0.25"`` (``budget`` may also be a ``Budget`` or ``"flops:0.25"``)."""
    b = Budget(budget, value) if value is not None else Budget.parse(budget)
    return f"{encode_name(arch, 'architecture')}/{encode_name(dataset, 'dataset')}/{b.slug}"


def parse_key(key: str) -> tuple[str, str, Budget]:
    """``"tv--resnet50/cifar10/flops-0.25"`` -> ``("tv/resnet50", "cifar10", Budget("flops", 0.25))``.

    Raises:
        InvalidKeyError: a malformed or unsafe key (absolute, ``..``, backslashes, bad characters).
    """
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LENGTH:
        raise InvalidKeyError(f"a registry key must be a string of 1..{_MAX_KEY_LENGTH} characters, got {key!r}")
    if "\\" in key or key.startswith("/") or ":" in key.split("/")[0]:
        raise InvalidKeyError(f"invalid registry key {key!r}: no absolute paths or backslashes")
    parts = key.split("/")
    if len(parts) < 3:
        raise InvalidKeyError(f"invalid registry key {key!r}: expected '<arch>/<dataset>/<budget_type>-<budget>'")
    slug = _check_segment(parts[-1], "budget")
    kind, _, value = slug.partition("-")
    if not kind or not value:
        raise InvalidKeyError(f"invalid budget {slug!r} in key {key!r}: expected e.g. 'flops-0.1' "
                              f"(kinds: {', '.join(BUDGET_KINDS)})")
    try:
        budget = Budget(kind, float(value))
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"invalid budget {slug!r} in key {key!r}: {exc}") from None
    arch = "/".join(decode_name(p, "architecture") for p in parts[:-2])
    return arch, decode_name(parts[-2], "dataset"), budget


def canonical_key(key: str) -> str:
    """The canonical spelling of ``key`` (``tv/resnet50/c10/flops-0.250`` -> ``tv--resnet50/c10/flops-0.25``)."""
    return make_key(*parse_key(key))


def mask_path(key: str) -> str:
    return f"masks/{canonical_key(key)}.safetensors"


def weights_path(key: str, kind: str = "slim") -> str:
    """``weights/<key>.safetensors`` (slimmed) or ``weights/<arch>/<dataset>/dense.safetensors``."""
    key = canonical_key(key)
    return f"weights/{key.rsplit('/', 1)[0]}/dense.safetensors" if kind == "dense" else f"weights/{key}.safetensors"


def plot_path(key: str) -> str:
    return f"plots/{canonical_key(key)}.png"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, sha256: str, size: int | None, what: str) -> bytes:
    """Return ``data`` if it matches the index, else raise :class:`IntegrityError`."""
    actual = sha256_hex(data)
    if actual != sha256 or (size is not None and len(data) != size):
        raise IntegrityError(
            f"{what}: sha256 {actual} ({len(data)} bytes) does not match the index ({sha256}, {size} bytes); "
            "the file was changed or corrupted after it was published - refusing it")
    return data


# --- entries and the index -------------------------------------------------------------------------
@dataclass
class RegistryEntry:
    """One registry entry (a row of ``index.json``)."""

    key: str
    arch: str
    dataset: str
    budget_type: str
    budget: float
    path: str
    sha256: str
    size: int
    ratios: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    created: str = ""
    num_classes: int | None = None
    input_size: list[int] | None = None
    format_version: str = ""
    #: ``{"path", "sha256", "size", "kind": "slim"|"dense"}`` when weights were pushed with the mask.
    weights: dict[str, Any] | None = None

    @property
    def budget_spec(self) -> Budget:
        return Budget(self.budget_type, self.budget)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "index.json") -> RegistryEntry:
        """Parse and validate one index row; anything inconsistent is an :class:`IndexFormatError`."""
        check_index_row(raw, where)  # types, ranges (chipnet_zoo/validation.py)
        entry = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

        def bad(field: str, problem: str) -> IndexFormatError:
            return IndexFormatError(f"corrupt registry index {where}: entry {entry.key[:120]!r}: {problem}",
                                    where=where, field=field)

        try:
            arch, dataset, budget = parse_key(entry.key)
        except InvalidKeyError as exc:
            raise bad("key", str(exc)) from None
        if entry.key != make_key(arch, dataset, budget):
            raise bad("key", f"key {entry.key!r} is not canonical")
        for name, expected in (("arch", arch), ("dataset", dataset), ("budget_type", budget.kind)):
            if getattr(entry, name) != expected:
                raise bad(name, f"{name} {getattr(entry, name)!r} does not match the key ({expected!r})")
        if float(entry.budget) != budget.value:
            raise bad("budget", f"budget {entry.budget!r} does not match the key ({budget.value:g})")
        if entry.path != mask_path(entry.key):
            raise bad("path", f"path {entry.path!r} is not {mask_path(entry.key)!r}")
        if entry.weights is not None and entry.weights["path"] != weights_path(entry.key, entry.weights["kind"]):
            raise bad("weights", f"weights path {entry.weights['path']!r} is not "
                                 f"{weights_path(entry.key, entry.weights['kind'])!r}")
        entry.ratios = {k: float(v) for k, v in entry.ratios.items()}
        return entry


def parse_index(data: bytes, where: str) -> dict[str, RegistryEntry]:
    """Parse ``index.json`` bytes into ``{key: entry}``; anything malformed is an :class:`IndexFormatError`
    naming the field (size and nesting depth are bounded before parsing)."""
    doc = load_json(data, what=f"registry index {where}", max_bytes=MAX_INDEX_BYTES,
                    error=lambda msg: IndexFormatError(f"corrupt {msg}", where=where))
    rows = check_index_document(doc, where, fmt=INDEX_FORMAT, version=INDEX_VERSION)
    entries: dict[str, RegistryEntry] = {}
    for raw in rows:
        entry = RegistryEntry.from_dict(raw, where)
        if entry.key in entries:
            raise IndexFormatError(f"corrupt registry index {where}: duplicate key {entry.key!r}", where=where,
                                   field="key")
        entries[entry.key] = entry
    return entries


def dump_index(entries: dict[str, RegistryEntry]) -> bytes:
    doc = {"format": INDEX_FORMAT, "version": INDEX_VERSION,
           "entries": [entries[k].to_dict() for k in sorted(entries)]}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


# --- the registry ----------------------------------------------------------------------------------
def _not_found_hint(key: str, entries: Any) -> str:
    """What the registry holds for the key's architecture: budgets per dataset."""
    arch, dataset, _ = parse_key(key)
    entries = list(entries)
    by_dataset: dict[str, list[str]] = {}
    for e in sorted(entries, key=lambda e: (e.dataset, e.budget_type, e.budget)):
        if e.arch == arch:
            by_dataset.setdefault(e.dataset, []).append(e.key.rsplit("/", 1)[1])
    if dataset in by_dataset:
        return f"budgets available for {arch} on {dataset}: {', '.join(by_dataset[dataset])}"
    if by_dataset:
        return f"{arch} has masks for datasets: " + "; ".join(
            f"{d} ({', '.join(b)})" for d, b in sorted(by_dataset.items()))
    n = len(entries)
    return f"the registry holds {n} entr{'y' if n == 1 else 'ies'} and none for {arch}"


def _mask_bytes(mask_or_path: Any) -> bytes:
    if isinstance(mask_or_path, (str, Path)):
        path = Path(mask_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"mask file not found: {path}")
        if path.stat().st_size > MAX_MASK_BYTES:
            raise MaskFormatError(f"{path} is not a mask file: {path.stat().st_size} bytes, more than the "
                                  f"{MAX_MASK_BYTES} accepted")
        return path.read_bytes()
    if isinstance(mask_or_path, (bytes, bytearray, memoryview)):
        return bytes(mask_or_path)
    if hasattr(mask_or_path, "to_bytes"):
        return mask_or_path.to_bytes()  # deterministic bytes
    raise TypeError(f"push() takes a Mask, a mask file path or mask bytes, not {type(mask_or_path).__name__}")


class MaskRegistry:
    """Masks keyed by (arch, dataset, budget) in a local folder or a Hub repo.

    Args:
        location: a folder, or ``hf://<owner>/<repo>[@<revision>]``. ``None``: the user-level default
            folder (``constants.CHIPNET_ZOO_REGISTRY``, env ``CHIPNET_ZOO_REGISTRY``).
        endpoint: Hub endpoint (default: ``HF_ENDPOINT`` via huggingface_hub).
        token: Hub token (default: the usual places: ``HF_TOKEN``, the stored login). Never printed.
        private: create a missing Hub repo as private.

    Example:
        >>> import tempfile, torch, chipnet_zoo as cz
        >>> mask = cz.Mask({"conv1": torch.tensor([True, False])}, {"conv1": torch.tensor([0.9, 0.1])},
        ...                {"arch": "resnet8", "budget_type": "flops", "budget": 0.5})
        >>> reg = cz.MaskRegistry(tempfile.mkdtemp())
        >>> reg.push(mask, dataset="cifar100").key
        'resnet8/cifar100/flops-0.5'
        >>> reg.pull("resnet8/cifar100/flops-0.5") == mask.with_metadata(dataset="cifar100")
        True
        >>> [e.key for e in reg.list(arch="resnet8")]
        ['resnet8/cifar100/flops-0.5']
    """

    def __init__(self, location: str | os.PathLike | None = None, *, endpoint: str | None = None,
                 token: str | None = None, private: bool = False):
        register_secret(token)  # never printed, whichever backend uses it (chipnet_zoo/_secrets.py)
        default = location is None
        self._default = default  # an unconfigured default registry falls back to the built-in zoo on pull
        loc = os.fspath(constants.CHIPNET_ZOO_REGISTRY if default else location)
        if loc.startswith("hf://"):
            from ._hub import HubBackend

            self._backend: Any = HubBackend.from_url(loc, endpoint=endpoint, token=token, private=private)
        elif "://" in loc:
            raise InvalidKeyError(f"unsupported registry location {loc!r}: use a folder or hf://<owner>/<repo>")
        else:
            from ._registry_local import LocalBackend

            self._backend = LocalBackend(Path(loc).expanduser(), missing_ok=default)
        self.location = str(self._backend)

    def __repr__(self) -> str:
        return f"MaskRegistry({self.location!r})"

    @classmethod
    def builtin(cls) -> MaskRegistry:
        """The read-only zoo shipped inside the package (``chipnet_zoo/zoo``). ``MaskRegistry()`` (no
        location) falls back to it when pulling a key it does not hold; pushes to it are refused."""
        reg = cls(BUILTIN_ZOO)

        def refuse(*_args: Any, **_kwargs: Any) -> None:
            raise InvalidKeyError(f"the built-in zoo {BUILTIN_ZOO} is read-only; push to your own registry")

        reg._backend.update = refuse
        return reg

    def _builtin_fallback(self, error: EntryNotFoundError) -> MaskRegistry:
        """The built-in zoo, when this is the unconfigured default registry (else re-raise ``error``)."""
        if not getattr(self, "_default", False) or not (BUILTIN_ZOO / INDEX_FILE).is_file():
            raise error
        return MaskRegistry.builtin()

    @property
    def is_hub(self) -> bool:
        return self._backend.writes_card

    # --- reading ---------------------------------------------------------------------------------
    def list(self, arch: str | None = None, dataset: str | None = None,
             budget_type: str | None = None) -> list[RegistryEntry]:
        """Entries (sorted by key), optionally filtered."""
        kind = Budget(budget_type, 0.5).kind if budget_type else None
        return [e for _, e in sorted(self._backend.read_index().items())
                if (arch is None or e.arch == arch) and (dataset is None or e.dataset == dataset)
                and (kind is None or e.budget_type == kind)]

    def _resolve(self, key: str | None, arch: str | None, dataset: str | None,
                 budget: Budget | str | None) -> tuple[RegistryEntry, dict[str, RegistryEntry]]:
        if key is None:
            if not (arch and dataset and budget):
                raise InvalidKeyError("pass a key, or arch=, dataset= and budget= (e.g. budget='flops:0.1')")
            key = make_key(arch, dataset, budget.replace("-", ":", 1) if isinstance(budget, str)
                           and ":" not in budget else budget)
        key = canonical_key(key)
        entries = self._backend.read_index()
        if key in entries:
            return entries[key], entries
        raise EntryNotFoundError(f"no mask {key!r} in {self.location}; {_not_found_hint(key, entries.values())}")

    def _not_found_with_builtin(self, error: EntryNotFoundError, key: str | None, arch: str | None,
                                dataset: str | None, budget: Budget | str | None) -> EntryNotFoundError:
        """``error`` for the default registry, its hint also listing what the built-in zoo holds."""
        if not self._default or not (BUILTIN_ZOO / INDEX_FILE).is_file() or key is None and not (
                arch and dataset and budget):
            return error
        try:
            wanted = canonical_key(key) if key is not None else make_key(
                arch, dataset, budget.replace("-", ":", 1) if isinstance(budget, str) and ":" not in budget
                else budget)
            entries = {**MaskRegistry.builtin()._backend.read_index(), **self._backend.read_index()}
        except (InvalidKeyError, IntegrityError):
            return error
        return EntryNotFoundError(f"no mask {wanted!r} in {self.location} or the built-in zoo; "
                                  f"{_not_found_hint(wanted, entries.values())}")

    def entry(self, key: str) -> RegistryEntry:
        return self._resolve(key, None, None, None)[0]

    #: How often a read re-resolves an entry whose file vanished because a concurrent push replaced it.
    STALE_READ_ATTEMPTS = 8

    def _read_entry(self, entry: RegistryEntry, weights: bool = False) -> tuple[RegistryEntry, bytes, bytes | None]:
        """``(entry, mask bytes, weights bytes)`` of one consistent index version, sha256-verified. A file
        missing because a concurrent overwrite collected it makes the read start over on the new index."""
        key = entry.key
        for attempt in range(self.STALE_READ_ATTEMPTS):
            if attempt:
                entry, _ = self._resolve(key, None, None, None)
            try:
                data = self._backend.read_file(entry.path, entry.sha256, entry.size)
                w = entry.weights if weights else None
                wdata = self._backend.read_file(w["path"], w["sha256"], w.get("size")) if w else None
                return entry, data, wdata
            except EntryNotFoundError:
                # a concurrent push may have replaced the entry (its file collected), possibly back and forth
                # (the same content re-pushed): re-read the index and try again, a few times
                if attempt + 1 == self.STALE_READ_ATTEMPTS or not getattr(self._backend, "collects_garbage", False):
                    raise
                time.sleep(0.005 * 2 ** attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def pull_bytes(self, key: str | None = None, *, arch: str | None = None, dataset: str | None = None,
                   budget: Budget | str | None = None) -> bytes:
        """The exact, sha256-verified bytes of a mask file."""
        try:
            entry, _ = self._resolve(key, arch, dataset, budget)
        except EntryNotFoundError as exc:
            try:
                return self._builtin_fallback(exc).pull_bytes(key, arch=arch, dataset=dataset, budget=budget)
            except EntryNotFoundError:
                raise self._not_found_with_builtin(exc, key, arch, dataset, budget) from None
        return self._read_entry(entry)[1]

    def pull(self, key: str | None = None, *, arch: str | None = None, dataset: str | None = None,
             budget: Budget | str | None = None) -> Mask:
        """The :class:`~chipnet_zoo.mask.Mask` at ``key`` (or at ``arch``/``dataset``/``budget``)."""
        from .mask import Mask

        return Mask.from_bytes(self.pull_bytes(key, arch=arch, dataset=dataset, budget=budget))

    def pull_file(self, key: str, out: str | os.PathLike) -> Path:
        """Write the verified mask file to ``out`` (atomically) and return its path."""
        from ._registry_local import atomic_write

        out = Path(out)
        if out.is_dir():
            raise OutputPathError(f"--out {out} is a folder; give a file path, e.g. "
                                  f"{out / (canonical_key(key).rsplit('/', 1)[1] + '.safetensors')}", path=str(out))
        atomic_write(out, self.pull_bytes(key))
        return out

    def pull_model(self, key: str | None = None, *, arch: str | None = None, dataset: str | None = None,
                   budget: Budget | str | None = None) -> nn.Module:
        """A ready, slimmed ``nn.Module`` in eval mode: the architecture rebuilt, the mask applied and
        slimmed, the pushed weights loaded (slimmed weights as they are; dense weights before slimming)."""
        from safetensors.torch import load

        from ._registry_local import load_state_strict
        from .mask import Mask
        from .models import create_model

        try:
            entry, _ = self._resolve(key, arch, dataset, budget)
        except EntryNotFoundError as exc:
            try:
                return self._builtin_fallback(exc).pull_model(key, arch=arch, dataset=dataset, budget=budget)
            except EntryNotFoundError:
                raise self._not_found_with_builtin(exc, key, arch, dataset, budget) from None
        if not entry.weights:
            raise EntryNotFoundError(f"{entry.key} in {self.location} has no weights; push it with weights=")
        entry, data, wdata = self._read_entry(entry, weights=True)
        if wdata is None:
            raise EntryNotFoundError(f"{entry.key} in {self.location} has no weights; push it with weights=")
        mask = Mask.from_bytes(data)
        w = entry.weights
        state = load(wdata)
        num_classes = entry.num_classes or mask.metadata.get("num_classes")
        if not num_classes:
            raise MaskFormatError(f"{entry.key}: the mask records no num_classes, cannot rebuild the model")
        in_chans = int((entry.input_size or mask.metadata.get("input_size") or [3])[0])
        model = create_model(entry.arch, num_classes=int(num_classes), in_chans=in_chans)
        if w["kind"] == "dense":
            load_state_strict(model, state, f"dense weights of {entry.key}")
            model = mask.slim(model)
        else:
            model = mask.slim(model)
            load_state_strict(model, state, f"slimmed weights of {entry.key}")
        return model.eval()

    # --- writing ---------------------------------------------------------------------------------
    def _prepare(self, data: bytes, *, dataset: str | None, budget: Budget | str | None,
                 metrics: dict | None) -> tuple[Mask, bytes, RegistryEntry]:
        """The mask as it will be stored: contents checked (chipnet_zoo/validation.py), ratios recomputed
        from structure + kept channels (the true ones are recorded), the budget checked against them."""
        from .mask import Mask

        mask = Mask.from_bytes(data)
        updates: dict[str, Any] = {}
        if dataset is not None:
            updates["dataset"] = dataset
        if budget is not None:
            b = Budget.parse(budget)
            updates.update(budget_type=b.kind, budget=b.value)
        if metrics:
            updates["metrics"] = {**mask.metadata.get("metrics", {}), **metrics}
        if updates:
            mask = mask.with_metadata(**updates)
        checked = mask.verified()
        if updates or checked is not mask:
            mask = checked
            data = mask.to_bytes()
        b = mask.budget
        if b is not None:
            achieved = mask.ratios[b.kind]
            if achieved > b.value + 1e-9:
                key = make_key(mask.arch, str(mask.metadata.get("dataset") or "unknown"), b)
                raise BudgetExceededError(
                    f"the mask's true {b.kind} ratio {achieved:.4g} (recomputed from its kept channels) exceeds "
                    f"budget {b}; a budget is a ceiling - refusing to publish it as {key}",
                    key=key, kind=b.kind, ratio=achieved, budget=b.value)
        meta = mask.metadata
        for name in ("arch", "dataset", "budget_type", "budget"):
            if meta.get(name) in (None, ""):
                raise InvalidKeyError(f"the mask's metadata has no {name!r}; pass {name}= to push()"
                                      if name in ("dataset", "budget") else f"the mask's metadata has no {name!r}")
        key = make_key(str(meta["arch"]), str(meta["dataset"]), str(meta["budget_type"]), float(meta["budget"]))
        size = meta.get("input_size")
        spec = parse_key(key)[2]
        entry = RegistryEntry(
            key=key, arch=str(meta["arch"]), dataset=str(meta["dataset"]), budget_type=spec.kind, budget=spec.value,
            path=mask_path(key), sha256=sha256_hex(data), size=len(data),
            ratios={k: float(v) for k, v in dict(meta.get("ratios") or {}).items()},
            metrics=dict(meta.get("metrics") or {}), method=str(meta.get("method", "")),
            created=str(meta.get("created", "")), num_classes=int(meta["num_classes"]) if meta.get("num_classes") else None,
            input_size=[int(x) for x in size] if size else None, format_version=str(meta.get("format_version", "")))
        return mask, data, entry

    @staticmethod
    def _merge(entries: dict[str, RegistryEntry], new: RegistryEntry, overwrite: bool) -> None:
        """Add ``new`` to ``entries`` in place, refusing to silently replace different content."""
        old = entries.get(new.key)
        if old is not None and old.sha256 != new.sha256 and not overwrite:
            raise EntryExistsError(f"{new.key} already holds a different mask (sha256 {old.sha256[:12]}...); "
                                   "pass overwrite=True (CLI: --overwrite) to replace it")
        if old is not None and new.weights is None and old.sha256 == new.sha256:
            new.weights = old.weights  # re-pushing the same mask keeps its weights
        w = new.weights
        if w is not None and w["kind"] == "dense":
            for other in entries.values():
                ow = other.weights
                if other.key != new.key and ow and ow["path"] == w["path"] and ow["sha256"] != w["sha256"]:
                    if not overwrite:
                        raise EntryExistsError(f"{w['path']} already holds different dense weights (used by "
                                               f"{other.key}); pass overwrite=True to replace them")
                    other.weights = dict(w)
        entries[new.key] = new

    def push(self, mask_or_path: Mask | str | os.PathLike | bytes, *, dataset: str | None = None,
             budget: Budget | str | None = None, metrics: dict | None = None, weights: Any = None,
             weights_as: str = "auto", overwrite: bool = False, message: str | None = None) -> RegistryEntry:
        """Add a mask (and optionally weights) to the registry and return its entry.

        Args:
            mask_or_path: a ``Mask``, a mask file, or its bytes.
            dataset, budget, metrics: metadata overrides (the stored file carries them).
            weights: a safetensors file, bytes, ``nn.Module`` or state dict: the slimmed model, or
                the dense model the mask was learned on (told apart by their shapes; ``weights_as``
                ``"slim"``/``"dense"`` states it and is checked).
            overwrite: replace a different mask (or dense weights) already at the key.
        """
        from ._registry_local import check_weights_fit_arch, kept_channels_png, weights_kind, weights_to_bytes

        mask, data, entry = self._prepare(_mask_bytes(mask_or_path), dataset=dataset, budget=budget,
                                          metrics=metrics)
        files = {entry.path: data}
        if weights is not None:
            wdata = weights_to_bytes(weights)
            detected = weights_kind(wdata, mask, weights_as)
            check_weights_fit_arch(wdata, mask, detected)
            wpath = weights_path(entry.key, detected)
            entry.weights = {"path": wpath, "sha256": sha256_hex(wdata), "size": len(wdata), "kind": detected}
            files[wpath] = wdata
        if self._backend.writes_card:
            files[plot_path(entry.key)] = kept_channels_png(mask, entry.key)

        def mutate(entries: dict[str, RegistryEntry]) -> tuple[dict[str, RegistryEntry], dict[str, bytes]]:
            self._merge(entries, RegistryEntry(**{**entry.to_dict()}), overwrite)
            return entries, files

        self._backend.update(mutate, message or f"Add mask {entry.key}")
        return self.entry(entry.key)

    def push_registry(self, source: MaskRegistry | str | os.PathLike, *, overwrite: bool = False,
                      message: str | None = None) -> list[RegistryEntry]:
        """Publish every entry of ``source`` (e.g. a local zoo) into this registry in one commit."""
        from ._registry_local import kept_channels_png
        from .mask import Mask

        src = source if isinstance(source, MaskRegistry) else MaskRegistry(source)
        if src.location == self.location:
            raise InvalidKeyError("push_registry: source and destination are the same registry")
        src_entries = src._backend.read_index()
        if not src_entries:
            raise EntryNotFoundError(f"{src.location} holds no entries to publish")
        files: dict[str, bytes] = {}
        for e in src_entries.values():
            files[e.path] = src._backend.read_file(e.path, e.sha256, e.size)
            if self._prepare(files[e.path], dataset=None, budget=None, metrics=None)[2].sha256 != e.sha256:
                raise MaskContentError(f"{e.key} in {src.location}: its recorded ratios are not the ones recomputed "
                                       "from its kept channels; push that mask file on its own to record the "
                                       "true ones", field="ratios")
            if e.weights:
                files[e.weights["path"]] = src._backend.read_file(e.weights["path"], e.weights["sha256"],
                                                                  e.weights.get("size"))
            if self._backend.writes_card:
                files[plot_path(e.key)] = kept_channels_png(Mask.from_bytes(files[e.path]), e.key)

        def mutate(entries: dict[str, RegistryEntry]) -> tuple[dict[str, RegistryEntry], dict[str, bytes]]:
            for e in src_entries.values():
                self._merge(entries, RegistryEntry(**e.to_dict()), overwrite)
            return entries, files

        self._backend.update(mutate, message or f"Publish {len(src_entries)} masks from chipnet-zoo")
        return [self.entry(k) for k in sorted(src_entries)]

    def render_card(self, title: str | None = None) -> str:
        """The model card (README.md) for the registry's current entries."""
        from ._hub import render_card

        entries = self.list()
        plots = self._backend.existing_plots([plot_path(e.key) for e in entries])
        return render_card(entries, self.location, plots=plots, title=title)
