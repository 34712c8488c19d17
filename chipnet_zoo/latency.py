"""Latency budgets: a measured, per-device table of layer latencies and the predictor the cost model uses.

:func:`build_latency_table` times every conv/linear layer of a model *alone*, as a function of its kept
input and output channels, over a grid of widths (a few fractions of each prunable dimension, always the
smallest and the full width), on the model's device, dtype, batch size, input size and memory format.
Identical layer shapes (repeated blocks) are measured once. Each grid point's time is the median of
interleaved repeats after a warm-up (every point of a layer is timed once per round, so slow drift of the
machine hits all points alike). The **remainder** is what the layers alone do not explain: batch-norms,
activations, residual additions, pooling (all elementwise over the activations, so ~proportional to the
activation volume) and per-call overhead (fixed). It is calibrated on two whole models timed in the same
interleaved rounds, the dense model and a uniformly half-width slimmed one (volume ratio ``v``):
``remainder(V) = fixed + per_volume · V`` through ``(1, dense − Σ layers)`` and ``(v, half − Σ layers)``,
both parts clamped at >= 0 (``V``: the kept activation volume as a fraction of the dense one, the cost
model's ``volume``). On a small CIFAR ResNet on CPU the remainder is about half the dense time and mostly
elementwise, so a fixed remainder alone would make most latency budgets unreachable.

Prediction: ``latency(keep) = Σ_layers T_l(n_in, n_out) + fixed + per_volume · V(keep)`` with ``T_l`` the
bilinear interpolation of the layer's grid. Before interpolation every grid is made **monotone non-decreasing** in
each width by a cumulative max (measured times are noisy and kernels have sweet spots, but the thresholding's
binary search over the channel ranking needs a ratio that never falls when a channel is added); bilinear
interpolation of a monotone grid stays monotone. With a 0/1 mask the ratio is exact *against the table*:
it is the table's prediction for the physically slimmed model (:meth:`LatencyTable.predict_model`). With
soft keep values it is differentiable (the pruning phase's budget loss).

The table is cached as JSON (never pickle) under ``CHIPNET_ZOO_HOME/latency``, named by a digest of its
key: device name (CPU model / CUDA device), torch version, threads, batch size, dtype, input size, memory
format, width grid and the architecture's structure fingerprint (its leaf modules and their shapes).

Example:
    >>> import torch, chipnet_zoo as cz
    >>> from chipnet_zoo.latency import build_latency_table
    >>> model = cz.create_model("resnet8", num_classes=10)
    >>> x = torch.randn(16, 3, 32, 32)  # batch 16: the batch size is part of the table's key
    >>> table = build_latency_table(model, x, widths=(0.5, 1.0), repeats=5, progress=False)
    >>> table.key["batch"], table.remainder_ms >= 0
    (16, True)
    >>> mask = cz.ChipNetPruner(model, "latency:0.9", example_input=x[:1], latency_table=table).mask()
    >>> mask.ratios["latency"] <= 0.9, mask.metadata["latency"]["batch"]
    (True, 16)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import constants
from .errors import LatencyKeyWarning, LatencyTableError
from .gates import plain_model
from .groups import forward_with_hooks
from .support import CONV_TYPES
from .threshold import AUTO, AutoWidths, check_round_to

#: Version of the table's JSON layout (a cache file of another version is measured again).
TABLE_FORMAT = 1
#: Default width grid: fractions of each prunable dimension (the smallest width and the full one are added).
DEFAULT_WIDTHS = (0.125, 0.25, 0.5, 0.75, 1.0)
#: Timed rounds per grid point (the median is kept) and untimed rounds before them.
DEFAULT_REPEATS = 15
DEFAULT_WARMUP = 3
#: The key fields that describe the machine (a mask used where they differ warns, :func:`check_machine`).
MACHINE_FIELDS = ("device", "threads", "torch_version")
#: The key fields a latency mask records in its metadata (``metadata["latency"]``).
MASK_FIELDS = ("device", "threads", "torch_version", "batch", "dtype", "input_size", "memory_format",
               "fingerprint")
MEMORY_FORMATS = ("contiguous", "channels_last")
_MAX_TABLE_BYTES = 64_000_000
#: Layer shapes measured by this process (a cache hit measures none; tests read this).
MEASUREMENTS = {"shapes": 0, "models": 0, "widths": 0}


# --- the key ---------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: torch.device | str) -> str:
    """A stable name of the hardware behind ``device``, e.g. ``cpu:AMD EPYC 7B13`` or ``cuda:NVIDIA H200``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{_cpu_model()}"
    return device.type


def machine_key(device: torch.device | str) -> dict[str, Any]:
    """The :data:`MACHINE_FIELDS` of this process on ``device``."""
    return {"device": device_name(device), "threads": torch.get_num_threads(), "torch_version": torch.__version__}


def structure_fingerprint(model: nn.Module) -> str:
    """A digest of the model's leaf modules (names, types and their shape arguments)."""
    leaves = [[name, type(m).__name__, m.extra_repr()] for name, m in model.named_modules()
              if next(m.children(), None) is None]
    return hashlib.sha256(json.dumps(leaves).encode()).hexdigest()[:16]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


# --- the table ---------------------------------------------------------------------------------------
def _monotone(ms: torch.Tensor) -> torch.Tensor:
    """Cumulative max along both widths: non-decreasing in n_in and in n_out (the order of the two passes
    does not matter; the second keeps the first's monotonicity)."""
    return ms.cummax(0).values.cummax(1).values


