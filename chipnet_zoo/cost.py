"""The cost model: channels, activation volume, parameters and FLOPs (MACs) as fractions of the
dense model, computed from per-channel keep values; with a latency table (:mod:`chipnet_zoo.latency`) also
the predicted latency.

``keep`` is a vector over the model's global channel indices (see :mod:`chipnet_zoo.groups`):
soft keep values in (0, 1) during the pruning phase (differentiable), or a 0/1 mask. With a 0/1
mask the counts are exactly those of the physically slimmed model (``params`` = Σ numel of its
parameters, ``flops`` = its conv + linear multiply-accumulates).
"""

from __future__ import annotations

import torch
from torch import nn

from .budget import COUNT_KINDS
from .errors import LatencyTableError
from .groups import CONV_TYPES, ChannelGraph, forward_with_hooks


class CostModel:
    """Vectorised resource counts of a :class:`~chipnet_zoo.groups.ChannelGraph`.

    With ``latency_table`` (a :class:`~chipnet_zoo.latency.LatencyTable` measured for this model and input
    size) the counts and ratios also hold ``latency``: the table's predicted milliseconds (exact against the
    table for a 0/1 mask, differentiable for soft keep values, monotone in every channel).
    """

    def __init__(self, graph: ChannelGraph, latency_table=None):
        self.graph = graph
        self.latency = None if latency_table is None else latency_table.predictor(graph)
        layers = graph.layers
        self.num_layers = len(layers)

        def cat(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)

        # (layer position, global channel) pairs for outputs and inputs
        self._out_seg = cat([torch.full((len(x.out_global),), i, dtype=torch.long) for i, x in enumerate(layers)])
        self._out_idx = cat([x.out_global for x in layers])
        self._in_seg = cat([torch.full((len(x.in_global),), i, dtype=torch.long) for i, x in enumerate(layers)])
        self._in_idx = cat([x.in_global for x in layers])
        f64 = torch.float64
        # the channels no group touches stay constant
        self._out_const = torch.tensor([x.out_channels - len(x.out_global) for x in layers], dtype=f64)
        self._in_const = torch.tensor([x.in_channels - len(x.in_global) for x in layers], dtype=f64)
        kind = [x.kind for x in layers]
        is_mac = torch.tensor([k in ("conv", "linear") for k in kind])
        self._is_bn = torch.tensor([k == "bn" for k in kind])
        self._depthwise = torch.tensor([x.depthwise for x in layers])
        # weights per (out, in) pair: kernel size for convs, 1 for linear; 0 for BN
        self._kernel = torch.tensor([x.kernel if k != "bn" else 0 for x, k in zip(layers, kind)], dtype=f64)
        # depthwise convs: one input per output, fixed
        self._in_per_group = torch.tensor(
            [x.in_channels // x.conv_groups if k == "conv" else 0 for x, k in zip(layers, kind)], dtype=f64)
        # grouped convs: each output reads n_in / groups inputs (groups stay fixed; units keep n_in divisible)
        self._conv_groups = torch.tensor([float(x.conv_groups) if x.grouped else 1.0 for x in layers], dtype=f64)
        self._bias = torch.tensor([float(x.has_bias) for x in layers], dtype=f64)
        self._bn_affine = torch.tensor([2.0 * (k == "bn" and x.affine) for x, k in zip(layers, kind)], dtype=f64)
        self._area = torch.tensor([x.area for x in layers], dtype=f64)
        # layers whose outputs count for the channel/volume ratios: every conv/linear but the classifier
        self._counted = is_mac & ~torch.tensor([x.is_classifier for x in layers])
        self._is_mac = is_mac
        self._dense_volume = max(1.0, float(sum(x.out_channels * x.area for x, counted in
                                                zip(layers, self._counted.tolist()) if counted)))
        self.other_params = float(graph.other_params)
        self._cache: dict[tuple[torch.device, torch.dtype], dict[str, torch.Tensor]] = {}
        ones = torch.ones(graph.num_channels, dtype=f64)
        self.dense = self.counts(ones)

    def _consts(self, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """The index/constant tensors on ``ref``'s device, floats in ``ref``'s dtype (cached)."""
        key = (ref.device, ref.dtype)
        if key not in self._cache:
            self._cache[key] = {
                name: value.to(device=ref.device, dtype=ref.dtype if value.is_floating_point() else value.dtype)
                for name, value in vars(self).items() if isinstance(value, torch.Tensor)
            }
        return self._cache[key]

    def layer_counts(self, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kept output and input channels of every layer (soft or hard)."""
        c = self._consts(keep)
        n_out = c["_out_const"].index_add(0, c["_out_seg"], keep[c["_out_idx"]])
        n_in = c["_in_const"].index_add(0, c["_in_seg"], keep[c["_in_idx"]])
        return n_out, n_in

    def counts(self, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Absolute channels, volume, params and MACs for the keep vector."""
        c = self._consts(keep)
        n_out, n_in = self.layer_counts(keep)
        # depthwise convs keep one input per output; other convs/linears use the kept inputs (per conv group)
        in_eff = torch.where(c["_depthwise"], c["_in_per_group"], n_in / c["_conv_groups"])
        weights = n_out * in_eff * c["_kernel"]
        params = (weights + c["_bias"] * n_out + c["_bn_affine"] * n_out).sum() + self.other_params
        macs = (weights * c["_area"])[c["_is_mac"]].sum()
        counted = n_out[c["_counted"]]
        out = {
            "channels": counted.sum(),
            "volume": (counted * c["_area"][c["_counted"]]).sum(),
            "params": params,
            "flops": macs,
        }
        if self.latency is not None:  # the remainder's elementwise part scales with the kept volume
            out["latency"] = self.latency.total_ms(n_out, n_in, out["volume"] / self._dense_volume)
        return out

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds this cost model prices: the counts, and ``latency`` with a table."""
        return COUNT_KINDS + (("latency",) if self.latency is not None else ())

    def _check_kind(self, kind: str) -> None:
        if kind == "latency" and self.latency is None:
            raise LatencyTableError("a latency budget needs a latency table: pass latency_table= "
                                    "(chipnet_zoo.latency.build_latency_table(model, example_input))")

    def marginal(self, keep: torch.Tensor, kind: str) -> torch.Tensor:
        """Exact increase of ``kind``'s count when each single channel is added to ``keep``.

        Counts are bilinear in the keep vector, so these are exact one at a time (adding several
        channels together can cost slightly more: their in/out products interact).
        """
        self._check_kind(kind)
        c = self._consts(keep)
        n_out, n_in = self.layer_counts(keep)
        in_eff = torch.where(c["_depthwise"], c["_in_per_group"], n_in / c["_conv_groups"])
        if kind == "latency":  # one more channel of a layer: the table's step at its current widths
            per_out, per_in = self.latency.marginal(n_out, n_in)
            per_out = per_out + self.latency.per_volume_ms * c["_counted"].to(keep.dtype) * c["_area"] / self._dense_volume
        elif kind == "channels":
            per_out, per_in = c["_counted"].to(keep.dtype), None
        elif kind == "volume":
            per_out, per_in = c["_counted"].to(keep.dtype) * c["_area"], None
        elif kind == "params":
            per_out = c["_kernel"] * in_eff + c["_bias"] + c["_bn_affine"]
            per_in = c["_kernel"] * n_out / c["_conv_groups"]
        else:  # flops
            mac = c["_is_mac"].to(keep.dtype) * c["_area"] * c["_kernel"]
            per_out, per_in = mac * in_eff, mac * n_out / c["_conv_groups"]
        delta = torch.zeros_like(keep).index_add(0, c["_out_idx"], per_out[c["_out_seg"]])
        if per_in is not None:
            delta = delta.index_add(0, c["_in_idx"], per_in[c["_in_seg"]])
        return delta

    def ratios(self, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ratios (kept / dense) for the keep vector: the four counts, and ``latency`` with a table."""
        counts = self.counts(keep)
        return {k: counts[k] / self.dense[k].to(counts[k]) for k in self.kinds}

    def ratio(self, kind: str, keep: torch.Tensor) -> torch.Tensor:
        self._check_kind(kind)
        return self.ratios(keep)[kind]

    def hard_ratios(self, mask: torch.Tensor) -> dict[str, float]:
        """Exact ratios of a boolean mask (float64)."""
        return {k: float(v) for k, v in self.ratios(mask.to(torch.float64)).items()}

    def hard_counts(self, mask: torch.Tensor) -> dict[str, int]:
        """Exact absolute counts of a boolean mask (what the slimmed model measures)."""
        counts = self.counts(mask.to(torch.float64))
        return {k: int(round(float(counts[k]))) for k in COUNT_KINDS}


def measure_params_macs(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """Parameters (Σ numel) and conv + linear multiply-accumulates per sample, measured by hooks.

    This is independent of :class:`CostModel` and is how tests and ``eval`` check it.
    """
    macs = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal macs
        per_sample = output.numel() // output.shape[0]
        if isinstance(module, CONV_TYPES):
            k = 1
            for s in module.kernel_size:
                k *= s
            macs += per_sample * (module.in_channels // module.groups) * k
        else:
            macs += per_sample * module.in_features

    forward_with_hooks(model, example_input[:1],
                       [m for m in model.modules() if isinstance(m, CONV_TYPES + (nn.Linear,))], hook)
    return sum(p.numel() for p in model.parameters()), macs
