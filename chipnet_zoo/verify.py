"""The exactness check: the masked model computes what the slimmed model computes, and the cost model
counts what the slimmed model holds.

:func:`check_slim` compares a model gated with a 0/1 mask (:class:`~chipnet_zoo.gates.FixedGates`)
with its physically slimmed copy on one input: outputs within 1e-4 (relative to the output's scale
when that exceeds 1; where float32 misses that, float64 copies decide, since deep nets with large
activations differ by rounding alone), parameters and multiply-accumulates equal to the cost model's. Anything else raises
:class:`~chipnet_zoo.errors.InexactModelError` naming the first layer whose kept outputs differ (or
where the slimmed model fails, or whose parameters the cost model does not count).
:func:`chipnet_zoo.slim.verify_model` runs it once on a probe mask (:func:`probe_keep`) that removes about
half of every group: what :class:`~chipnet_zoo.ChipNetPruner` does at construction, so a model that cannot
be pruned exactly is refused before any training.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .cost import CostModel, measure_params_macs
from .errors import InexactModelError
from .groups import ChannelGraph

#: Largest accepted |masked − slimmed| output difference, relative to max(1, |output|).
TOLERANCE = 1e-4


def probe_keep(graph: ChannelGraph, seed: int = 0) -> torch.Tensor:
    """A keep-mask over whole units that keeps a random half (at least one unit) of every group."""
    gen = torch.Generator().manual_seed(seed)
    keep = torch.zeros(graph.num_channels, dtype=torch.bool)
    for group in graph.groups:
        units = group.units()
        chosen = torch.randperm(units.shape[0], generator=gen)[: (units.shape[0] + 1) // 2]
        keep[units[chosen].flatten()] = True
    return keep


def _outputs(model: nn.Module, x: torch.Tensor, names: set[str]) -> tuple[torch.Tensor, dict, list[str]]:
    """The model's output, the outputs of the named layers and the order in which they ran."""
    recorded: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def hook(name: str):
        def fn(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor) and name not in recorded:
                recorded[name] = output.detach()
                order.append(name)
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n in names]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, recorded, order


def _failing_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, Exception] | None:
    """Run ``model``; on an exception, the innermost module that was running and the exception."""
    stack: list[str] = []

    def enter(name: str):
        def fn(_module, _args) -> None:
            stack.append(name)
        return fn

    def leave(_module, _args, _output) -> None:
        if stack:
            stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad():
            model(x)
    except Exception as exc:  # noqa: BLE001 - any failure of the slimmed model is reported
        return (stack[-1] if stack and stack[-1] else "<model>"), exc
    finally:
        for h in handles:
            h.remove()
    return None


def _close(expected: torch.Tensor, actual: torch.Tensor) -> tuple[bool, float]:
    if expected.shape != actual.shape:
        return False, math.nan
    diff = float((expected.float() - actual.float()).abs().max()) if expected.numel() else 0.0
    return diff <= TOLERANCE * max(1.0, float(expected.abs().max()) if expected.numel() else 0.0), diff


def _close_in_float64(masked: nn.Module, slim: nn.Module, x: torch.Tensor) -> tuple[bool, float]:
    """Compare float64 copies: deep nets with large activations differ by float32 rounding alone (e.g.
    0.12 on outputs of 590), while a real difference stays. ``(False, nan)`` if a copy cannot run in float64."""
    try:
        m64, s64 = copy.deepcopy(masked).double(), copy.deepcopy(slim).double()
        with torch.no_grad():
            return _close(m64(x.double()), s64(x.double()))
    except Exception:  # noqa: BLE001 - a model that does not run in float64 keeps the float32 verdict
        return False, math.nan


