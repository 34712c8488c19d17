"""Channel groups: which channels of which layers must be kept or removed together.

The coupling (residual streams, depthwise convs, concatenations) comes from Torch-Pruning's
``DependencyGraph``; this module turns its groups into a flat, index-based description that the
gates, the cost model and the slimmer share:

* every prunable channel of the model gets one *global index* ``0 <= j < num_channels``
  (group ``g`` owns the contiguous range ``offsets[g] : offsets[g] + size``);
* every conv / linear / batch-norm layer records which of its output channels (and, for conv and
  linear, input channels) map to which global index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UnsupportedModelError

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Models whose channel ops Torch-Pruning cannot follow (channel split + shuffle).
REFUSED_ARCH_PREFIXES = ("tv/shufflenet",)


@dataclass
class ChannelGroup:
    """Channels that are kept or removed together, named after their root layer."""

    name: str
    size: int
    offset: int

    @property
    def indices(self) -> slice:
        return slice(self.offset, self.offset + self.size)


@dataclass
class LayerInfo:
    """A conv, linear or batch-norm layer and how its channels map to global channel indices.

    ``out_local``/``out_global`` (and ``in_…``) are parallel index tensors: local channel
    ``out_local[i]`` of this layer is the prunable channel ``out_global[i]``. Unmapped channels
    are never pruned.
    """

    name: str
    kind: str  # "conv" | "linear" | "bn"
    out_channels: int
    in_channels: int
    kernel: int = 1  # prod(kernel_size) for convs
    conv_groups: int = 1
    has_bias: bool = False
    affine: bool = False
    is_classifier: bool = False
    area: int = 1  # output positions per sample (H*W for 2-d convs), from the example forward pass
    out_local: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    out_global: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    in_local: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    in_global: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    @property
    def depthwise(self) -> bool:
        return self.kind == "conv" and self.conv_groups > 1 and self.conv_groups == self.in_channels


@dataclass
class ChannelGraph:
    """Groups and per-layer channel maps of one model (see the module docstring)."""

    groups: list[ChannelGroup]
    layers: list[LayerInfo]
    classifier_name: str
    input_shape: tuple[int, ...]  # (C, H, W) of one example
    other_params: int  # parameters of modules that no group touches (counted as constant)

    @property
    def num_channels(self) -> int:
        return sum(g.size for g in self.groups)

    @property
    def structure(self) -> list[tuple[str, int]]:
        """``[(group name, channel count), ...]``: what a mask must match to fit this model."""
        return [(g.name, g.size) for g in self.groups]

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def consumers(self) -> list[LayerInfo]:
        """Conv/linear layers whose input channels carry prunable channels (where gates act)."""
        return [layer for layer in self.layers if layer.kind in ("conv", "linear") and len(layer.in_global)]

    def summary(self) -> str:
        lines = [f"ChannelGraph: {len(self.groups)} groups, {self.num_channels} channels, "
                 f"{len(self.layers)} layers, classifier {self.classifier_name!r}"]
        lines += [f"  {g.name}: {g.size}" for g in self.groups]
        return "\n".join(lines)


def find_classifier_name(model: nn.Module) -> str:
    """The model's ``classifier_name`` attribute, else the last ``nn.Linear`` (or last conv)."""
    name = getattr(model, "classifier_name", None)
    if name:
        return name
    last_linear = last_conv = None
    for qualname, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear = qualname
        elif isinstance(module, CONV_TYPES):
            last_conv = qualname
    found = last_linear or last_conv
    if found is None:
        raise UnsupportedModelError("the model has no conv or linear layer to prune")
    return found


def _record_areas(model: nn.Module, example_input: torch.Tensor) -> dict[nn.Module, int]:
    """Output positions per sample of every conv/linear, from one forward pass."""
    areas: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs, output) -> None:
        shape = output.shape
        if isinstance(module, CONV_TYPES):
            areas[module] = math.prod(shape[2:])
        else:  # linear: every position but the feature dim, per sample
            areas[module] = math.prod(shape[1:-1]) if len(shape) > 2 else 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, CONV_TYPES + (nn.Linear,))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return areas


def _check_supported(model: nn.Module) -> None:
    arch = getattr(model, "arch_name", "") or ""
    if arch.startswith(REFUSED_ARCH_PREFIXES) or any(
        type(m).__name__ == "InvertedResidual" and hasattr(m, "branch1") for m in model.modules()
    ):
        raise UnsupportedModelError(
            f"{arch or type(model).__name__}: ShuffleNet's channel split + shuffle cannot be pruned exactly "
            "(Torch-Pruning's dependency graph does not follow it); choose another architecture")
    for name, module in model.named_modules():
        if isinstance(module, CONV_TYPES) and module.groups > 1 and not (
            module.groups == module.in_channels == module.out_channels
        ):
            raise UnsupportedModelError(
                f"layer {name!r} is a grouped convolution (groups={module.groups}, in={module.in_channels}, "
                f"out={module.out_channels}); only plain and depthwise convolutions are supported so far")


