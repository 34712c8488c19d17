"""``MaskRegistry``: learned masks (and optional weights) keyed by (architecture, dataset, budget), in a
local folder or a Hugging Face Hub repo (``hf://<owner>/<repo>[@<revision>]``), with the same layout in
both (docs/architecture.md, "The registry")::

    index.json                                        # every entry: key, path, sha256, size, metadata
    masks/<arch>/<dataset>/<budget_type>-<budget>.safetensors
    weights/<arch>/<dataset>/<budget_type>-<budget>.safetensors   # optional: the slimmed model
    weights/<arch>/<dataset>/dense.safetensors                    # optional: the dense model
    plots/<arch>/<dataset>/<budget_type>-<budget>.png             # Hub: kept channels per group
    README.md                                                     # Hub: the model card

Keys are described in ``keys.py``, the index in ``index.py``. A local folder stores each file
content-addressed next to that path (``local.py``) so that the atomic replacement of ``index.json`` is the
single commit point of a push; a Hub push is one commit (``hub.py``). Only safetensors and JSON are ever
read; every file is checked against the sha256 in the index, and the index and mask contents against their
schema (``chipnet_zoo/validation.py``, docs/reliability.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import constants
from .._atomic import atomic_write
from .._secrets import register_secret
from ..budget import Budget
from ..errors import (
    AmbiguousKeyError,
    BudgetExceededError,
    EntryExistsError,
    EntryNotFoundError,
    IntegrityError,
    InvalidLocationError,
    MaskContentError,
    MaskFormatError,
    MetadataMissingError,
    OutputPathError,
    WeightsNotFoundError,
)
from .index import INDEX_FILE, RegistryEntry
from .integrity import sha256_hex
from .keys import (
    canonical_key,
    key_for,
    key_from,
    mask_path,
    parse_key,
    plot_path,
    split_key,
    weights_path,
)
from .local import LocalBackend

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from ..mask import Mask

#: The read-only zoo shipped inside the package (see :meth:`MaskRegistry.builtin`).
BUILTIN_ZOO = Path(__file__).resolve().parent.parent / "zoo"


def _not_found_hint(key: str, entries: Any) -> str:
    """What the registry holds for the key's architecture: budgets per dataset."""
    arch, dataset, _ = parse_key(key)
    entries = list(entries)
    by_dataset: dict[str, list[str]] = {}
    for e in sorted(entries, key=lambda e: (e.dataset, e.budget.kind, e.budget.value)):
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
        from ..mask import read_mask_file

        return read_mask_file(mask_or_path)
    if isinstance(mask_or_path, (bytes, bytearray, memoryview)):
        return bytes(mask_or_path)
    if hasattr(mask_or_path, "to_bytes"):
        return mask_or_path.to_bytes()  # deterministic bytes
    raise TypeError(f"push() takes a Mask, a mask file path or mask bytes, not {type(mask_or_path).__name__}")