def _first_difference(masked: nn.Module, slim: nn.Module, graph: ChannelGraph, keep: torch.Tensor,
                      x: torch.Tensor) -> tuple[str, str]:
    """The first layer (in execution order) whose kept output channels differ, and how."""
    layers = {layer.name: layer for layer in graph.layers}
    _, m_out, order = _outputs(masked, x, set(layers))
    _, s_out, _ = _outputs(slim, x, set(layers))
    for name in order:
        if name not in s_out:
            continue
        layer = layers[name]
        pruned = layer.out_local[~keep[layer.out_global]]
        kept = torch.ones(layer.out_channels, dtype=torch.bool)
        kept[pruned] = False
        dim = -1 if layer.kind == "linear" else 1
        expected = m_out[name].index_select(dim, torch.nonzero(kept).flatten().to(m_out[name].device))
        ok, diff = _close(expected, s_out[name])
        if expected.shape != s_out[name].shape:
            return name, (f"the slimmed layer has output shape {tuple(s_out[name].shape)} where the mask keeps "
                          f"{tuple(expected.shape)}: Torch-Pruning removes channels together that the channel "
                          "groups do not tie")
        if not ok:
            return name, (f"its kept outputs differ by up to {diff:.3g}: an operation before it does not treat a "
                          "zeroed channel as a removed one")
    return "<model output>", "only the model's output differs"


def _uncounted_layer(model: nn.Module, slim: nn.Module, graph: ChannelGraph) -> str:
    """A module outside the graph's layers whose own parameters changed size in the slimmed model."""
    known = {layer.name for layer in graph.layers}
    slim_modules = dict(slim.named_modules())
    for name, module in model.named_modules():
        if name in known or name not in slim_modules:
            continue
        before = sum(p.numel() for p in module.parameters(recurse=False))
        after = sum(p.numel() for p in slim_modules[name].parameters(recurse=False))
        if before != after:
            return name
    return "<model>"


def check_slim(model: nn.Module, graph: ChannelGraph, keep: torch.Tensor, slim: nn.Module,
               example_input: torch.Tensor, cost: CostModel | None = None, *, in_place: bool = False) -> float:
    """Raise :class:`InexactModelError` unless ``model`` gated with ``keep`` equals ``slim`` (outputs
    and counts) on ``example_input``; return the largest output difference.

    ``model`` is the plain (ungated) model ``graph`` was built from; it is not modified unless
    ``in_place`` (then it is gated with ``keep`` and left so: for a throwaway copy).
    """
    from .gates import FixedGates, attach_gates, detach_gates

    keep = keep.to("cpu", torch.bool)
    x = example_input[:1]
    masked = model if in_place else detach_gates(copy.deepcopy(model))
    device = next(masked.parameters()).device
    attach_gates(masked, FixedGates(graph, keep).to(device), graph)
    masked.eval()
    slim_training = slim.training
    slim.eval()
    try:
        with torch.no_grad():
            expected = masked(x)
            try:
                actual = slim(x)
            except Exception:  # noqa: BLE001 - located and reported below
                actual = None
        if actual is None:
            layer, exc = _failing_layer(slim, x) or ("<model>", RuntimeError("fails only outside hooks"))
            raise InexactModelError(layer, f"the slimmed model fails here ({type(exc).__name__}: {exc}); "
                                    "an operation of the model does not follow the removed channels")
        ok, diff = (_close(expected, actual) if isinstance(expected, torch.Tensor)
                    and isinstance(actual, torch.Tensor) else (False, math.nan))
        if not ok and expected.shape == actual.shape:  # float32 rounding, or a real difference?
            ok, diff = _close_in_float64(masked, slim, x)
        if not ok:
            layer, how = _first_difference(masked, slim, graph, keep, x)
            raise InexactModelError(
                layer, f"the masked and the slimmed model differ from this layer on (output: max |difference| "
                f"{diff:.3g}); {how}", diff)
        cost = cost or CostModel(graph)
        counts = cost.hard_counts(keep)
        params, macs = measure_params_macs(slim, x)
        if (counts["params"], counts["flops"]) != (params, macs):
            raise InexactModelError(
                _uncounted_layer(model, slim, graph),
                f"the cost model counts {counts['params']} parameters and {counts['flops']} MACs, the slimmed "
                f"model has {params} and {macs}: a layer's parameters on pruned channels are not counted")
        return diff
    finally:
        slim.train(slim_training)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Random running statistics and affine parameters for every batch-norm of ``model`` (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