def build_channel_graph(
    model: nn.Module, example_input: torch.Tensor, classifier_name: str | None = None
) -> ChannelGraph:
    """Trace ``model`` once and describe its prunable channels.

    Args:
        model: a CNN with BatchNorm layers (any class count).
        example_input: one example batch (``1×C×H×W`` is enough); sets the spatial sizes used by
            the ``volume`` and ``flops`` budgets.
        classifier_name: qualified name of the layer whose output is never pruned (default: the
            model's ``classifier_name`` attribute, else its last linear layer).

    Raises:
        UnsupportedModelError: grouped convs, channel shuffles, or parameters the graph can't account for.
    """
    import torch_pruning as tp

    _check_supported(model)
    classifier_name = classifier_name or find_classifier_name(model)
    modules = dict(model.named_modules())
    if classifier_name not in modules:
        raise UnsupportedModelError(f"classifier layer {classifier_name!r} is not in the model")
    classifier = modules[classifier_name]
    names = {module: name for name, module in modules.items()}
    areas = _record_areas(model, example_input)

    with torch.enable_grad():
        dg = tp.DependencyGraph().build_dependency(
            model, example_inputs=example_input, verbose=False)
    groups: list[ChannelGroup] = []
    out_maps: dict[nn.Module, tuple[list[int], list[int]]] = {}
    in_maps: dict[nn.Module, tuple[list[int], list[int]]] = {}
    offset = 0
    for tp_group in dg.get_all_groups(ignored_layers=[classifier]):
        root = tp_group[0].dep.target.module
        size = dg.get_out_channels(root)
        group = ChannelGroup(names[root], size, offset)
        for item in tp_group.items:
            module = item.dep.target.module
            if not isinstance(module, CONV_TYPES + BN_TYPES + (nn.Linear,)) or module not in names:
                continue
            handler = item.dep.handler
            is_out = dg.is_out_channel_pruning_fn(handler) or isinstance(module, BN_TYPES)
            target = out_maps if is_out else in_maps
            local, glob = target.setdefault(module, ([], []))
            for idx, root_idx in zip(item.idxs, item.root_idxs):
                local.append(int(idx))
                glob.append(offset + int(root_idx))
        groups.append(group)
        offset += size

    def as_tensors(mapping: tuple[list[int], list[int]] | None) -> tuple[torch.Tensor, torch.Tensor]:
        if not mapping:
            return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
        local = torch.tensor(mapping[0], dtype=torch.long)
        glob = torch.tensor(mapping[1], dtype=torch.long)
        order = torch.argsort(local)
        local, glob = local[order], glob[order]
        keep = torch.ones_like(local, dtype=torch.bool)  # drop duplicate local indices
        keep[1:] = local[1:] != local[:-1]
        return local[keep], glob[keep]

    layers: list[LayerInfo] = []
    accounted: set[nn.Module] = set()
    for name, module in modules.items():
        if isinstance(module, CONV_TYPES):
            info = LayerInfo(name, "conv", module.out_channels, module.in_channels,
                             kernel=math.prod(module.kernel_size), conv_groups=module.groups,
                             has_bias=module.bias is not None)
        elif isinstance(module, nn.Linear):
            info = LayerInfo(name, "linear", module.out_features, module.in_features, has_bias=module.bias is not None)
        elif isinstance(module, BN_TYPES):
            info = LayerInfo(name, "bn", module.num_features, module.num_features, affine=module.affine)
        else:
            continue
        if module not in areas and info.kind != "bn":
            continue  # a layer the forward pass never uses
        info.is_classifier = module is classifier
        info.area = areas.get(module, 1)
        info.out_local, info.out_global = as_tensors(out_maps.get(module))
        if info.kind != "bn" and not info.depthwise:
            info.in_local, info.in_global = as_tensors(in_maps.get(module))
        layers.append(info)
        accounted.add(module)

    other = 0
    grouped_modules = set(out_maps) | set(in_maps)
    for name, module in modules.items():
        if module in accounted:
            continue
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own and module in grouped_modules:
            raise UnsupportedModelError(f"layer {name!r} ({type(module).__name__}) has parameters on pruned channels")
        other += own
    shape = tuple(example_input.shape[1:])
    return ChannelGraph(groups, layers, classifier_name, shape, other)
