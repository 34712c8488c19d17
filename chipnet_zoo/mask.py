"""``Mask``: a learned channel mask as a portable artifact (safetensors + metadata, docs/architecture.md "The mask file").

Tensors per channel group (named after the group's root layer, e.g. ``layer1.0.conv1``):
``mask/<group>`` (bool ``[C]``, kept channels) and ``score/<group>`` (float32 ``[C]``, the gate values z
or a baseline's scores, so the mask can be re-thresholded to another budget). Metadata keys are
namespaced ``chipnet_zoo.*``; structured values are JSON strings. ``mask.metadata`` is that flat on-disk
mapping, ``mask.meta`` the same typed (:class:`~chipnet_zoo.metadata.MaskMetadata`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import constants
from ._atomic import atomic_write
from ._version import __version__
from .budget import Budget
from .errors import LatencyTableError, MaskContentError, MaskFormatError, MaskMismatchError
from .metadata import MaskMetadata
from .validation import (
    MAX_MASK_BYTES,
    MAX_METADATA_BYTES,
    check_mask_header,
    check_mask_metadata,
    check_mask_tensors,
    load_json,
)

#: Metadata values stored as plain strings; every other key is stored as JSON.
_STRING_KEYS = {"format_version", "arch", "dataset", "budget_type", "method", "library_version",
                "torch_version", "created"}
_REQUIRED_KEYS = ("format_version", "arch", "structure")
_MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit


def _example_input(model: nn.Module, metadata: Mapping[str, Any],
                   example_input: torch.Tensor | None) -> torch.Tensor:
    if example_input is not None:
        return example_input
    shape = getattr(model, "default_input_size", None) or metadata.get("input_size")
    if not shape:
        raise ValueError("pass example_input=: the model has no default_input_size and the mask no input_size")
    device = next(model.parameters()).device
    return torch.randn(1, *shape, device=device)


def read_mask_file(path: str | Path) -> bytes:
    """The bytes of a mask file, refused before reading when it is missing or larger than any mask."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    if path.stat().st_size > MAX_MASK_BYTES:
        raise MaskFormatError(f"{path} is not a mask file: {path.stat().st_size} bytes, more than the "
                              f"{MAX_MASK_BYTES} accepted")
    return path.read_bytes()


