"""Deployable exports of a slim model: ONNX, TorchScript or ``torch.export`` (``.pt2``).

    chipnet-zoo export --from runs/finetune-resnet8-mnist5k-flops-0.25 --format onnx --out r8.onnx
    chipnet-zoo export --from resnet8/mnist5k/flops-0.25 --format pt2 --out r8.pt2

The model file is the physically slimmed network (``Mask.slim``), with a dynamic batch axis. Next to it
go the mask (``<stem>.mask.safetensors``) and a JSON card (``<stem>.card.json``: arch, dataset, budget,
ratios, input size, classes, opset, versions, source and the check below). Before a file is renamed into
place it is loaded back (onnxruntime, ``torch.jit.load``, ``torch.export.load``) and its outputs are
compared with the torch model's on two batch sizes; a difference above ``atol`` (1e-4) is an error.
Every file is written atomically (temporary file + rename); existing files are refused unless
``overwrite=True``. ONNX needs the ``export`` extra: ``pip install 'chipnet-zoo[export]'``.

TorchScript and ``.pt2`` archives execute code when loaded: load them only from sources you trust.
ONNX files are plain protobuf.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._atomic import atomic_path
from .errors import ChipNetZooError, EntryNotFoundError, InvalidKeyError, OutputPathError

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
EXPORTERS = ("dynamo", "legacy")
DEFAULT_OPSET = 18
ATOL = 1e-4
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_EXPORT_EXTRA = "pip install 'chipnet-zoo[export]'"


class ExportError(ChipNetZooError, RuntimeError):
    """An export that cannot be made as asked (unknown format, missing dependency, no weights, outputs that
    differ from the torch model's)."""


@dataclass
class ExportResult:
    """What :func:`export_from` wrote: the model file, the mask, the card (also returned as a dict)."""

    path: Path
    mask_path: Path
    card_path: Path
    card: dict[str, Any] = field(default_factory=dict)


# --- helpers -------------------------------------------------------------------------------------
def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    return format


def _preflight(format: str, exporter: str, verify: bool) -> None:
    """Fail fast (before any model is loaded) on an unknown format or exporter, or a missing package."""
    _check_format(format)
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if format == "onnx":
        _require("onnx", *(("onnxscript",) if exporter == "dynamo" else ()), why="the ONNX exporter needs it")
        if verify:
            _require("onnxruntime", why="it checks the ONNX export; skip the check with --no-verify / verify=False")


def _require(*modules: str, why: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"{' and '.join(missing)} not installed ({why}); {_EXPORT_EXTRA}")


def companion_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(mask path, card path)`` written next to a model file: ``<stem>.mask.safetensors``, ``<stem>.card.json``."""
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.mask.safetensors"), path.with_name(f"{stem}.card.json")


def _check_out(paths: list[Path], overwrite: bool) -> None:
    for p in paths:
        if p.is_dir():
            raise OutputPathError(f"{p} is a folder; give a file path, e.g. {p / 'model.onnx'}", path=str(p))
        if p.exists() and not overwrite:
            raise OutputPathError(f"{p} exists; pass --overwrite (overwrite=True) to replace it", path=str(p))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- writing and loading one model file -----------------------------------------------------------
def _write(model: nn.Module, x: torch.Tensor, path: Path, format: str, opset: int, exporter: str,
           dynamic_batch: bool) -> None:
    if format == "onnx":
        kwargs: dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME],
                                  "opset_version": opset}
        if exporter == "dynamo":
            if dynamic_batch:
                kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
            with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
                warnings.simplefilter("ignore")
                program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, **kwargs)
            program.save(str(path), external_data=False)
        else:
            if dynamic_batch:
                kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
    elif format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (x,), check_trace=False)
            torch.jit.save(traced, str(path))  # deprecated by torch >= 2.10 (FutureWarning); still supported
    else:
        shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
        program = torch.export.export(model, (x,), dynamic_shapes=shapes, strict=False)
        torch.export.save(program, str(path))


def load_exported(path: str | os.PathLike, *, format: str | None = None,
                  threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``x -> logits`` (CPU tensors) running an exported file in its own runtime: onnxruntime for
    ONNX, ``torch.jit.load`` for TorchScript, ``torch.export.load`` for ``.pt2`` (``format``: from the
    suffix by default). Load TorchScript / ``.pt2`` files only from sources you trust."""
    path = Path(path)
    if format is None:
        format = next((f for f, s in SUFFIXES.items() if path.suffix == s), None)
        if format is None:
            raise ExportError(f"cannot tell the format of {path} from its suffix; pass format=")
    _check_format(format)
    if not path.is_file():
        raise ExportError(f"exported model not found: {path}")
    if format == "onnx":
        _require("onnxruntime", why="it runs the ONNX model")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.detach().cpu().float().numpy()})[0])

        return run_onnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.10 deprecates TorchScript
        module = torch.jit.load(str(path), map_location="cpu") if format == "torchscript" \
            else torch.export.load(str(path)).module()

    @torch.no_grad()
    def run_torch(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    return run_torch


def export_model(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike, *, format: str,
                 opset: int | None = None, exporter: str = "dynamo", dynamic_batch: bool = True,
                 overwrite: bool = False, verify: bool = True, atol: float = ATOL) -> float | None:
    """Export ``model`` (run on CPU in eval mode) to ``path`` as ``format`` (``onnx``, ``torchscript``,
    ``pt2``); return the largest absolute output difference between the file and the torch model.

    ``example_input`` fixes every dimension but the batch (dynamic unless ``dynamic_batch=False``). With
    ``verify`` (default), the file is loaded back in its runtime and compared with the torch model on
    ``example_input`` and on a random batch of another size before it is renamed into place; a
    difference above ``atol`` raises :class:`ExportError` and nothing is written. ``exporter`` (ONNX only):
    ``dynamo`` (``torch.onnx.export(dynamo=True)``, default) or ``legacy`` (the TorchScript-based one).

    Example:
        >>> import tempfile, torch, chipnet_zoo as cz
        >>> model = cz.create_model("resnet8", num_classes=10)
        >>> path = tempfile.mkdtemp() + "/r8.pt"
        >>> export_model(model, torch.randn(2, 3, 32, 32), path, format="torchscript") < 1e-4
        True
    """
    _preflight(format, exporter, verify)
    opset = opset or DEFAULT_OPSET
    path = Path(path)
    _check_out([path], overwrite)
    x = example_input.detach().to("cpu", torch.float32)
    if dynamic_batch and x.shape[0] == 1:
        x = torch.cat([x, torch.randn_like(x)])  # a batch of 1 would be specialised away by torch.export
    was_training, device = model.training, next(model.parameters(), torch.empty(0)).device
    model = model.to("cpu").eval()
    diff = None
    try:
        with atomic_path(path) as tmp:
            try:
                _write(model, x, tmp, format, opset, exporter, dynamic_batch)
            except ExportError:
                raise
            except Exception as exc:
                hint = " (try --onnx-exporter legacy)" if format == "onnx" and exporter == "dynamo" else ""
                raise ExportError(f"{format} export of {type(model).__name__} failed{hint}: "
                                  f"{type(exc).__name__}: {exc}") from exc
            if verify:
                diff = _max_abs_diff(model, load_exported(tmp, format=format), x, dynamic_batch)
                if not diff <= atol:
                    raise ExportError(f"the {format} export's outputs differ from the torch model's by {diff:.3g} "
                                      f"(> {atol:g}); nothing written")
    finally:
        model.train(was_training).to(device)
    return diff


@torch.no_grad()
def _max_abs_diff(model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  dynamic_batch: bool) -> float:
    gen = torch.Generator().manual_seed(0)
    inputs = [x] + ([torch.randn((x.shape[0] + 3, *x.shape[1:]), generator=gen)] if dynamic_batch else [])
    diff = 0.0
    for inp in inputs:
        ref, got = model(inp), run(inp)
        if tuple(got.shape) != tuple(ref.shape):
            raise ExportError(f"the export's output shape {tuple(got.shape)} is not the model's {tuple(ref.shape)}")
        diff = max(diff, float((got.float() - ref.float()).abs().max()))
    return diff


# --- from a run folder or a registry key ---------------------------------------------------------
def load_source(source: str | os.PathLike, *, registry: str | os.PathLike | None = None,
                allow_untrained: bool = False) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(slim model in eval mode, mask, description)`` from a finished prune/finetune run folder or a
    registry key (``arch/dataset/kind-value``; ``registry``: a folder or ``hf://owner/repo``, default the
    user registry with the built-in zoo as fallback).

    A registry entry without weights is refused unless ``allow_untrained`` (then the slim architecture is
    exported with random weights: for latency or integration checks only, marked ``trained: false``).
    """
    from .runs import folder as R
    from .runs import load_run_model, open_source_run

    text = os.fspath(source)
    if Path(text).is_dir():
        from .mask import Mask

        run, config = open_source_run(text, ("prune", "finetune"))
        mask = Mask.load(run.file(R.MASK))
        model = load_run_model(run.path)
        info = {"source": {"kind": "run", "path": str(run.path), "run_kind": config["kind"]},
                "weights": "fine-tuned" if config["kind"] == "finetune" else "pruning phase (not fine-tuned)",
                "trained": True, "arch": config["arch"],
                "dataset": mask.metadata.get("dataset") or (config.get("dataset") or {}).get("name"),
                "budget": config.get("budget"), "num_classes": int(config["num_classes"]),
                "input_size": [int(v) for v in config["input_size"]]}
        return model, mask, info
    if Path(text).exists() or text.count("/") != 2:
        raise ExportError(f"{text!r} is neither a run folder nor a registry key (arch/dataset/kind-value)")
    from .registry import MaskRegistry

    reg = MaskRegistry(registry)
    try:
        mask = reg.pull(text)
    except InvalidKeyError as exc:
        raise ExportError(f"{text!r} is neither a run folder nor a registry key ({exc})") from None
    meta = mask.metadata
    try:
        location = reg.entry(text) and reg.location
    except EntryNotFoundError:  # the default registry fell back to the built-in zoo
        location = MaskRegistry.builtin().location
    info = {"source": {"kind": "registry", "key": text, "registry": location}, "arch": mask.arch,
            "dataset": meta.get("dataset"), "budget": str(mask.budget) if mask.budget else None,
            "num_classes": meta.get("num_classes"), "input_size": meta.get("input_size")}
    if not info["num_classes"] or not info["input_size"]:
        raise ExportError(f"the mask {text} records no num_classes / input_size; cannot rebuild its model")
    try:
        model = reg.pull_model(text)
        info.update(weights="registry (pushed with the mask)", trained=True)
    except EntryNotFoundError:
        if not allow_untrained:
            raise ExportError(f"registry entry {text} holds a mask but no weights, so there is no trained model "
                              "to export; push it with weights, export a finetune run folder instead, or pass "
                              "--allow-untrained (allow_untrained=True) for the slim architecture with random "
                              "weights") from None
        from .models import create_model

        with torch.random.fork_rng():  # reproducible random weights, the caller's RNG untouched
            torch.manual_seed(0)
            dense = create_model(mask.arch, num_classes=int(info["num_classes"]),
                                 in_chans=int(info["input_size"][0]))
        model = mask.slim(dense, torch.zeros(1, *info["input_size"])).eval()
        info.update(weights="none (random initialisation)", trained=False)
    return model, mask, info


def export_from(source: str | os.PathLike, *, format: str, out: str | os.PathLike,
                registry: str | os.PathLike | None = None, allow_untrained: bool = False,
                opset: int | None = None, exporter: str = "dynamo", overwrite: bool = False,
                verify: bool = True) -> ExportResult:
    """Export the slim model of a run folder or registry key (see :func:`load_source`) to ``out``, with its
    mask and a JSON card beside it (:func:`companion_paths`). Nothing is written if a check fails.

    Example:
        >>> import tempfile
        >>> result = export_from("resnet8/mnist5k/flops-0.25", format="pt2",
        ...                      out=tempfile.mkdtemp() + "/r8.pt2")        # doctest: +SKIP
        >>> result.card["check"]["max_abs_diff"] < 1e-4                    # doctest: +SKIP
        True
    """
    from ._version import __version__
    from .runs import folder as R

    _preflight(format, exporter, verify)
    opset = opset or DEFAULT_OPSET
    out = Path(out)
    mask_path, card_path = companion_paths(out)
    _check_out([out, mask_path, card_path], overwrite)
    model, mask, info = load_source(source, registry=registry, allow_untrained=allow_untrained)
    x = torch.randn((2, *[int(v) for v in info["input_size"]]), generator=torch.Generator().manual_seed(0))
    diff = export_model(model, x, out, format=format, opset=opset, exporter=exporter, overwrite=overwrite,
                        verify=verify)
    try:  # the three files stand or fall together: a failed mask or card write takes the model file along
        mask.save(mask_path)
        versions = {"torch": torch.__version__, "chipnet-zoo": __version__}
        if format == "onnx":
            for name in ("onnx", "onnxscript", "onnxruntime"):
                with contextlib.suppress(Exception):
                    versions[name] = importlib.metadata.version(name)
        card = {
            "format": format, "file": out.name, "sha256": _sha256(out), "size": out.stat().st_size,
            "mask_file": mask_path.name, **{k: info[k] for k in ("arch", "dataset", "budget")},
            "ratios": mask.ratios, "input_size": list(info["input_size"]), "num_classes": int(info["num_classes"]),
            "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "dynamic_batch": True,
            "params": sum(p.numel() for p in model.parameters()),
            "opset": opset if format == "onnx" else None, "exporter": exporter if format == "onnx" else None,
            "trained": info["trained"], "weights": info["weights"], "source": info["source"],
            "check": {"verified": verify, "max_abs_diff": diff, "atol": ATOL,
                      "batch_sizes": [2, 5] if verify else [],
                      "runtime": {"onnx": "onnxruntime", "torchscript": "torch.jit.load",
                                  "pt2": "torch.export.load"}[format]},
            "versions": versions, "created": R.now(),
        }
        from ._atomic import atomic_write_json

        atomic_write_json(card_path, card)
    except BaseException:
        for path in (out, mask_path, card_path):
            path.unlink(missing_ok=True)
        raise
    return ExportResult(out, mask_path, card_path, card)


# --- latency -------------------------------------------------------------------------------------
def measure_onnx_latency(model: nn.Module, input_size: tuple[int, ...] | list[int], batch_sizes=(64, 1), *,
                         repeats: int = 20, warmup: int = 3, threads: int | None = None,
                         exporter: str = "dynamo") -> dict[str, Any]:
    """Median onnxruntime (CPU) forward time in ms per batch size, after ``warmup`` runs, the model exported
    to a temporary ONNX file; the same keys as :func:`chipnet_zoo.training.measure_latency`.

    ``threads``: onnxruntime intra-op threads (default: torch's current count, so both are comparable)."""
    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="chipnet-zoo-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_model(model, torch.zeros(2, *input_size), path, format="onnx", exporter=exporter, verify=True)
        run = load_exported(path, format="onnx", threads=threads)
        out: dict[str, Any] = {"runtime": "onnxruntime", "device": "cpu", "repeats": repeats, "threads": threads}
        from .evaluation import time_batches

        out.update(time_batches(run, input_size, batch_sizes, repeats=repeats, warmup=warmup))
    return out


def add_onnx_latency(metrics: dict[str, Any], run_dir: str | os.PathLike, *, repeats: int,
                     metrics_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """``chipnet-zoo eval --onnx-latency``: onnxruntime latency of the run's model beside torch's
    (``metrics["latency_cpu"]``: the same batch sizes, repeats and thread count), stored under
    ``metrics["latency_onnxruntime"]``, also in ``metrics_file`` if it exists, and printed to stderr."""
    from ._atomic import atomic_write_json
    from .runs import Run, load_run_model

    torch_lat = metrics.get("latency_cpu") or {}
    batches = [int(k[len("batch_"):-len("_ms")]) for k in torch_lat if k.startswith("batch_") and k.endswith("_ms")]
    config = Run(run_dir).config()
    lat = measure_onnx_latency(load_run_model(run_dir), config["input_size"], batches or (64, 1),
                               repeats=repeats, threads=torch_lat.get("threads"))
    metrics["latency_onnxruntime"] = lat
    if metrics_file is not None and Path(metrics_file).is_file():
        stored = json.loads(Path(metrics_file).read_text())
        stored["latency_onnxruntime"] = lat
        atomic_write_json(Path(metrics_file), stored)
    parts = ", ".join(f"batch {b}: {lat[f'batch_{b}_ms']:.2f} ms (torch {torch_lat.get(f'batch_{b}_ms', float('nan')):.2f})"
                      for b in batches or (64, 1))
    print(f"  onnxruntime CPU latency (median of {repeats} after 3 warm-up, {lat['threads']} threads): {parts}",
          file=sys.stderr)
    return metrics


def require_onnx(exporter: str = "dynamo") -> None:
    """Raise a one-line :class:`ExportError` unless the ONNX exporter and onnxruntime are installed."""
    _preflight("onnx", exporter, verify=True)
