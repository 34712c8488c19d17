"""Physical slimming: a new, smaller ``nn.Module`` with the pruned channels removed.

Torch-Pruning's dependency graph removes each group's pruned channels from every layer that holds
them (conv/linear weights, BN statistics, concatenation offsets), on a deep copy of the model.
:func:`slim_model` checks the result against the masked model (:mod:`chipnet_zoo.verify`);
:func:`verify_model` slims a probe mask once, what :class:`~chipnet_zoo.ChipNetPruner` does at construction.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .cost import CostModel
from .errors import InexactModelError
from .gates import detach_gates, plain_model
from .groups import ChannelGraph
from .verify import check_slim, probe_keep, randomize_batchnorm


def slim_model(model: nn.Module, graph: ChannelGraph, keep: torch.Tensor,
               example_input: torch.Tensor, *, check: bool = True) -> nn.Module:
    """Return a slimmed deep copy of ``model``; ``model`` itself is not modified.

    Args:
        model: the model ``graph`` was built from (gates, if attached, are dropped from the copy).
        graph: its channel graph.
        keep: boolean keep-mask over the graph's global channels (every group keeps >= 1 channel, and
            whole units where a group is tied by grouped convs).
        example_input: an input the model accepts (used to trace the copy).
        check: compare the slimmed model with the masked one on ``example_input`` first
            (:func:`chipnet_zoo.verify.check_slim`).

    Raises:
        InexactModelError: ``check`` found that the slimmed model differs from the masked one.
        ValueError: a group would lose all channels, or a tied unit is only partly kept.
    """
    import torch_pruning as tp

    slim = detach_gates(copy.deepcopy(model))
    modules = dict(slim.named_modules())
    was_training = slim.training
    slim.eval()
    with torch.enable_grad():
        dg = tp.DependencyGraph().build_dependency(
            slim, example_inputs=example_input.to(next(slim.parameters()).device), verbose=False)
    keep = keep.to("cpu", torch.bool)
    for group in graph.groups:
        pruned = torch.nonzero(~keep[group.indices]).flatten().tolist()
        if not pruned:
            continue
        if len(pruned) == group.size:
            raise ValueError(f"group {group.name!r} would lose all {group.size} channels")
        if group.tied is not None:
            unit_keep = keep[group.tied]
            if bool((unit_keep.any(1) & ~unit_keep.all(1)).any()):
                raise ValueError(f"group {group.name!r} is tied by grouped convolutions in units of "
                                 f"{group.granularity} channels; the mask keeps part of a unit")
        root = modules[group.name]
        fn = dg.get_pruner_of_module(root).prune_out_channels
        dg.get_pruning_group(root, fn, pruned).prune()
    _adapt_fixed_filters(slim)
    slim.train(was_training)
    if check:
        check_slim(plain_model(model), graph, keep, slim, example_input.to(
            next(slim.parameters()).device))
    return slim


def verify_model(model: nn.Module, graph: ChannelGraph, example_input: torch.Tensor,
                 cost: CostModel | None = None) -> float:
    """Slim a copy of ``model`` (random batch-norm statistics) with :func:`probe_keep` and
    :func:`check_slim` it; ``model`` is not modified.

    Raises:
        InexactModelError: the model cannot be pruned exactly (the layer and the reason are named).
    """
    keep = probe_keep(graph)
    probe = detach_gates(copy.deepcopy(model))
    randomize_batchnorm(probe)  # a fresh BN is the identity, which would hide leaks of pruned channels
    try:
        slim = slim_model(probe, graph, keep, example_input, check=False)
    except InexactModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - Torch-Pruning failing to slim is a refusal, not a crash
        raise InexactModelError("<model>", f"Torch-Pruning cannot slim the model "
                                f"({type(exc).__name__}: {exc})") from exc
    return check_slim(probe, graph, keep, slim, example_input, cost, in_place=True)


def _adapt_fixed_filters(model: nn.Module) -> None:
    """timm's ``BlurPool2d`` holds one fixed blur filter per channel (all equal) and its channel count;
    Torch-Pruning changes neither. Let it adapt to the channels that remain (exactly the same blur)."""
    for module in model.modules():
        filt = getattr(module, "filt", None)
        if (type(module).__name__ == "BlurPool2d" and isinstance(getattr(module, "channels", None), int)
                and isinstance(filt, torch.Tensor) and bool((filt == filt[:1]).all())):
            module.channels = None
            module.filt = filt[:1].clone()