class Mask:
    """Per-group kept channels and scores of one model, plus metadata.

    Example:
        >>> import torch, chipnet_zoo as cz
        >>> model = cz.create_model("resnet20", num_classes=10)
        >>> mask = cz.ChipNetPruner(model, "params:0.5", example_input=torch.randn(1, 3, 32, 32)).mask()
        >>> small = mask.slim(model)
        >>> sum(p.numel() for p in small.parameters()) <= 0.5 * sum(p.numel() for p in model.parameters())
        True
    """

    def __init__(self, keep: Mapping[str, torch.Tensor], scores: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, Any] | MaskMetadata):
        if isinstance(metadata, MaskMetadata):
            metadata = metadata.to_dict()
        keep = {name: torch.as_tensor(v) for name, v in keep.items()}
        scores = {name: torch.as_tensor(v) for name, v in scores.items()}
        check_mask_tensors(keep, scores)  # 1-D, 0/1 masks, finite scores: never cast silently
        self.keep = {name: v.to(torch.bool).clone() for name, v in keep.items()}
        self.scores = {name: v.to(torch.float32).clone() for name, v in scores.items()}
        self.metadata = dict(metadata)
        self.metadata.setdefault("format_version", constants.MASK_FORMAT_VERSION)
        self.metadata.setdefault("structure", [[n, int(v.numel())] for n, v in self.keep.items()])
        self._validate()
        self.meta = MaskMetadata.from_dict(self.metadata)

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_vectors(cls, graph, keep: torch.Tensor, scores: torch.Tensor, **metadata: Any) -> Mask:
        """Build from global keep/score vectors over a :class:`~chipnet_zoo.groups.ChannelGraph`."""
        keep, scores = keep.detach().cpu(), scores.detach().cpu()
        meta = {
            "format_version": constants.MASK_FORMAT_VERSION,
            "structure": [[n, s] for n, s in graph.structure],
            "input_size": list(graph.input_shape),
            "library_version": __version__,
            "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        meta.update(metadata)
        return cls({g.name: keep[g.indices] for g in graph.groups},
                   {g.name: scores[g.indices] for g in graph.groups}, meta)

    def with_metadata(self, **updates: Any) -> Mask:
        """A copy with metadata keys updated (``None`` removes a key)."""
        meta = dict(self.metadata)
        for key, value in updates.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        return Mask(self.keep, self.scores, meta)

    def _validate(self) -> None:
        for key in _REQUIRED_KEYS:
            if key not in self.metadata:
                raise MaskFormatError(f"mask metadata lacks {key!r}", field=key)
        check_mask_metadata(self.metadata)
        version = str(self.metadata["format_version"])
        if version.split(".")[0] != constants.MASK_FORMAT_VERSION.split(".")[0]:
            raise MaskFormatError(
                f"mask format version {version} is not supported by chipnet-zoo {__version__} "
                f"(reads major version {constants.MASK_FORMAT_VERSION.split('.')[0]})")
        structure = self.structure
        if [n for n, _ in structure] != list(self.keep) or set(self.keep) != set(self.scores):
            raise MaskFormatError("mask tensors do not match the group list in its metadata", field="structure")
        for name, size in structure:
            if self.keep[name].numel() != size or self.scores[name].numel() != size:
                raise MaskFormatError(f"group {name!r}: expected {size} channels in mask and scores",
                                      field=f"mask/{name}")
            if not bool(self.keep[name].any()):
                raise MaskFormatError(f"group {name!r} keeps no channel", field=f"mask/{name}")

    # --- checking the contents against the architecture -------------------------------------------
    def true_ratios(self) -> dict[str, float]:
        """The four hard ratios recomputed from the structure and the kept channels, on a fresh model of
        the mask's architecture (its ``num_classes`` and ``input_size``, else 10 and the model's default).

        Raises:
            MaskContentError: an unknown architecture, or a structure that does not fit it.
        """
        meta = self.metadata
        size = tuple(meta["input_size"]) if meta.get("input_size") else None
        structure, cost = _reference_cost(self.arch, int(meta.get("num_classes") or 10), size)
        if [tuple(s) for s in structure] != [tuple(s) for s in self.structure]:
            try:
                self.check_fits(structure, arch=self.arch)
            except MaskMismatchError as exc:
                raise MaskContentError(f"the mask's structure does not fit its architecture {self.arch!r}: {exc}",
                                       field="structure") from None
        return cost.hard_ratios(self.keep_vector())

    def verified(self, tolerance: float = 1e-6) -> Mask:
        """This mask if its stated ratios are the true ones (:meth:`true_ratios`, within ``tolerance``),
        else a copy that records the true ones. Stated ratios are never trusted. The exception is ``latency``, a
        prediction of the table measured on the machine recorded in ``metadata["latency"]``: it cannot be
        recomputed without that table, so it is kept as stated (and only with that record)."""
        true = self.true_ratios()
        stated = self.ratios
        if "latency" in stated and isinstance(self.metadata.get("latency"), Mapping):
            true["latency"] = float(stated["latency"])
        if set(stated) == set(true) and all(abs(float(stated[k]) - true[k]) <= tolerance for k in true):
            return self
        return self.with_metadata(ratios=true)

    # --- properties ------------------------------------------------------------------------------
    @property
    def structure(self) -> list[tuple[str, int]]:
        return [(str(n), int(s)) for n, s in self.metadata["structure"]]

    @property
    def arch(self) -> str:
        return str(self.metadata["arch"])

    @property
    def budget(self) -> Budget | None:
        return self.meta.budget

    @property
    def ratios(self) -> dict[str, float]:
        """The four hard ratios (``channels``, ``volume``, ``params``, ``flops``) on the source model."""
        return dict(self.metadata.get("ratios", {}))

    def kept(self) -> dict[str, int]:
        """Kept channels per group."""
        return {name: int(v.sum()) for name, v in self.keep.items()}

    def keep_vector(self) -> torch.Tensor:
        """The kept channels of every group, concatenated in group order (the global channel indices)."""
        return torch.cat(list(self.keep.values()))

    def score_vector(self) -> torch.Tensor:
        """The scores of every group, concatenated in group order (the global channel indices)."""
        return torch.cat(list(self.scores.values()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask):
            return NotImplemented
        return (self.metadata == other.metadata and self.keep.keys() == other.keep.keys()
                and all(torch.equal(self.keep[k], other.keep[k]) for k in self.keep)
                and all(torch.equal(self.scores[k], other.scores[k]) for k in self.scores))

    def __repr__(self) -> str:
        kept, total = int(self.keep_vector().sum()), self.keep_vector().numel()
        ratios = ", ".join(f"{k}={v:.4f}" for k, v in self.ratios.items())
        return (f"Mask(arch={self.metadata.get('arch')!r}, dataset={self.metadata.get('dataset')!r}, "
                f"budget={self.budget}, kept={kept}/{total} channels, {ratios})")

    def summary(self) -> str:
        """The mask and its kept / total channels per group, one line each.

        Example:
            >>> print(mask.summary())  # doctest: +SKIP
            Mask(resnet8, flops:0.25, ...)
              conv1: 9/16
              ...
        """
        lines = [repr(self)]
        lines += [f"  {name}: {self.kept()[name]}/{size}" for name, size in self.structure]
        return "\n".join(lines)

    # --- using the mask on a model ----------------------------------------------------------------
    def _graph_for(self, model: nn.Module, example_input: torch.Tensor):
        from .groups import build_channel_graph

        graph = build_channel_graph(model, example_input)
        self.check_fits(graph.structure, arch=getattr(model, "arch_name", None))
        return graph

    def check_arch(self, arch: str | None, what: str = "model") -> None:
        """Refuse a model (``what``: how to call it) of another architecture before any tracing.

        Example:
            >>> mask.check_arch("resnet20")  # doctest: +SKIP
            Traceback (most recent call last):
            MaskMismatchError: the mask is for architecture 'resnet8', but the model is 'resnet20'
        """
        if arch and arch != self.arch:
            raise MaskMismatchError(f"the mask is for architecture {self.arch!r}, but the {what} is {arch!r}",
                                    arch=arch)

    def check_fits(self, structure: list[tuple[str, int]], arch: str | None = None) -> None:
        """Raise :class:`MaskMismatchError` naming the first group where ``structure`` differs."""
        mine = self.structure
        where = f" (mask for {self.arch!r}, model {arch!r})" if arch and arch != self.arch else ""
        for i, (a, b) in enumerate(zip(mine, structure)):
            if tuple(a) != tuple(b):
                raise MaskMismatchError(
                    f"mask does not fit this model{where}: group #{i} is {a[0]!r} with {a[1]} channels in the "
                    f"mask but {b[0]!r} with {b[1]} channels in the model", group=str(a[0]))
        if len(mine) != len(structure):
            first = mine[len(structure)][0] if len(mine) > len(structure) else structure[len(mine)][0]
            raise MaskMismatchError(
                f"mask does not fit this model{where}: {len(mine)} groups in the mask, {len(structure)} in the "
                f"model (first unmatched group {first!r})", group=str(first))

    def apply(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        """Gate ``model`` in place with this mask's fixed 0/1 gates and return it.

        ``model`` must be of the same architecture (any class count, input size or channels). A latency mask
        applied on another machine than its table's warns (:class:`~chipnet_zoo.errors.LatencyKeyWarning`).
        """
        from .gates import FixedGates, attach_gates
        from .latency import check_machine

        check_machine(self.metadata, model)
        graph = self._graph_for(model, _example_input(model, self.metadata, example_input))
        device = next(model.parameters()).device
        return attach_gates(model, FixedGates(graph, self.keep_vector()).to(device), graph)

    def slim(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        """A new, physically smaller plain ``nn.Module``: ``model`` with the pruned channels removed.

        ``model`` is not modified; gates attached to it are not carried over. Slimming does not check where a
        latency mask was measured (a model is often slimmed on one machine and deployed on another);
        :meth:`apply` does.
        """
        from .gates import plain_model
        from .slim import slim_model

        x = _example_input(model, self.metadata, example_input)
        plain = plain_model(model)
        graph = self._graph_for(plain, x)
        return slim_model(plain, graph, self.keep_vector(), x)

    def rethreshold(self, budget: Budget | str, *, model: nn.Module | None = None,
                    example_input: torch.Tensor | None = None, round_to: int | str | None = None,
                    min_keep: float | None = None, floor: float | None = None, latency_table=None) -> Mask:
        """A new mask from this mask's scores, thresholded at ``budget`` on ``model``.

        ``model`` defaults to a fresh instance of the mask's architecture (``create_model``) with the
        mask's class count and input size; pass a student model to count costs on its own input size.
        ``round_to``, ``min_keep`` and ``floor`` default to the ones the mask was made with (``hparams``, else
        1, 0 and 0); a ``floor`` is relative to the budget, so it is recomputed for the new one. Groups
        around grouped convs keep whole units: a multiple of ``lcm(round_to, group.granularity)`` channels.
        A mask made with ``round_to="auto"`` keeps its recorded per-group widths, unless ``latency_table`` was
        measured on this machine: then the fast widths are measured again on ``model``'s device against it
        (:func:`~chipnet_zoo.latency.auto_round_to`), as ``round_to="auto"`` passed here always does.

        A ``latency`` budget needs ``latency_table``, a :class:`~chipnet_zoo.latency.LatencyTable` measured for
        ``model`` at this input size (``build_latency_table(model, example_input)``): it is never measured here,
        since the mask's own table may come from another machine, batch or input size
        (:class:`~chipnet_zoo.errors.LatencyTableError` otherwise, also for a table of another input size).
        """
        from .cost import CostModel
        from .latency import latency_metadata
        from .models import create_model
        from .threshold import THRESHOLD_KEYS, threshold_hparams, threshold_scores

        budget = Budget.parse(budget)
        if budget.kind == "latency" and latency_table is None:
            where = self.metadata.get("latency") or {}
            raise LatencyTableError(
                f"re-thresholding to a latency budget needs latency_table=, a table measured for the model at its "
                f"input size (chipnet_zoo.latency.build_latency_table(model, example_input)); this mask's own was "
                f"measured on {where.get('device', 'no machine')!r} at input size {where.get('input_size')}")
        if model is None:
            in_size = self.metadata.get("input_size") or [3, 32, 32]
            model = create_model(self.arch, num_classes=int(self.metadata.get("num_classes", 10)),
                                 in_chans=int(in_size[0]))
        x = _example_input(model, self.metadata, example_input)
        graph = self._graph_for(model, x)
        cost = CostModel(graph, latency_table)
        hparams = self.metadata.get("hparams") or {}
        round_to = _rethreshold_round_to(hparams, round_to, graph, model, x, latency_table)
        min_keep = float(hparams.get("min_keep", 0.0)) if min_keep is None else min_keep
        floor = float(hparams.get("floor", 0.0)) if floor is None else floor
        keep = threshold_scores(self.score_vector(), cost, budget, round_to=round_to, min_keep=min_keep, floor=floor)
        meta = {k: v for k, v in self.metadata.items()
                if k not in ("ratios", "budget_type", "budget", "created", "latency")}
        meta.update(latency_metadata(cost))
        # the thresholding settings of the new mask replace the old ones (a setting back at its default is dropped)
        meta["hparams"] = {**{k: v for k, v in hparams.items() if k not in THRESHOLD_KEYS},
                           **threshold_hparams(round_to, min_keep, floor)}
        return Mask.from_vectors(graph, keep, self.score_vector(), **{
            **meta, "input_size": list(graph.input_shape), "budget_type": budget.kind, "budget": budget.value,
            "ratios": cost.hard_ratios(keep)})

    # --- files ------------------------------------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {f"mask/{n}": v.contiguous() for n, v in self.keep.items()}
        out.update({f"score/{n}": v.contiguous() for n, v in self.scores.items()})
        return out

    def _encoded_metadata(self) -> dict[str, str]:
        ns = constants.METADATA_NAMESPACE
        return {ns + k: (str(v) if k in _STRING_KEYS else json.dumps(v, sort_keys=True))
                for k, v in self.metadata.items()}

    def to_bytes(self) -> bytes:
        """The exact bytes of the safetensors file (deterministic: the same mask gives the same bytes)."""
        from safetensors.torch import save

        return _canonical_header(save(self._tensors(), metadata=self._encoded_metadata()))

    def save(self, path: str | Path) -> Path:
        """Write the mask as a safetensors file (atomically) and return the path."""
        return atomic_write(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Mask:
        """Parse the bytes of a mask file. Raises :class:`MaskFormatError` on anything malformed."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        def corrupt(msg: str) -> MaskFormatError:
            return MaskFormatError(f"not a valid mask file (corrupt or truncated safetensors): {msg}")

        data = bytes(data)
        if len(data) > MAX_MASK_BYTES:
            raise MaskFormatError(f"not a mask file: {len(data)} bytes, more than the {MAX_MASK_BYTES} accepted")
        try:
            tensors = load(data)
        except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError, RuntimeError, TypeError) as exc:
            raise corrupt(str(exc)) from None
        header = load_json(data[8:8 + int.from_bytes(data[:8], "little")], what="the header",
                           error=corrupt, max_bytes=_MAX_HEADER_BYTES)
        raw = header.get("__metadata__") if isinstance(header, dict) else None
        if not isinstance(raw, dict):
            raw = {}
        ns = constants.METADATA_NAMESPACE
        metadata: dict[str, Any] = {}
        for key, value in raw.items():
            if not key.startswith(ns) or not isinstance(value, str):
                continue
            name = key[len(ns):]
            metadata[name] = value if name in _STRING_KEYS else load_json(
                value, what=f"metadata {key!r}", max_bytes=MAX_METADATA_BYTES,
                error=lambda msg, name=name: MaskFormatError(msg, field=name))
        if "format_version" not in metadata:
            raise MaskFormatError("not a chipnet-zoo mask file (no chipnet_zoo.format_version metadata)",
                                  field="format_version")
        if "structure" not in metadata:
            raise MaskFormatError("mask metadata lacks 'structure'", field="structure")
        check_mask_metadata(metadata)
        check_mask_header(header)
        keep, scores = {}, {}
        for group, _size in [(str(n), s) for n, s in metadata["structure"]]:
            if f"mask/{group}" not in tensors or f"score/{group}" not in tensors:
                raise MaskFormatError(f"mask file lacks the tensors of group {group!r}")
            keep[group] = tensors[f"mask/{group}"]
            scores[group] = tensors[f"score/{group}"]
        if tensors and len(keep) * 2 != len(tensors):
            raise MaskFormatError("mask file holds tensors of groups that are not in its structure",
                                  field="structure")
        return cls(keep, scores, metadata)

    @classmethod
    def load(cls, path: str | Path) -> Mask:
        """Read a mask file (safetensors only; nothing in it can run code)."""
        return cls.from_bytes(read_mask_file(path))


@functools.lru_cache(maxsize=16)
def _reference_cost(arch: str, num_classes: int, input_size: tuple[int, ...] | None):
    """``(structure, CostModel)`` of a fresh ``arch`` model (cached: pushes of many masks build it once)."""
    from .cost import CostModel
    from .groups import build_channel_graph
    from .models import create_model, is_model

    if not is_model(arch):
        raise MaskContentError(f"cannot check the mask: unknown architecture {arch!r} (see list_models())",
                               field="arch")
    try:
        model = create_model(arch, num_classes=num_classes, in_chans=int(input_size[0]) if input_size else 3)
        shape = input_size or tuple(model.default_input_size)
        graph = build_channel_graph(model, torch.zeros(1, *shape))
    except (ValueError, RuntimeError) as exc:
        raise MaskContentError(f"cannot build {arch!r} with num_classes={num_classes}, input_size={input_size} "
                               f"from the mask's metadata: {exc}", field="input_size") from None
    return list(graph.structure), CostModel(graph)


def _canonical_header(data: bytes) -> bytes:
    """Rewrite a safetensors header with its metadata sorted by key (safetensors writes it in hash
    order, so two saves of the same mask would otherwise differ)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None) or {}
    ordered = {"__metadata__": dict(sorted(meta.items())), **header}
    raw = json.dumps(ordered, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n:]


def _rethreshold_round_to(hparams: Mapping[str, Any], round_to: int | str | tuple | None, graph, model: nn.Module,
                          x: torch.Tensor, latency_table) -> int | tuple:
    """The ``round_to`` of :meth:`Mask.rethreshold`. Without an argument, the mask's own: recorded per-group
    widths are reused, except that ``"auto"`` widths are measured again against a ``latency_table`` of this
    machine (a student's, say). ``round_to="auto"`` passed explicitly is always measured (it needs a table)."""
    from .latency import machine_differences, resolve_round_to
    from .threshold import AUTO, PER_GROUP, AutoWidths, check_round_to

    if round_to is None:
        kind = hparams.get("round_to", 1)
        if kind not in (AUTO, PER_GROUP):
            return check_round_to(kind)
        if kind == AUTO and latency_table is not None and not machine_differences(latency_table.key, model):
            return resolve_round_to(AUTO, model=model, graph=graph, example_input=x, latency_table=latency_table)
        recorded = hparams.get("round_to_groups")
        if isinstance(recorded, list) and len(recorded) == len(graph.groups):
            widths = check_round_to(tuple(recorded))
            return AutoWidths(widths) if kind == AUTO else widths
        raise MaskFormatError(f"the mask records round_to {kind!r} without per-group widths for this model's "
                              f"{len(graph.groups)} groups", field="hparams")
    round_to = check_round_to(round_to)
    if round_to != AUTO:
        return round_to
    if latency_table is None:
        raise LatencyTableError("round_to='auto' needs latency_table=, a table measured for the model here "
                                "(chipnet_zoo.latency.build_latency_table(model, example_input))")
    return resolve_round_to(AUTO, model=model, graph=graph, example_input=x, latency_table=latency_table)
