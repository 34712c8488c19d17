"""What chipnet-zoo can prune exactly: the structural refusals, each naming the layer and the reason.

Checked while the channel graph is built (:func:`chipnet_zoo.groups.build_channel_graph`), so a model
that cannot be pruned exactly is refused before any mask is made
(:class:`~chipnet_zoo.errors.UnsupportedLayerError`):

* channel shuffles (ShuffleNet), by name;
* channel splits (``torch.split``/``chunk``/``unbind`` along channels) and partial channel slices, whose
  sizes are fixed in the model's code (the slimmed model would split at the wrong channels);
* normalisations across channels reached by pruned channels (LayerNorm, GroupNorm, RMSNorm): a zeroed
  channel changes the others, so it is not a removed one;
* parameters on pruned channels outside conv/linear/batch-norm layers (the cost model would not count them).

What no structural rule sees is caught by the exactness probe (:mod:`chipnet_zoo.verify`).
"""

from __future__ import annotations

from torch import nn

from .errors import UnsupportedLayerError, UnsupportedModelError

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Models whose channel ops Torch-Pruning cannot follow (channel split + shuffle).
REFUSED_ARCH_PREFIXES = ("tv/shufflenet",)


def check_supported(model: nn.Module) -> None:
    """Refuse, before tracing, models known not to be prunable exactly (ShuffleNet) and convs that
    Torch-Pruning cannot slim."""
    arch = getattr(model, "arch_name", "") or ""
    if arch.startswith(REFUSED_ARCH_PREFIXES) or any(
        type(m).__name__ == "InvertedResidual" and hasattr(m, "branch1") for m in model.modules()
    ):
        raise UnsupportedModelError(
            f"{arch or type(model).__name__}: ShuffleNet's channel split + shuffle cannot be pruned exactly "
            "(Torch-Pruning's dependency graph does not follow it); choose another architecture")
    for name, module in model.named_modules():
        if isinstance(module, CONV_TYPES) and 1 < module.groups == module.out_channels < module.in_channels:
            raise UnsupportedLayerError(
                name, f"a convolution with groups == out_channels ({module.groups}) < in_channels "
                f"({module.in_channels}) cannot be slimmed by Torch-Pruning")


#: Modules that normalise across channels: a zeroed channel changes the others, so it is not a removed one.
_CROSS_CHANNEL = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_CHANNEL_NORMS = ("LayerNorm", "GroupNorm", "RmsNorm", "RMSNorm", "EvoNorm2dS")


def _nearest_layer(node, names: dict[nn.Module, str]) -> tuple[str, nn.Module | None]:
    """The qualified name (and module) of ``node``'s module, else of the nearest named layer feeding it."""
    seen, frontier = set(), [node]
    while frontier:
        current = frontier.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current.module in names:
            return names[current.module], current.module
        frontier.extend(current.inputs)
    return f"<{node.name}>", None


def _channels(module: nn.Module | None) -> int | None:
    for attr in ("out_channels", "num_features", "out_features", "num_channels"):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    shape = getattr(module, "normalized_shape", None)  # LayerNorm: the channels are its last dim
    return int(shape[-1]) if shape else None


def check_channel_ops(dg, names: dict[nn.Module, str]) -> None:
    """Refuse channel splits, unbinds and partial channel slices (their sizes are fixed in the model's
    code, so the slimmed model would split at the wrong place; Torch-Pruning may also not finish)."""
    import torch_pruning as tp

    OP = tp.ops.OPTYPE  # noqa: N806
    found: list[UnsupportedLayerError] = []
    for node in dg.module2node.values():
        if node.type not in (OP.SPLIT, OP.UNBIND, OP.SLICE):
            continue
        fn = node.grad_fn
        sizes = getattr(fn, "_saved_self_sym_sizes", None)
        dim = getattr(fn, "_saved_dim", None)
        if sizes is None or dim is None or len(sizes) < 2:
            continue
        dim = dim + len(sizes) if dim < 0 else dim
        if dim != 1:
            continue
        where, layer = _nearest_layer(node, names)
        if _channels(layer) not in (None, int(sizes[1])):
            continue  # dim 1 is not that layer's channels (channels-last tensors, e.g. Swin's windows)
        if node.type == OP.SLICE:
            channels = int(sizes[1])
            start, end, step = (getattr(fn, f"_saved_{k}", None) for k in ("start", "end", "step"))
            start, end, step = int(start or 0), channels if end is None else int(end), int(step or 1)
            if start <= 0 and step == 1 and end >= channels:
                continue  # the whole channel range (e.g. GhostNet's out[:, :out_chs])
            found.append(UnsupportedLayerError(
                where, f"the output is sliced to channels [{start}:{min(end, channels)}:{step}] of {channels} "
                "(a partial residual or split with sizes fixed in the model) and cannot be pruned exactly"))
            continue
        what = "split (torch.split/chunk)" if node.type == OP.SPLIT else "unbound"
        found.append(UnsupportedLayerError(
            where, f"the output is {what} along channels into parts whose sizes are fixed in the model; "
            "the slimmed model would split at the wrong channels"))
    if found:  # the first in model order
        position = {name: i for i, name in enumerate(names.values())}
        raise min(found, key=lambda e: position.get(e.layer, len(position)))


def _check_norms(modules, names: dict[nn.Module, str]) -> None:
    """Refuse the first (in model order) of ``modules`` that normalises across channels."""
    position = {m: i for i, m in enumerate(names)}
    for module in sorted((m for m in modules if m in names), key=lambda m: position[m]):
        kind = type(module).__name__
        if isinstance(module, _CROSS_CHANNEL) or any(k in kind for k in _CHANNEL_NORMS):
            raise UnsupportedLayerError(
                names[module], f"{kind} normalises across channels: a zeroed channel is not a removed one, "
                "so the masked and the slimmed model would differ")


def check_norms_in_graph(dg, names: dict[nn.Module, str]) -> None:
    """Before the groups are built (Torch-Pruning can take minutes on transformer-style graphs): refuse a
    normalisation across channels (LayerNorm, GroupNorm, RMSNorm) that the traced forward pass uses."""
    _check_norms(dg.module2node, names)


def check_touched(touched: dict, names: dict[nn.Module, str], params: dict[int, str]) -> None:
    """Refuse pruned channels that reach a module or parameter the cost model and gates do not follow
    (normalisations across channels first: they are the usual cause; the first in model order)."""
    _check_norms(touched, names)
    for module in touched:
        if isinstance(module, nn.Parameter):
            raise UnsupportedLayerError(
                params.get(id(module), "<parameter>"),
                "a parameter indexed by pruned channels outside a conv/linear/batch-norm layer "
                "(e.g. a layer scale) is not supported")
        if isinstance(module, CONV_TYPES + BN_TYPES + (nn.Linear,)) or module not in names:
            continue
        if any(True for _ in module.parameters(recurse=False)):
            raise UnsupportedLayerError(
                names[module], f"{type(module).__name__} has parameters on pruned channels that chipnet-zoo "
                "does not count")
