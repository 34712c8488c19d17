"""Channel groups: which channels of which layers must be kept or removed together.

The coupling (residual streams, depthwise convs, concatenations) comes from Torch-Pruning's
``DependencyGraph``; this module turns its groups into a flat, index-based description that the
gates, the cost model and the slimmer share:

* every prunable channel of the model gets one *global index* ``0 <= j < num_channels``
  (group ``g`` owns the contiguous range ``offsets[g] : offsets[g] + size``);
* every conv / linear / batch-norm layer records which of its output channels (and, for conv and
  linear, input channels) map to which global index;
* a group that feeds or leaves a grouped convolution (RegNet, ResNeXt) is cut into *units*: channels
  that sit at the same position in every convolution group are kept or removed together, so every
  convolution group keeps the same channels (what Torch-Pruning's slimming of a grouped conv needs).
  A group's *granularity* is its unit size: it keeps a multiple of it.

Whatever Torch-Pruning cannot follow exactly is refused while the graph is built, naming the layer
(:mod:`chipnet_zoo.support`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UnsupportedLayerError, UnsupportedModelError
from .support import (
    BN_TYPES,
    CONV_TYPES,
    check_channel_ops,
    check_norms_in_graph,
    check_supported,
    check_touched,
)

#: Seconds Torch-Pruning may take to build the channel groups before the model is refused (a hang guard).
GROUPS_TIME_LIMIT_S = 60.0


@dataclass
class ChannelGroup:
    """Channels that are kept or removed together, named after their root layer."""

    name: str
    size: int
    offset: int
    #: ``[n_units, granularity]`` global indices of channels kept or removed together (grouped convs);
    #: ``None``: every channel is its own unit.
    tied: torch.Tensor | None = None

    @property
    def indices(self) -> slice:
        return slice(self.offset, self.offset + self.size)

    @property
    def granularity(self) -> int:
        """Channels per unit: the group keeps a multiple of this many channels."""
        return 1 if self.tied is None else int(self.tied.shape[1])

    def units(self) -> torch.Tensor:
        """``[n_units, granularity]`` global channel indices, one row per unit."""
        if self.tied is not None:
            return self.tied
        return torch.arange(self.offset, self.offset + self.size).view(-1, 1)


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
        """One input per output channel (Torch-Pruning prunes its inputs with its outputs)."""
        return self.kind == "conv" and 1 < self.conv_groups == self.in_channels == self.out_channels

    @property
    def grouped(self) -> bool:
        """A grouped, non-depthwise conv: its channels are pruned in units across its groups."""
        return self.kind == "conv" and self.conv_groups > 1 and not self.depthwise


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
    def tied(self) -> bool:
        """Whether some group keeps channels in units of more than one (grouped convolutions)."""
        return any(g.granularity > 1 for g in self.groups)

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

    forward_with_hooks(model, example_input, [m for m in model.modules() if isinstance(m, CONV_TYPES + (nn.Linear,))],
                       hook)
    return areas


def forward_with_hooks(model: nn.Module, example_input: torch.Tensor, modules: list[nn.Module], hook) -> None:
    """One eval-mode, no-grad forward pass of ``model`` with ``hook`` as a forward hook on ``modules``; the
    hooks are removed and the train/eval mode restored afterwards, also on error."""
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def _lost_root_indices(dg, tp_group) -> bool:
    """Whether Torch-Pruning's group maps a conv's output channels and the batch-norm right after it to
    different root channels. It merges the items of one layer reached along two paths and keeps one root
    index per channel (GhostNet: a depthwise conv whose input and output join one stream), so some of the
    group's channels are in fact removed together."""
    out_roots: dict[nn.Module, dict[int, int]] = {}
    for item in tp_group.items:
        module = item.dep.target.module
        if isinstance(module, CONV_TYPES + BN_TYPES) and (
                isinstance(module, BN_TYPES) or dg.is_out_channel_pruning_fn(item.dep.handler)):
            roots = out_roots.setdefault(module, {})
            for idx, root_idx in zip(item.idxs, item.root_idxs):
                roots.setdefault(int(idx), int(root_idx))
    for module, roots in out_roots.items():
        if not isinstance(module, BN_TYPES) or module not in dg.module2node:
            continue
        for node in dg.module2node[module].inputs:
            if isinstance(node.module, CONV_TYPES) and node.module in out_roots and out_roots[node.module] != roots:
                return True
    return False