@dataclass
class LatencyTable:
    """Measured layer latencies (milliseconds) of one model on one machine; see the module docstring.

    ``shapes`` maps a shape id to ``{"spec", "in", "out", "ms"}`` (raw medians, ``ms[i][j]`` at widths
    ``in[i]``, ``out[j]``); ``layers`` maps every conv/linear layer name to its shape id; ``areas`` gives the
    output positions of the layers whose outputs the volume counts (all but the classifier); ``dense_ms`` is
    the whole dense model's measured latency; ``remainder`` holds ``fixed_ms`` and ``per_volume_ms`` (and the
    calibration's half-width measurement).
    """

    key: dict[str, Any]
    shapes: dict[str, dict[str, Any]]
    layers: dict[str, str]
    areas: dict[str, int]
    dense_ms: float
    remainder: dict[str, float]
    from_cache: bool = field(default=False, compare=False)
    path: Path | None = field(default=None, compare=False)
    _grids: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False,
                                                                                compare=False)

    def grid(self, layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(in widths, out widths, monotone ms)`` of a layer (float64)."""
        sid = self.layers[layer]
        if sid not in self._grids:
            s = self.shapes[sid]
            self._grids[sid] = (torch.tensor(s["in"], dtype=torch.float64), torch.tensor(s["out"], dtype=torch.float64),
                                _monotone(torch.tensor(s["ms"], dtype=torch.float64)))
        return self._grids[sid]

    def layer_ms(self, layer: str, n_in: float, n_out: float) -> float:
        """The interpolated latency of one layer at the given widths (a depthwise conv reads ``n_out``)."""
        xin, xout, ms = self.grid(layer)
        grids = _pad_grids([(xin, xout, ms)])
        value = _interpolate(*grids, torch.tensor([float(n_in)], dtype=torch.float64),
                             torch.tensor([float(n_out)], dtype=torch.float64))
        return float(value[0])

    @property
    def layers_full_ms(self) -> float:
        """Σ of every layer's table value at full width."""
        total = 0.0
        for name in self.layers:
            _, _, ms = self.grid(name)
            total += float(ms[-1, -1])
        return total

    @property
    def fixed_ms(self) -> float:
        return float(self.remainder["fixed_ms"])

    @property
    def per_volume_ms(self) -> float:
        return float(self.remainder["per_volume_ms"])

    @property
    def remainder_ms(self) -> float:
        """The calibrated remainder of the dense model (>= 0): what its layers alone do not explain."""
        return self.fixed_ms + self.per_volume_ms

    @property
    def predicted_dense_ms(self) -> float:
        """The table's prediction for the dense model."""
        return self.layers_full_ms + self.remainder_ms

    @property
    def dense_volume(self) -> int:
        return sum(int(self.grid(name)[1][-1]) * area for name, area in self.areas.items())

    def predict_model(self, model: nn.Module) -> float:
        """The predicted latency (ms) of ``model`` (e.g. a slimmed one) from its layers' channel counts."""
        modules = dict(model.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise LatencyTableError(f"the model has no layer {missing[0]!r} of the latency table")
        volume = sum(_widths(modules[name])[1] * area for name, area in self.areas.items())
        total = self.fixed_ms + self.per_volume_ms * volume / max(self.dense_volume, 1)
        for name in self.layers:
            total += self.layer_ms(name, *_widths(modules[name]))
        return total

    def describe(self) -> dict[str, Any]:
        """What a latency mask records (``metadata["latency"]``): :data:`MASK_FIELDS` and the dense latency."""
        out = {k: self.key[k] for k in MASK_FIELDS}
        out["dense_ms"] = round(self.predicted_dense_ms, 6)
        return out

    def predictor(self, graph) -> LatencyPredictor:
        """The vectorised predictor over ``graph``'s layers (checks that the table was measured for it)."""
        return LatencyPredictor(self, graph)

    # --- files -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "key": self.key, "dense_ms": self.dense_ms, "layers": self.layers,
                "areas": self.areas, "shapes": self.shapes, "remainder": self.remainder}

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (atomically)."""
        from ._atomic import atomic_write

        return atomic_write(path, json.dumps(self.to_json(), sort_keys=True).encode())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save`. Raises :class:`LatencyTableError` on anything malformed."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"latency table not found: {path}")
        if path.stat().st_size > _MAX_TABLE_BYTES:
            raise LatencyTableError(f"{path} is not a latency table: more than {_MAX_TABLE_BYTES} bytes")
        try:
            doc = json.loads(path.read_text())
            table = cls(key=dict(doc["key"]), shapes=dict(doc["shapes"]), layers=dict(doc["layers"]),
                        areas={str(k): int(v) for k, v in doc["areas"].items()}, dense_ms=float(doc["dense_ms"]),
                        remainder={str(k): float(v) for k, v in doc["remainder"].items()},
                        from_cache=True, path=path)
            if (any(not math.isfinite(v) or v < 0 for v in table.remainder.values())
                    or not {"fixed_ms", "per_volume_ms"} <= set(table.remainder)):
                raise ValueError(f"remainder {table.remainder}")
            if doc.get("format") != TABLE_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {TABLE_FORMAT}")
            for sid, shape in table.shapes.items():
                for dim, steps in shape.get("steps", {}).items():
                    if dim not in ("in", "out") or not all(
                            str(k).isdigit() and int(k) >= 1 and isinstance(v, (int, float))
                            and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for k, v in steps.items()):
                        raise ValueError(f"shape {sid}: malformed width steps")
            for name in table.layers:
                xin, xout, ms = table.grid(name)
                if ms.shape != (len(xin), len(xout)) or not bool(torch.isfinite(ms).all()) or not (
                        bool((xin.diff() > 0).all()) and bool((xout.diff() > 0).all())):
                    raise ValueError(f"layer {name!r}: grid and times do not match")
            if not math.isfinite(table.dense_ms) or table.dense_ms <= 0:
                raise ValueError(f"dense_ms {table.dense_ms!r}")
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise LatencyTableError(f"{path} is not a valid latency table: {exc}") from None
        return table


# --- the vectorised predictor (the cost model's latency) -------------------------------------------------
def _widths(m: nn.Module) -> tuple[int, int]:
    return (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)


def _pad_grids(grids: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Stack per-layer grids of different lengths: ``xin [L, A]``, ``xout [L, B]``, ``ms [L, A, B]`` and the
    last real index per axis. Padding continues each axis beyond its full width (never reached: widths are
    clamped to the real range) and repeats the last values; a one-point axis gets a second point."""
    a = max(2, max(len(g[0]) for g in grids))
    b = max(2, max(len(g[1]) for g in grids))
    xin = torch.empty(len(grids), a, dtype=torch.float64)
    xout = torch.empty(len(grids), b, dtype=torch.float64)
    ms = torch.empty(len(grids), a, b, dtype=torch.float64)
    last_in = torch.empty(len(grids), dtype=torch.long)
    last_out = torch.empty(len(grids), dtype=torch.long)
    for i, (gi, go, v) in enumerate(grids):
        xin[i] = torch.cat([gi, gi[-1] + torch.arange(1, a - len(gi) + 1, dtype=torch.float64)])
        xout[i] = torch.cat([go, go[-1] + torch.arange(1, b - len(go) + 1, dtype=torch.float64)])
        v = torch.cat([v, v[-1:].expand(a - len(gi), -1)], 0)
        ms[i] = torch.cat([v, v[:, -1:].expand(-1, b - len(go))], 1)
        last_in[i], last_out[i] = len(gi) - 1, len(go) - 1
    return xin, xout, ms, last_in, last_out


def _axis(x: torch.Tensor, last: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell index and position in it (in [0, 1]) of widths ``n`` on per-row grids ``x``; ``n`` is clamped to
    each row's real range (constant beyond it)."""
    lo = x[:, 0]
    hi = x.gather(1, last.unsqueeze(1)).squeeze(1)
    n = torch.minimum(torch.maximum(n, lo.to(n)), hi.to(n))
    idx = torch.searchsorted(x, n.detach().to(x.dtype).unsqueeze(1).contiguous(), right=True).squeeze(1) - 1
    idx = idx.clamp(min=0).minimum((last - 1).clamp(min=0))
    x0 = x.gather(1, idx.unsqueeze(1)).squeeze(1)
    x1 = x.gather(1, (idx + 1).unsqueeze(1)).squeeze(1)
    return idx, ((n - x0.to(n)) / (x1 - x0).to(n)).clamp(0.0, 1.0)


def _interpolate(xin, xout, ms, last_in, last_out, n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of every layer's grid at its widths (differentiable in ``n_in``, ``n_out``)."""
    i, ti = _axis(xin, last_in, n_in)
    j, tj = _axis(xout, last_out, n_out)
    rows = torch.arange(ms.shape[0], device=ms.device)
    v = ms.to(n_in.dtype)
    v00, v01 = v[rows, i, j], v[rows, i, j + 1]
    v10, v11 = v[rows, i + 1, j], v[rows, i + 1, j + 1]
    return (1 - ti) * ((1 - tj) * v00 + tj * v01) + ti * ((1 - tj) * v10 + tj * v11)


class LatencyPredictor:
    """The latency of a keep vector from per-layer kept widths: ``Σ T_l(n_in, n_out) + remainder`` (ms),
    vectorised over a :class:`~chipnet_zoo.groups.ChannelGraph`'s conv/linear layers.

    Raises:
        LatencyTableError: the table was measured for another input size or model (a layer missing or of
            another width).
    """

    def __init__(self, table: LatencyTable, graph):
        self.table = table
        size = list(graph.input_shape)
        if list(table.key["input_size"]) != size:
            raise LatencyTableError(
                f"the latency table was measured at input size {table.key['input_size']}, the model here runs at "
                f"{size}: measure a table for this input size (build_latency_table(model, example_input))")
        positions, grids = [], []
        for pos, layer in enumerate(graph.layers):
            if layer.kind not in ("conv", "linear"):
                continue
            if layer.name not in table.layers:
                raise LatencyTableError(f"the latency table has no layer {layer.name!r}: it was measured for "
                                        f"another model (fingerprint {table.key.get('fingerprint')})")
            xin, xout, ms = table.grid(layer.name)
            if int(xin[-1]) != layer.in_channels or int(xout[-1]) != layer.out_channels:
                raise LatencyTableError(
                    f"layer {layer.name!r} is {layer.in_channels}->{layer.out_channels} channels here but "
                    f"{int(xin[-1])}->{int(xout[-1])} in the latency table: it was measured for another model")
            positions.append(pos)
            grids.append((xin, xout, ms))
        if len(positions) != len(table.layers):
            raise LatencyTableError("the latency table holds layers this model does not have: it was measured "
                                    "for another model")
        self.positions = torch.tensor(positions, dtype=torch.long)
        self._grids = _pad_grids(grids) if grids else None
        self.fixed_ms, self.per_volume_ms = table.fixed_ms, table.per_volume_ms
        self._cache: dict[tuple[torch.device, torch.dtype], tuple] = {}

    def _on(self, ref: torch.Tensor) -> tuple:
        key = (ref.device, ref.dtype)
        if key not in self._cache:
            self._cache[key] = tuple(t.to(ref.device) for t in (self.positions, *self._grids))
        return self._cache[key]

    def layer_ms(self, n_out: torch.Tensor, n_in: torch.Tensor) -> torch.Tensor:
        """Per conv/linear layer latency (ms) from all cost-model layers' kept widths."""
        pos, *grids = self._on(n_out)
        return _interpolate(*grids, n_in[pos], n_out[pos])

    def total_ms(self, n_out: torch.Tensor, n_in: torch.Tensor, volume: torch.Tensor) -> torch.Tensor:
        """``Σ T_l + fixed + per_volume · volume`` (``volume``: kept activations as a fraction of the dense)."""
        rest = self.fixed_ms + self.per_volume_ms * volume
        if self._grids is None:
            return rest
        return self.layer_ms(n_out, n_in).sum() + rest

    def marginal(self, n_out: torch.Tensor, n_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per cost-model layer: the table's latency step for one more output and one more input channel
        (the remainder's volume part is added by the cost model)."""
        per_out, per_in = torch.zeros_like(n_out), torch.zeros_like(n_in)
        if self._grids is None:
            return per_out, per_in
        pos, *grids = self._on(n_out)
        base = _interpolate(*grids, n_in[pos], n_out[pos])
        per_out[pos] = _interpolate(*grids, n_in[pos], n_out[pos] + 1) - base
        per_in[pos] = _interpolate(*grids, n_in[pos] + 1, n_out[pos]) - base
        return per_out, per_in


# --- measuring ---------------------------------------------------------------------------------------
def _width_grid(full: int, const: int, granule: int, widths: Sequence[float], prunable: bool) -> list[int]:
    """Widths to measure along one dimension: multiples of ``granule`` from the smallest reachable width
    (``const`` fixed channels + one granule) to ``full``, at the given fractions."""
    if not prunable:
        return [full]
    points = {full, min(full, const + granule)}
    for f in widths:
        w = int(round(f * full / granule)) * granule
        points.add(min(full, max(const + granule, w)))
    return sorted(points)


def _layer_specs(model: nn.Module, graph, x: torch.Tensor, widths: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Per conv/linear layer of ``graph``: what is needed to rebuild and time it at other widths."""
    modules = dict(model.named_modules())
    shapes: dict[nn.Module, list[int]] = {}

    def hook(module: nn.Module, inputs, _output) -> None:
        shapes.setdefault(module, list(inputs[0].shape))

    forward_with_hooks(model, x, [modules[layer.name] for layer in graph.layers if layer.kind in ("conv", "linear")],
                       hook)
    specs = {}
    for layer in graph.layers:
        if layer.kind not in ("conv", "linear"):
            continue
        m = modules[layer.name]
        if m not in shapes:
            raise LatencyTableError(f"layer {layer.name!r} is not called in the model's forward pass")
        if isinstance(m, CONV_TYPES):
            if type(m) not in CONV_TYPES or getattr(m, "transposed", False):
                raise LatencyTableError(f"cannot time layer {layer.name!r} of type {type(m).__name__}")
            spec: dict[str, Any] = {"type": type(m).__name__, "kernel": list(m.kernel_size), "stride": list(m.stride),
                                    "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
                                    "dilation": list(m.dilation), "padding_mode": m.padding_mode,
                                    "groups": m.groups, "depthwise": layer.depthwise}
        else:
            spec = {"type": "Linear", "groups": 1, "depthwise": False}
        g = 1 if layer.depthwise else spec["groups"]
        spec.update(bias=m.bias is not None, input=shapes[m], channel_dim=1 if isinstance(m, CONV_TYPES) else -1,
                    in_grid=([layer.in_channels] if layer.depthwise else _width_grid(
                        layer.in_channels, layer.in_channels - len(layer.in_global), g, widths, len(layer.in_global) > 0)),
                    out_grid=_width_grid(layer.out_channels, layer.out_channels - len(layer.out_global), g, widths,
                                         len(layer.out_global) > 0))
        specs[layer.name] = spec
    return specs


def _make_layer(spec: dict[str, Any], n_in: int, n_out: int) -> nn.Module:
    if spec["type"] == "Linear":
        return nn.Linear(n_in, n_out, bias=spec["bias"])
    cls = {c.__name__: c for c in CONV_TYPES}[spec["type"]]
    groups = n_out if spec["depthwise"] else spec["groups"]
    n_in = n_out if spec["depthwise"] else n_in
    return cls(n_in, n_out, spec["kernel"], stride=spec["stride"], padding=spec["padding"],
               dilation=spec["dilation"], groups=groups, bias=spec["bias"], padding_mode=spec["padding_mode"])


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def interleaved_medians(fns: Sequence[Callable[[], Any]], device: torch.device, *, repeats: int = DEFAULT_REPEATS,
                        warmup: int = DEFAULT_WARMUP) -> list[float]:
    """Milliseconds per call of each function: the median of ``repeats`` rounds, each round calling every
    function once in turn, after ``warmup`` untimed rounds (no autograd)."""
    sync = _sync(device)
    samples: list[list[float]] = [[] for _ in fns]
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns:
                fn()
        sync()
        for _ in range(repeats):
            for i, fn in enumerate(fns):
                start = time.perf_counter()
                fn()
                sync()
                samples[i].append(time.perf_counter() - start)
    return [1e3 * statistics.median(s) for s in samples]


def _measure_shape(spec: dict[str, Any], device: torch.device, dtype: torch.dtype, memory_format: str,
                   repeats: int, warmup: int) -> list[list[float]]:
    fmt = torch.channels_last if memory_format == "channels_last" and len(spec["input"]) == 4 else None
    inputs: dict[int, torch.Tensor] = {}
    fns = []
    for n_in in spec["in_grid"]:
        for n_out in spec["out_grid"]:
            c = n_out if spec["depthwise"] else n_in
            if c not in inputs:
                shape = list(spec["input"])
                shape[spec["channel_dim"]] = c
                inputs[c] = torch.randn(shape, device=device, dtype=dtype)
                if fmt is not None:
                    inputs[c] = inputs[c].contiguous(memory_format=fmt)
            layer = _make_layer(spec, n_in, n_out).to(device=device, dtype=dtype).eval()
            if fmt is not None:
                layer = layer.to(memory_format=fmt)
            fns.append(functools.partial(layer, inputs[c]))
    flat = interleaved_medians(fns, device, repeats=repeats, warmup=warmup)
    b = len(spec["out_grid"])
    MEASUREMENTS["shapes"] += 1
    return [flat[i * b:(i + 1) * b] for i in range(len(spec["in_grid"]))]


def check_measurable(model: nn.Module, example_input: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """The device and dtype a latency table of ``model`` would be measured on.

    Raises:
        LatencyTableError: nothing runs there (the ``meta`` device), or the model and input are apart.
    """
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else example_input.device
    dtype = param.dtype if param is not None else example_input.dtype
    if device.type == "meta" or example_input.device.type == "meta":
        raise LatencyTableError("a latency budget needs a latency table, and none can be measured on the 'meta' "
                                "device (nothing runs there): move the model and example_input to the device to "
                                "optimise for, or pass latency_table= (a table measured there, LatencyTable.load)")
    if example_input.device != device:
        raise LatencyTableError(f"cannot measure latency: example_input is on {example_input.device} but the "
                                f"model on {device}")
    return device, dtype


def model_memory_format(model: nn.Module) -> str:
    """``"channels_last"`` when the model's first conv with a spatial kernel holds its weight channels-last
    (``model.to(memory_format=torch.channels_last)``), else ``"contiguous"``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.shape[-2:].numel() > 1 and m.weight.shape[1] > 1:
            w = m.weight
            return "channels_last" if (w.is_contiguous(memory_format=torch.channels_last)
                                       and not w.is_contiguous()) else "contiguous"
    return "contiguous"


def latency_cache_dir() -> Path:
    """Where tables are cached: ``CHIPNET_ZOO_HOME/latency`` (read at call time)."""
    return Path(constants.CHIPNET_ZOO_HOME) / "latency"


def build_latency_table(model: nn.Module, example_input: torch.Tensor, *, graph=None,
                        widths: Sequence[float] | None = None, repeats: int | None = None,
                        warmup: int | None = None, memory_format: str | None = None, cache: bool = True,
                        progress: bool = True) -> LatencyTable:
    """Measure (or load from the cache) the latency table of ``model`` at ``example_input``'s batch size,
    input size and dtype, on the model's device, with this process's thread count.

    Args:
        model: the dense model (gates, if attached, are left out of the timing: a plain copy is timed).
        example_input: a batch of the size to optimise for (batch 1 for single-image latency).
        graph: the model's :class:`~chipnet_zoo.groups.ChannelGraph` (built from ``example_input[:1]`` if not given).
        widths: fractions of each prunable dimension to measure (the smallest and the full width are added);
            default :data:`DEFAULT_WIDTHS`.
        repeats, warmup: timed and untimed rounds per grid point (medians of interleaved rounds); default
            :data:`DEFAULT_REPEATS`, :data:`DEFAULT_WARMUP`.
        memory_format: ``"contiguous"`` or ``"channels_last"`` (4-D inputs); default: the model's own
            (:func:`model_memory_format`, e.g. the pipeline's channels-last models on CUDA).
        cache: read and write ``CHIPNET_ZOO_HOME/latency/<digest of the key>.json``.

    Raises:
        LatencyTableError: the model or input is not on a device that runs (e.g. ``meta``), or on two devices.
    """
    widths = DEFAULT_WIDTHS if widths is None else widths
    memory_format = model_memory_format(model) if memory_format is None else memory_format
    repeats = DEFAULT_REPEATS if repeats is None else repeats
    warmup = DEFAULT_WARMUP if warmup is None else warmup
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    if not widths or not all(0 < float(w) <= 1 for w in widths):
        raise ValueError(f"widths must be fractions in (0, 1], got {widths!r}")
    if int(repeats) < 1 or int(warmup) < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device, dtype = check_measurable(model, example_input)
    x = example_input.detach().to(dtype)
    plain = plain_model(model)
    if graph is None:
        from .groups import build_channel_graph

        graph = build_channel_graph(plain, x[:1])
    widths = sorted({float(w) for w in widths})
    key = {"format": TABLE_FORMAT, **machine_key(device), "batch": int(x.shape[0]),
           "dtype": str(dtype).removeprefix("torch."), "input_size": list(x.shape[1:]),
           "memory_format": memory_format, "fingerprint": structure_fingerprint(plain), "widths": widths,
           "arch": str(getattr(model, "arch_name", type(model).__name__))}
    path = latency_cache_dir() / f"{_digest(key)}.json"
    if cache and path.is_file():
        try:
            table = LatencyTable.load(path)
            if table.key == key:
                return table
        except LatencyTableError as exc:
            warnings.warn(f"ignoring the cached latency table: {exc}", stacklevel=2)
    specs = _layer_specs(plain, graph, x, widths)
    shapes: dict[str, dict[str, Any]] = {}
    layers: dict[str, str] = {}
    for name, spec in specs.items():
        sid = _digest(spec)
        layers[name] = sid
        shapes.setdefault(sid, {"spec": spec, "in": spec["in_grid"], "out": spec["out_grid"]})
    areas = {layer.name: int(layer.area) for layer in graph.layers
             if layer.kind in ("conv", "linear") and not layer.is_classifier}
    for entry in tqdm(shapes.values(), desc="latency table", disable=not progress, unit="shape"):
        entry["ms"] = _measure_shape(entry["spec"], device, dtype, memory_format, int(repeats), int(warmup))
    table = LatencyTable(key=key, shapes=shapes, layers=layers, areas=areas, dense_ms=0.0,
                         remainder={"fixed_ms": 0.0, "per_volume_ms": 0.0})
    _calibrate(table, plain, graph, x, device, memory_format, int(repeats), int(warmup))
    if cache:
        table.path = table.save(path)
    return table


def _calibrate(table: LatencyTable, plain: nn.Module, graph, x: torch.Tensor, device: torch.device,
               memory_format: str, repeats: int, warmup: int) -> None:
    """Time the dense model and a uniformly half-width slimmed one in interleaved rounds; set ``dense_ms`` and
    the remainder ``fixed + per_volume · V`` through both (see the module docstring)."""
    from .cost import CostModel
    from .slim import slim_model
    from .threshold import smallest_mask

    cost = CostModel(graph)
    half = smallest_mask(torch.zeros(graph.num_channels), cost, min_keep=0.5)
    volume = cost.hard_ratios(half)["volume"] if graph.num_channels else 1.0
    models = [plain]
    if volume < 1.0 - 1e-9:
        models.append(slim_model(plain, graph, half, x[:1]))
    fmt = torch.channels_last if memory_format == "channels_last" and x.dim() == 4 else None
    xm = x if fmt is None else x.contiguous(memory_format=fmt)
    states = [m.training for m in models]
    runs = [m if fmt is None else copy.deepcopy(m).to(memory_format=fmt) for m in models]
    try:
        for m in runs:
            m.eval()
        times = interleaved_medians([functools.partial(m, xm) for m in runs], device, repeats=repeats, warmup=warmup)
    finally:
        for m, state in zip(models, states):
            m.train(state)
    MEASUREMENTS["models"] += len(models)
    table.dense_ms = float(times[0])
    rest_dense = max(0.0, times[0] - table.layers_full_ms)
    per_volume = 0.0
    if len(models) == 2:
        table.remainder["half_ms"], table.remainder["half_volume"] = float(times[1]), float(volume)
        rest_half = max(0.0, times[1] - table.predict_model(models[1]))  # the remainder is still 0 here
        per_volume = min(rest_dense, max(0.0, (rest_dense - rest_half) / (1.0 - volume)))
    table.remainder.update(fixed_ms=rest_dense - per_volume, per_volume_ms=per_volume)


def resolve_table(model: nn.Module, example_input: torch.Tensor, *, graph, latency_table: LatencyTable | None,
                  progress: bool = True) -> LatencyTable:
    """``latency_table`` if given, else one measured (or cached) for ``model`` at ``example_input``."""
    if latency_table is not None:
        if not isinstance(latency_table, LatencyTable):
            raise TypeError(f"latency_table must be a LatencyTable, got {type(latency_table).__name__}")
        return latency_table
    return build_latency_table(model, example_input, graph=graph, progress=progress)


# --- fast widths (round_to="auto") ------------------------------------------------------------------
#: A width is kept as an option only if every wider one runs more than this fraction slower.
AUTO_TOLERANCE = 0.01
#: Widths probed per group: all of them up to this many, else this many evenly spaced ones.
AUTO_PROBES = 64
#: The largest step between a group's fast widths, as a fraction of the group (every group stays thinnable).
AUTO_MAX_GAP = 0.25


def probe_widths(size: int) -> list[int]:
    """The kept widths of a group of ``size`` channels that ``round_to="auto"`` times: every width up to
    :data:`AUTO_PROBES` channels, else the multiples of ``ceil(size / AUTO_PROBES)`` and ``size``."""
    step = max(1, math.ceil(size / AUTO_PROBES))
    return sorted(set(range(step, size + 1, step)) | {size})


def fast_widths(times: Mapping[int, float], tolerance: float = AUTO_TOLERANCE,
                max_gap: int | None = None) -> tuple[int, ...]:
    """The widths worth keeping from a group's measured time per kept width: those that every wider probed
    width runs more than ``tolerance`` slower than (the widest is always one). A width that a wider one runs
    (nearly) as fast as is dropped: rounding up to it buys channels for free (kernels have sweet spots).

    ``max_gap``: no two neighbouring widths (nor 0 and the narrowest) lie further apart; where they do, the
    fastest probed width within ``max_gap`` below the upper one is added (the narrowest of equals), so a group
    whose time hardly changes with its width can still be thinned.
    """
    out, fastest_above = [], math.inf
    for width in sorted(times, reverse=True):
        if times[width] * (1.0 + tolerance) < fastest_above:
            out.append(width)
        fastest_above = min(fastest_above, times[width])
    if max_gap is not None:
        kept, probed = set(out), sorted(times)
        for upper in sorted(out, reverse=True):
            below = max([w for w in kept if w < upper], default=0)
            while upper - below > max_gap:
                window = [w for w in probed if upper - max_gap <= w < upper]
                if not window:
                    break
                upper = min(window, key=lambda w: (times[w], w))
                kept.add(upper)
        out = list(kept)
    return tuple(sorted(out))


def _group_members(graph) -> list[list[tuple[str, str, int]]]:
    """Per group: the ``(layer, "in" | "out", fixed channels)`` whose width along that dimension is the group's
    kept count plus the fixed channels (layers reading several groups, or one channel many times, are left
    out; grouped-conv groups have none: they keep whole units anyway)."""
    group_of = torch.full((graph.num_channels,), -1, dtype=torch.long)
    for g, group in enumerate(graph.groups):
        group_of[group.indices] = g
    members: list[list[tuple[str, str, int]]] = [[] for _ in graph.groups]
    for layer in graph.layers:
        if layer.kind not in ("conv", "linear"):
            continue
        dims = [("out", layer.out_global, layer.out_channels)]
        if not layer.depthwise:
            dims.append(("in", layer.in_global, layer.in_channels))
        for dim, chans, full in dims:
            if chans.numel() == 0 or chans.unique().numel() != chans.numel():
                continue
            owners = group_of[chans].unique()
            g = int(owners[0])
            if owners.numel() == 1 and g >= 0 and graph.groups[g].granularity == 1:
                members[g].append((layer.name, dim, full - chans.numel()))
    return members


def _measure_steps(table: LatencyTable, sid: str, dim: str, widths: Sequence[int], device: torch.device,
                   repeats: int, warmup: int) -> dict[str, float]:
    """Time layer shape ``sid`` at every width in ``widths`` along ``dim`` (the other dimension full)."""
    spec = table.shapes[sid]["spec"]
    dtype = getattr(torch, table.key["dtype"])
    fmt = torch.channels_last if table.key["memory_format"] == "channels_last" and len(spec["input"]) == 4 else None
    full_in, full_out = spec["in_grid"][-1], spec["out_grid"][-1]
    fns = []
    for w in widths:
        n_in, n_out = (full_in, w) if dim == "out" else (w, full_out)
        shape = list(spec["input"])
        shape[spec["channel_dim"]] = n_out if spec["depthwise"] else n_in
        x = torch.randn(shape, device=device, dtype=dtype)
        layer = _make_layer(spec, n_in, n_out).to(device=device, dtype=dtype).eval()
        if fmt is not None:
            x, layer = x.contiguous(memory_format=fmt), layer.to(memory_format=fmt)
        fns.append(functools.partial(layer, x))
    MEASUREMENTS["widths"] += len(widths)
    return {str(w): ms for w, ms in zip(widths, interleaved_medians(fns, device, repeats=repeats, warmup=warmup))}


def auto_round_to(table: LatencyTable, model: nn.Module, graph, *, repeats: int | None = None,
                  warmup: int | None = None, tolerance: float = AUTO_TOLERANCE, progress: bool = True
                  ) -> AutoWidths:
    """Per group of ``graph``, the widths it may keep because they run fast on this device (``round_to="auto"``).

    Every layer that reads or writes a group is timed at each of the group's :func:`probe_widths` (the other
    dimension full, at the table's batch, dtype, input size and memory format; interleaved medians); summed
    per group, :func:`fast_widths` keeps the widths that no wider one runs (nearly) as fast as, with no step
    between them over a quarter of the group (:data:`AUTO_MAX_GAP`). Groups around
    grouped convs, and groups no timed layer reads or writes alone, keep their plain granularity (``1``).
    The times are stored in the table (``steps`` of each layer shape) and the cached table is rewritten, so
    each width is measured once per table.

    Raises:
        LatencyTableError: the table was measured on another machine (the widths are timed here, on the
            model's device), or for another model.
    """
    device, diffs = _model_device(model), machine_differences(table.key, model)
    if diffs:
        raise LatencyTableError(f"round_to='auto' times widths on this machine, but the latency table was measured "
                                f"on another ({'; '.join(diffs)}): measure a table here")
    table.predictor(graph)  # checks that the table is this model's
    repeats = DEFAULT_REPEATS if repeats is None else int(repeats)
    warmup = DEFAULT_WARMUP if warmup is None else int(warmup)
    members = _group_members(graph)
    needed: dict[tuple[str, str], set[int]] = {}
    for group, layers in zip(graph.groups, members):
        for name, dim, const in layers:
            needed.setdefault((table.layers[name], dim), set()).update(const + k for k in probe_widths(group.size))
    todo = [(sid, dim, sorted(w for w in widths if str(w) not in table.shapes[sid].get("steps", {}).get(dim, {})))
            for (sid, dim), widths in needed.items()]
    todo = [t for t in todo if t[2]]
    for sid, dim, widths in tqdm(todo, desc="fast widths", disable=not progress or not todo, unit="shape"):
        steps = table.shapes[sid].setdefault("steps", {}).setdefault(dim, {})
        steps.update(_measure_steps(table, sid, dim, widths, device, repeats, warmup))
    if todo and table.path is not None and table.path.parent == latency_cache_dir():
        try:  # the cached table keeps the widths (a table loaded from elsewhere is left as it is)
            table.save(table.path)
        except OSError as exc:
            warnings.warn(f"could not update the cached latency table {table.path}: {exc}", stacklevel=2)
    out: list[int | tuple[int, ...]] = []
    for group, layers in zip(graph.groups, members):
        if not layers:
            out.append(1)
            continue
        times = {k: sum(table.shapes[table.layers[name]]["steps"][dim][str(const + k)] for name, dim, const in layers)
                 for k in probe_widths(group.size)}
        out.append(fast_widths(times, tolerance, max_gap=max(1, math.ceil(AUTO_MAX_GAP * group.size))))
    return AutoWidths(out)


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def machine_differences(recorded: Mapping[str, Any], model: nn.Module) -> list[str]:
    """The :data:`MACHINE_FIELDS` in which ``recorded`` (a table's key, a mask's ``metadata["latency"]``) differs
    from where ``model`` runs now, each as ``"<field> <there> there, <here> here"``."""
    here = machine_key(_model_device(model))
    return [f"{k} {recorded.get(k)!r} there, {here[k]!r} here" for k in MACHINE_FIELDS if recorded.get(k) != here[k]]


def resolve_round_to(round_to: int | str | tuple, *, model: nn.Module, graph, example_input: torch.Tensor,
                     latency_table: LatencyTable | None = None, progress: bool = True) -> int | tuple:
    """``round_to`` as the thresholding takes it: ``"auto"`` becomes :func:`auto_round_to` against
    ``latency_table`` (or a table measured, or read from the cache, for ``model`` here); anything else is
    checked (:func:`~chipnet_zoo.threshold.check_round_to`) and returned."""
    round_to = check_round_to(round_to)
    if round_to != AUTO:
        return round_to
    table = resolve_table(model, example_input, graph=graph, latency_table=latency_table, progress=progress)
    return auto_round_to(table, model, graph, progress=progress)


def cost_setup(model: nn.Module, example_input: torch.Tensor, budget_kind: str, round_to: int | str | tuple, *,
               latency_table: LatencyTable | None = None, classifier_name: str | None = None):
    """What a mask of ``model`` at a ``budget_kind`` budget is computed against: ``(graph, cost, round_to)``.

    Shared by :class:`~chipnet_zoo.pruner.ChipNetPruner` and :func:`~chipnet_zoo.baselines.baseline_mask`.
    Checks that a latency table can be measured before the (slow) graph is built, detaches any gates, traces
    the channel graph, measures (or reads from the cache) the latency table of a ``latency`` budget, and
    resolves ``round_to="auto"`` to per-group fast widths.

    Raises:
        LatencyTableError: a table is needed (``latency`` budget or ``round_to="auto"``), none is given and
            none can be measured (e.g. the ``meta`` device).
    """
    from .cost import CostModel
    from .gates import detach_gates
    from .groups import build_channel_graph

    round_to = check_round_to(round_to)
    wants_latency = budget_kind == "latency" or latency_table is not None
    if (wants_latency or round_to == AUTO) and latency_table is None:
        check_measurable(model, example_input)
    detach_gates(model)
    graph = build_channel_graph(model, example_input.detach()[:1], classifier_name)
    table = resolve_table(model, example_input, graph=graph, latency_table=latency_table) if wants_latency else None
    round_to = resolve_round_to(round_to, model=model, graph=graph, example_input=example_input, latency_table=table)
    return graph, CostModel(graph, table), round_to


# --- masks -------------------------------------------------------------------------------------------
def latency_metadata(cost) -> dict[str, Any]:
    """``{"latency": table.describe()}`` for a cost model with a latency table, else ``{}`` (mask metadata)."""
    return {} if cost.latency is None else {"latency": cost.latency.table.describe()}


def check_machine(metadata: Mapping[str, Any], model: nn.Module) -> None:
    """Warn (:class:`LatencyKeyWarning`) when a latency mask is used on a machine other than the one its
    table was measured on (device, threads or torch version differ)."""
    recorded = metadata.get("latency")
    if not isinstance(recorded, Mapping):
        return
    if _model_device(model).type == "meta":
        return
    diffs = machine_differences(recorded, model)
    if diffs:
        warnings.warn(f"this mask's latency budget was measured on another machine ({'; '.join(diffs)}): its "
                      f"predicted speed-up may not hold here; re-threshold it with a table measured here "
                      f"(mask.rethreshold(budget, latency_table=build_latency_table(model, x)))",
                      LatencyKeyWarning, stacklevel=3)