class MaskRegistry:
    """Masks keyed by (arch, dataset, budget) in a local folder or a Hub repo.

    Args:
        location: a folder, or ``hf://<owner>/<repo>[@<revision>]``. ``None``: the user-level default
            folder (``constants.CHIPNET_ZOO_REGISTRY``, env ``CHIPNET_ZOO_REGISTRY``), which falls back to
            the read-only zoo shipped with the package (:meth:`builtin`) for keys it does not hold.
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
        self._default = location is None  # the unconfigured default registry falls back to the built-in zoo
        loc = os.fspath(constants.CHIPNET_ZOO_REGISTRY if self._default else location)
        if loc.startswith("hf://"):
            from .hub import HubBackend  # imports huggingface_hub: only for Hub registries

            self._backend: Any = HubBackend.from_url(loc, endpoint=endpoint, token=token, private=private)
        elif "://" in loc:
            raise InvalidLocationError(f"unsupported registry location {loc!r}: use a folder or hf://<owner>/<repo>",
                                       location=loc)
        else:
            self._backend = LocalBackend(Path(loc).expanduser(), missing_ok=self._default)
        self.location = str(self._backend)

    def __repr__(self) -> str:
        return f"MaskRegistry({self.location!r})"

    @property
    def name(self) -> str:
        """The registry's name: the Hub repo id, or the folder's name."""
        return str(self._backend.name)

    @classmethod
    def builtin(cls) -> MaskRegistry:
        """The read-only zoo shipped inside the package (``chipnet_zoo/zoo``). ``MaskRegistry()`` (no
        location) falls back to it when pulling a key it does not hold; a push to it raises
        :class:`~chipnet_zoo.errors.ReadOnlyRegistryError`.

        Example:
            >>> [e.key for e in MaskRegistry.builtin().list(arch="resnet8", dataset="mnist5k")][:1]
            ['resnet8/mnist5k/flops-0.03125']
        """
        reg = cls.__new__(cls)
        reg._default = False
        reg._backend = LocalBackend(BUILTIN_ZOO, read_only=True)
        reg.location = str(reg._backend)
        return reg

    def _fallback(self) -> MaskRegistry | None:
        """THE default-registry-then-zoo rule: the built-in zoo when this is the unconfigured default
        registry (and the zoo is installed), else ``None``. Pulls and :meth:`list` use it."""
        if not self._default or not (BUILTIN_ZOO / INDEX_FILE).is_file():
            return None
        return MaskRegistry.builtin()

    # --- reading ---------------------------------------------------------------------------------
    def list(self, *, arch: str | None = None, dataset: str | None = None, budget_type: str | None = None,
             include_builtin: bool = False) -> list[RegistryEntry]:
        """Entries (sorted by key), optionally filtered.

        Args:
            arch, dataset, budget_type: keep only entries with these (``budget_type``: a budget kind).
            include_builtin: for the default registry, add the built-in zoo's entries that it does not
                hold itself (what a pull would find).

        Example:
            >>> [e.key for e in MaskRegistry.builtin().list(dataset="mnist5k", budget_type="flops")][:2]
            ['resnet8/mnist5k/flops-0.03125', 'resnet8/mnist5k/flops-0.0625']
        """
        kind = Budget(budget_type, 0.5).kind if budget_type else None
        entries = self._backend.read_index()
        fallback = self._fallback() if include_builtin else None
        if fallback is not None:
            entries = {**fallback._backend.read_index(), **entries}
        return [e for _, e in sorted(entries.items())
                if (arch is None or e.arch == arch) and (dataset is None or e.dataset == dataset)
                and (kind is None or e.budget.kind == kind)]

    def _resolve(self, key: str) -> tuple[RegistryEntry, dict[str, RegistryEntry]]:
        entries = self._backend.read_index()
        if key in entries:
            return entries[key], entries
        _, _, budget, machine = split_key(key)
        if budget.kind == "latency" and machine is None:  # a latency key that names no machine: the one there is
            tagged = sorted(k for k in entries if k.startswith(key + "-"))
            if len(tagged) == 1:
                return entries[tagged[0]], entries
            if tagged:
                raise AmbiguousKeyError(
                    f"{key!r} names no machine and {self.location} holds {len(tagged)} masks at that budget, measured "
                    f"on different machines: {', '.join(tagged)} (pass the full key)", key=key, registry=self.location,
                    candidates=tagged)
        raise EntryNotFoundError(f"no mask {key!r} in {self.location}; {_not_found_hint(key, entries.values())}",
                                 key=key, registry=self.location)

    def _resolve_or_fallback(self, key: str) -> tuple[MaskRegistry, RegistryEntry]:
        """``(registry, entry)`` for ``key``: this registry's entry, else the built-in zoo's (default registry)."""
        try:
            return self, self._resolve(key)[0]
        except EntryNotFoundError as exc:
            fallback = self._fallback()
            if fallback is None:
                raise
            try:
                return fallback, fallback._resolve(key)[0]
            except EntryNotFoundError:
                pass
            try:
                entries = {**fallback._backend.read_index(), **self._backend.read_index()}
            except IntegrityError:
                raise exc from None
            raise EntryNotFoundError(f"no mask {key!r} in {self.location} or the built-in zoo; "
                                     f"{_not_found_hint(key, entries.values())}", key=key,
                                     registry=self.location) from None

    def entry(self, key: str) -> RegistryEntry:
        """The index entry at ``key`` (this registry only)."""
        return self._resolve(canonical_key(key))[0]

    #: How often a read re-resolves an entry whose file vanished because a concurrent push replaced it.
    STALE_READ_ATTEMPTS = 8

    def _read_entry(self, entry: RegistryEntry, weights: bool = False) -> tuple[RegistryEntry, bytes, bytes | None]:
        """``(entry, mask bytes, weights bytes)`` of one consistent index version, sha256-verified. A file
        missing because a concurrent overwrite collected it makes the read start over on the new index."""
        key = entry.key
        for attempt in range(self.STALE_READ_ATTEMPTS):
            if attempt:
                entry, _ = self._resolve(key)
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
        """The exact, sha256-verified bytes of a mask file (by ``key``, or ``arch``/``dataset``/``budget``)."""
        reg, entry = self._resolve_or_fallback(key_from(key=key, arch=arch, dataset=dataset, budget=budget))
        return reg._read_entry(entry)[1]

    def pull(self, key: str | None = None, *, arch: str | None = None, dataset: str | None = None,
             budget: Budget | str | None = None) -> Mask:
        """The :class:`~chipnet_zoo.mask.Mask` at ``key`` (or at ``arch``/``dataset``/``budget``).

        Example:
            >>> MaskRegistry.builtin().pull("resnet8/mnist5k/flops-0.25").budget
            Budget(kind='flops', value=0.25)
        """
        from ..mask import Mask

        return Mask.from_bytes(self.pull_bytes(key, arch=arch, dataset=dataset, budget=budget))

    def pull_file(self, key: str, out: str | os.PathLike) -> Path:
        """Write the verified mask file to ``out`` (atomically) and return its path."""
        out = Path(out)
        if out.is_dir():
            raise OutputPathError(f"--out {out} is a folder; give a file path, e.g. "
                                  f"{out / (canonical_key(key).rsplit('/', 1)[1] + '.safetensors')}", path=str(out))
        return atomic_write(out, self.pull_bytes(key))

    def pull_model(self, key: str | None = None, *, arch: str | None = None, dataset: str | None = None,
                   budget: Budget | str | None = None) -> nn.Module:
        """A ready, slimmed ``nn.Module`` in eval mode: the architecture rebuilt, the mask applied and
        slimmed, the pushed weights loaded (slimmed weights as they are; dense weights before slimming).

        Raises:
            WeightsNotFoundError: the entry was pushed without weights.
        """
        from safetensors.torch import load

        from ..mask import Mask
        from ..models import create_model
        from ..weights import load_weights_into

        reg, entry = self._resolve_or_fallback(key_from(key=key, arch=arch, dataset=dataset, budget=budget))
        if entry.weights:
            entry, data, wdata = reg._read_entry(entry, weights=True)
        if not entry.weights or wdata is None:
            raise WeightsNotFoundError(f"{entry.key} in {reg.location} has no weights; push it with weights=",
                                       key=entry.key, registry=reg.location)
        mask = Mask.from_bytes(data)
        state = load(wdata)
        num_classes = entry.num_classes or mask.meta.num_classes
        if not num_classes:
            raise MaskFormatError(f"{entry.key}: the mask records no num_classes, cannot rebuild the model",
                                  field="num_classes")
        in_chans = int((entry.input_size or mask.meta.input_size or (3,))[0])
        model = create_model(entry.arch, num_classes=int(num_classes), in_chans=in_chans)
        if entry.weights["kind"] == "dense":
            load_weights_into(model, state, source=f"(dense weights of {entry.key})")
            model = mask.slim(model)
        else:
            model = mask.slim(model)
            load_weights_into(model, state, source=f"(slimmed weights of {entry.key})")
        return model.eval()

    # --- writing ---------------------------------------------------------------------------------
    def _prepare(self, data: bytes, *, dataset: str | None, budget: Budget | str | None,
                 metrics: dict | None) -> tuple[Mask, bytes, RegistryEntry]:
        """The mask as it will be stored: contents checked (chipnet_zoo/validation.py), ratios recomputed
        from structure + kept channels (the true ones are recorded), the budget checked against them."""
        from ..mask import Mask

        mask = Mask.from_bytes(data)
        updates: dict[str, Any] = {}
        if dataset is not None:
            updates["dataset"] = dataset
        if budget is not None:
            b = Budget.parse(budget)
            updates.update(budget_type=b.kind, budget=b.value)
        if metrics:
            updates["metrics"] = {**mask.meta.metrics, **metrics}
        if updates:
            mask = mask.with_metadata(**updates)
        checked = mask.verified()
        if updates or checked is not mask:
            mask = checked
            data = mask.to_bytes()
        meta = mask.meta
        if not meta.dataset:
            raise MetadataMissingError("the mask's metadata has no 'dataset'; pass dataset= to push()",
                                       field="dataset", registry=self.location)
        if meta.budget is None:
            raise MetadataMissingError("the mask's metadata has no 'budget'; pass budget= to push()",
                                       field="budget", registry=self.location)
        key = key_for(meta)
        achieved = meta.ratios[meta.budget.kind]
        if achieved > meta.budget.value + 1e-9:
            raise BudgetExceededError(
                f"the mask's true {meta.budget.kind} ratio {achieved:.4g} (recomputed from its kept channels) "
                f"exceeds budget {meta.budget}; a budget is a ceiling - refusing to publish it as {key}",
                key=key, kind=meta.budget.kind, ratio=achieved, budget=meta.budget.value)
        row = {**meta.to_dict(), "key": key, "path": mask_path(key), "sha256": sha256_hex(data), "size": len(data)}
        return mask, data, RegistryEntry.from_dict(row, "(push)")

    def _merge(self, entries: dict[str, RegistryEntry], new: RegistryEntry, *, overwrite: bool) -> None:
        """Add ``new`` to ``entries`` in place, refusing to silently replace different content."""
        old = entries.get(new.key)
        if old is not None and old.sha256 != new.sha256 and not overwrite:
            raise EntryExistsError(f"{new.key} already holds a different mask (sha256 {old.sha256[:12]}...); "
                                   "pass overwrite=True (CLI: --overwrite) to replace it", key=new.key,
                                   registry=self.location, path=new.path)
        if old is not None and new.weights is None and old.sha256 == new.sha256:
            new.weights = old.weights  # re-pushing the same mask keeps its weights
        w = new.weights
        if w is not None and w["kind"] == "dense":
            for other in entries.values():
                ow = other.weights
                if other.key != new.key and ow and ow["path"] == w["path"] and ow["sha256"] != w["sha256"]:
                    if not overwrite:
                        raise EntryExistsError(f"{w['path']} already holds different dense weights (used by "
                                               f"{other.key}); pass overwrite=True to replace them", key=new.key,
                                               registry=self.location, path=w["path"])
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

        Example:
            >>> entry = MaskRegistry("my-zoo").push("mask.safetensors", dataset="cifar10")  # doctest: +SKIP
        """
        from ..mask_plot import kept_channels_png
        from ..weights import check_weights_fit_arch, weights_kind, weights_to_bytes

        mask, data, entry = self._prepare(_mask_bytes(mask_or_path), dataset=dataset, budget=budget,
                                          metrics=metrics)
        files = {entry.path: data}
        if weights is not None:
            wdata = weights_to_bytes(weights)
            detected = weights_kind(wdata, mask, expected=weights_as)
            check_weights_fit_arch(wdata, mask, kind=detected)
            wpath = weights_path(entry.key, detected)
            entry.weights = {"path": wpath, "sha256": sha256_hex(wdata), "size": len(wdata), "kind": detected}
            files[wpath] = wdata
        if self._backend.writes_card:
            files[plot_path(entry.key)] = kept_channels_png(mask, entry.key)

        def mutate(entries: dict[str, RegistryEntry]) -> tuple[dict[str, RegistryEntry], dict[str, bytes]]:
            self._merge(entries, entry.copy(), overwrite=overwrite)
            return entries, files

        self._backend.update(mutate, message or f"Add mask {entry.key}")
        return self.entry(entry.key)

    def push_registry(self, source: MaskRegistry | str | os.PathLike, *, overwrite: bool = False,
                      message: str | None = None) -> list[RegistryEntry]:
        """Publish every entry of ``source`` (e.g. a local zoo) into this registry in one commit."""
        from ..mask import Mask
        from ..mask_plot import kept_channels_png

        src = source if isinstance(source, MaskRegistry) else MaskRegistry(source)
        if src.location == self.location:
            raise InvalidLocationError("push_registry: source and destination are the same registry",
                                       location=self.location, registry=self.location)
        src_entries = src._backend.read_index()
        if not src_entries:
            raise EntryNotFoundError(f"{src.location} holds no entries to publish", registry=src.location)
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
                self._merge(entries, e.copy(), overwrite=overwrite)
            return entries, files

        self._backend.update(mutate, message or f"Publish {len(src_entries)} masks from chipnet-zoo")
        return [self.entry(k) for k in sorted(src_entries)]

    def render_card(self, title: str | None = None) -> str:
        """The model card (README.md) for the registry's current entries, titled by the registry's name."""
        from .card import render_card

        entries = self.list()
        plots = self._backend.existing_plots([plot_path(e.key) for e in entries])
        return render_card(entries, location=self.location, name=self.name, plots=plots, title=title)