def _closure_pairs(dg, root: nn.Module, size: int, offset: int,
                   channels: tuple[int, ...] | None = None) -> list[tuple[int, int]]:
    """``(global j, global k)`` for every root channel ``k`` that Torch-Pruning removes with channel ``j``
    (of ``channels``, default all)."""
    fn = dg.get_pruner_of_module(root).prune_out_channels
    pairs = []
    for j in (range(size) if channels is None else sorted(set(channels))):
        for item in dg.get_pruning_group(root, fn, [j]).items:
            if item.dep.target.module is root and dg.is_out_channel_pruning_fn(item.dep.handler):
                pairs.extend((offset + j, offset + int(k)) for k in item.idxs if int(k) != j)
    return pairs


class _GroupsTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Refuse instead of hanging when Torch-Pruning does not finish reading the groups (it can loop for
    minutes on channel reshapes it cannot follow, e.g. ECA attention's conv over the channel axis).
    Uses SIGALRM, so only in the main thread on POSIX; elsewhere there is no limit."""
    import signal
    import threading

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum, _frame):
        raise _GroupsTimeout

    import time

    previous = signal.signal(signal.SIGALRM, expire)
    pending, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    except _GroupsTimeout:
        raise UnsupportedLayerError(
            "<model>", f"Torch-Pruning did not finish building the channel groups within {seconds:g} s "
            "(a channel operation it cannot follow, e.g. a reshape that moves channels to another axis)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if pending:  # give back the caller's own alarm
            signal.setitimer(signal.ITIMER_REAL, max(pending - (time.monotonic() - start), 1e-3))


@contextlib.contextmanager
def _index_maps_computed_once(dg):
    """Torch-Pruning recomputes every index map (concatenations, splits, flattens) at each
    ``get_pruning_group`` call; the graph does not change while the groups are read, so compute them once
    (on DenseNet-121 this is most of the set-up time)."""
    from torch_pruning.dependency import index_mapping

    update = index_mapping.update_index_mapping
    update(dg)
    index_mapping.update_index_mapping = lambda _graph: None
    try:
        yield
    finally:
        index_mapping.update_index_mapping = update


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _tie_units(groups: list[ChannelGroup], layers: list[LayerInfo], same_channel: list[tuple[int, int]]) -> None:
    """Cut groups into units of channels that are kept or removed together; sets ``group.tied``.

    Torch-Pruning slims a grouped conv by keeping the *same positions* in every convolution group, so
    the channels at one position of every conv group form a unit. ``same_channel`` pairs global channels
    that reach one channel of a layer (and so are removed together by the slimmer).
    """
    n = sum(g.size for g in groups)
    uf: _UnionFind | None = None
    if same_channel:
        uf = _UnionFind(n)
        for i, j in same_channel:
            uf.union(i, j)
    for layer in layers:
        if not layer.grouped:
            continue
        sides = [("outputs", layer.out_channels, layer.out_local, layer.out_global)]
        if layer.kind == "conv":
            sides.append(("inputs", layer.in_channels, layer.in_local, layer.in_global))
        for what, size, local, glob in sides:
            if not len(local):
                continue
            if len(local) != size:
                raise UnsupportedLayerError(
                    layer.name, f"grouped convolution (groups={layer.conv_groups}) whose {what} are only partly "
                    f"prunable ({len(local)} of {size})")
            width = size // layer.conv_groups
            by_position = glob.view(layer.conv_groups, width)  # local is sorted 0..size-1
            uf = uf or _UnionFind(n)
            for row in by_position.t().tolist():
                for j in row[1:]:
                    uf.union(row[0], j)
    if uf is None:
        return
    owner = [0] * n
    for g, group in enumerate(groups):
        owner[group.offset:group.offset + group.size] = [g] * group.size
    classes: dict[int, list[int]] = {}
    for j in range(n):
        classes.setdefault(uf.find(j), []).append(j)
    per_group: dict[int, list[list[int]]] = {}
    for members in classes.values():
        owners = {owner[j] for j in members}
        if len(owners) > 1:
            first, second = sorted(owners)[:2]
            raise UnsupportedLayerError(
                groups[first].name, f"its channels are tied (by a grouped convolution or a shared channel) to "
                f"those of group {groups[second].name!r}; they cannot be kept consistently")
        per_group.setdefault(owners.pop(), []).append(members)
    for g, members in per_group.items():
        group = groups[g]
        if len(members) == group.size:
            continue
        sizes = {len(m) for m in members}
        if len(sizes) != 1:
            raise UnsupportedLayerError(
                group.name, f"grouped convolutions or shared channels tie its channels in units of unequal sizes "
                f"{sorted(sizes)}")
        group.tied = torch.tensor(sorted(members), dtype=torch.long)


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
        UnsupportedLayerError: a layer or channel operation that cannot be pruned exactly (named, with
            the reason): channel splits or partial slices, normalisation across channels, parameters the
            cost model cannot count, grouped convs tied across groups.
        UnsupportedModelError: channel shuffles (ShuffleNet).
    """
    import torch_pruning as tp

    check_supported(model)
    classifier_name = classifier_name or find_classifier_name(model)
    modules = dict(model.named_modules())
    if classifier_name not in modules:
        raise UnsupportedModelError(f"classifier layer {classifier_name!r} is not in the model")
    classifier = modules[classifier_name]
    names = {module: name for name, module in modules.items()}
    areas = _record_areas(model, example_input)

    try:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(
                model, example_inputs=example_input, verbose=False)
    except Exception as exc:  # noqa: BLE001 - a model Torch-Pruning cannot trace is refused, not a crash
        raise UnsupportedLayerError("<model>", "Torch-Pruning's dependency graph cannot follow this model "
                                    f"({type(exc).__name__}: {exc})") from exc
    check_norms_in_graph(dg, names)
    check_channel_ops(dg, names)
    groups: list[ChannelGroup] = []
    same_channel: list[tuple[int, int]] = []  # global channels that the slimmer removes together
    touched: dict = {}  # every module/parameter a group reaches, in order
    out_maps: dict[nn.Module, tuple[list[int], list[int]]] = {}
    in_maps: dict[nn.Module, tuple[list[int], list[int]]] = {}
    offset = 0
    with _index_maps_computed_once(dg), _time_limit(GROUPS_TIME_LIMIT_S):
        for tp_group in dg.get_all_groups(ignored_layers=[classifier]):
            root = tp_group[0].dep.target.module
            size = dg.get_out_channels(root)
            group = ChannelGroup(names[root], size, offset)
            for item in tp_group.items:
                module = item.dep.target.module
                touched.setdefault(module, None)
                if not isinstance(module, CONV_TYPES + BN_TYPES + (nn.Linear,)) or module not in names:
                    continue
                handler = item.dep.handler
                is_out = dg.is_out_channel_pruning_fn(handler) or isinstance(module, BN_TYPES)
                target = out_maps if is_out else in_maps
                local, glob = target.setdefault(module, ([], []))
                for idx, root_idx in zip(item.idxs, item.root_idxs):
                    if idx is None or root_idx is None:
                        raise UnsupportedLayerError(
                            names[module], "Torch-Pruning cannot map this layer's channels to its group "
                            f"{group.name!r} (an operation before it that its index maps do not follow)")
                    local.append(int(idx))
                    glob.append(offset + int(root_idx))
            if _lost_root_indices(dg, tp_group) or _closure_pairs(dg, root, size, offset, (0, size - 1)):
                same_channel.extend(_closure_pairs(dg, root, size, offset))
            groups.append(group)
            offset += size
    check_touched(touched, names, {id(p): n for n, p in model.named_parameters()})

    def as_tensors(mapping: tuple[list[int], list[int]] | None) -> tuple[torch.Tensor, torch.Tensor]:
        if not mapping:
            return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
        local = torch.tensor(mapping[0], dtype=torch.long)
        glob = torch.tensor(mapping[1], dtype=torch.long)
        order = torch.argsort(local, stable=True)
        local, glob = local[order], glob[order]
        keep = torch.ones_like(local, dtype=torch.bool)  # drop duplicate local indices
        keep[1:] = local[1:] != local[:-1]
        # one local channel reached from two global channels (GhostNet: a depthwise "cheap" conv whose
        # input and output both join one concatenated stream): those are kept or removed together
        both = ~keep[1:] & (glob[1:] != glob[:-1])
        same_channel.extend(zip(glob[:-1][both].tolist(), glob[1:][both].tolist()))
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
    _tie_units(groups, layers, same_channel)

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


def output_classes(model, graph: ChannelGraph) -> int:
    """The model's class count: its ``num_classes`` attribute, else the classifier layer's outputs."""
    n = int(getattr(model, "num_classes", 0) or 0)
    if n:
        return n
    return next((int(layer.out_channels) for layer in graph.layers if layer.is_classifier), 0)
