"""ChipNet gates: the gate math, the schedules, and how gates act on a model.

Gate math (the authors' code, docs/architecture.md "The gate math"): a latent ψ per channel, ψ ~ U(0, 0.01);
z̃ = σ(β·ψ) (logistic); z = 1 − exp(−γ·z̃) + z̃·exp(−γ) (continuous Heaviside);
crispness = mean over all gates of (z − z̃)²; soft keep count σ(s·(z − 0.5)).
Two additions of this package (both optional, on by default in ``ChipNetPruner``): z divided by the
largest z of its channel group, and a straight-through pull of the forward value onto a hard mask
(``hard_target``/``hard_mix``) at the end of the pruning phase; docs/benchmarks.md has why.

Where gates act (docs/architecture.md, "Where the gates act"): a pruned channel must be zero wherever it *enters* a conv or linear
layer. So each consumer layer's weight is scaled by the gate of every input channel it reads —
``conv(x, W · g_in) == conv(x · g_in, W)`` — which costs a multiply on the (small) weight instead of
on the activation. With 0/1 gates the masked model computes exactly what the slimmed model does,
for every architecture (pre-activation and concatenating ones included).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .groups import CONV_TYPES, ChannelGraph

#: Name of the gate submodule added to a gated model.
GATES_ATTR = "chipnet_gates"


# --- gate math -----------------------------------------------------------------------------------
def logistic(psi: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """z̃ = σ(β·ψ)."""
    return torch.sigmoid(beta * psi)


def heaviside(z_tilde: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """Continuous Heaviside z = 1 − exp(−γ·z̃) + z̃·exp(−γ); 0 ↦ 0, 1 ↦ 1, increasing."""
    gamma = torch.as_tensor(gamma, dtype=z_tilde.dtype, device=z_tilde.device)
    return 1.0 - torch.exp(-gamma * z_tilde) + z_tilde * torch.exp(-gamma)


def crispness_loss(z: torch.Tensor, z_tilde: torch.Tensor) -> torch.Tensor:
    """mean((z − z̃)²) over all gates: zero only when every gate is exactly 0 or 1."""
    return ((z - z_tilde) ** 2).mean()


def soft_keep(z: torch.Tensor, steepness: float | torch.Tensor) -> torch.Tensor:
    """Differentiable 'is this channel kept' value σ(s·(z − 0.5))."""
    return torch.sigmoid(steepness * (z - 0.5))


def straight_through(z: torch.Tensor, hard: torch.Tensor, mix: float) -> torch.Tensor:
    """Forward value ``(1 − mix)·z + mix·hard``; gradient identity w.r.t. ``z`` (straight-through)."""
    return z + mix * (hard - z).detach()


@dataclass(frozen=True)
class GateSchedule:
    """β, γ and the soft-count steepness s as functions of training progress.

    The authors' values are per epoch of a 20-epoch run (β: 1 → +0.02/epoch, cap 6; γ: 2 → ×√2/epoch,
    cap 256; s: 10 → +5/epoch, cap 60). Here they are functions of *reference epochs*
    ``e = reference_epochs × (fraction of the run done)``, so a run of any length (or dataset size) passes
    through the same schedule; with ``epochs == reference_epochs`` they equal the authors' per-epoch values.
    """

    beta0: float = 1.0
    beta_step: float = 0.02
    beta_max: float = 6.0
    gamma0: float = 2.0
    gamma_factor: float = math.sqrt(2.0)
    gamma_max: float = 256.0
    steepness0: float = 10.0
    steepness_step: float = 5.0
    steepness_max: float = 60.0
    reference_epochs: float = 20.0

    def beta(self, e: float) -> float:
        return min(self.beta_max, self.beta0 + self.beta_step * e)

    def gamma(self, e: float) -> float:
        return min(self.gamma_max, self.gamma0 * self.gamma_factor ** e)

    def steepness(self, e: float) -> float:
        return min(self.steepness_max, self.steepness0 + self.steepness_step * e)

    def reference_epoch(self, done: float, total: float) -> float:
        """Reference epochs elapsed after ``done`` of ``total`` units (epochs or steps) of a run."""
        return self.reference_epochs * done / max(total, 1e-12)


# --- gate modules --------------------------------------------------------------------------------
class _GateBase(nn.Module):
    """Holds, per consumer layer, which global channel each input channel is (``-1`` slot = always 1)."""

    def __init__(self, graph: ChannelGraph):
        super().__init__()
        self.num_channels = graph.num_channels
        index, self.slices = [], {}
        start = 0
        for layer in graph.consumers():
            full = torch.full((layer.in_channels,), graph.num_channels, dtype=torch.long)  # the constant-1 slot
            full[layer.in_local] = layer.in_global
            index.append(full)
            self.slices[layer.name] = (start, start + layer.in_channels)
            start += layer.in_channels
        self.register_buffer("consumer_index", torch.cat(index) if index else torch.empty(0, dtype=torch.long),
                             persistent=False)
        self._gathered: torch.Tensor | None = None

    def values(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getstate__(self) -> dict:
        # per-forward tensors carry autograd history and cannot be deep-copied; they are recomputed anyway
        state = dict(self.__dict__)
        for key in ("_gathered", "last_z", "last_z_raw", "last_z_tilde"):
            if key in state:
                state[key] = None
        return state

    def refresh(self) -> None:
        """Compute this forward pass's gate per consumer input channel (one gather for all layers)."""
        z = self.values()
        ext = torch.cat([z, z.new_ones(1)])
        self._gathered = ext[self.consumer_index]

    def input_gate(self, name: str) -> torch.Tensor:
        if self._gathered is None:
            self.refresh()
        start, end = self.slices[name]
        return self._gathered[start:end]


class ChipNetGates(_GateBase):
    """Learnable gates: ψ per channel, β/γ/s as buffers (so they are saved and synced)."""

    def __init__(self, graph: ChannelGraph, init_scale: float = 0.01, schedule: GateSchedule | None = None,
                 group_normalize: bool = False):
        super().__init__(graph)
        schedule = schedule or GateSchedule()
        self.group_normalize = group_normalize
        group_id = torch.zeros(graph.num_channels, dtype=torch.long)
        for i, group in enumerate(graph.groups):
            group_id[group.indices] = i
        self.register_buffer("group_id", group_id, persistent=False)
        self.num_groups = len(graph.groups)
        self.psi = nn.Parameter(torch.rand(graph.num_channels) * init_scale)
        self.register_buffer("beta", torch.tensor(schedule.beta0))
        self.register_buffer("gamma", torch.tensor(schedule.gamma0))
        self.register_buffer("steepness", torch.tensor(schedule.steepness0))
        self.fixed: torch.Tensor | None = None  # a 0/1 vector overrides the soft gates (hard validation)
        # hardening (straight-through): the forward value moves from z to a 0/1 target by ``hard_mix``,
        # while gradients still flow to ψ as through z
        self.hard_target: torch.Tensor | None = None
        self.hard_mix: float = 0.0
        self.last_z: torch.Tensor | None = None
        self.last_z_raw: torch.Tensor | None = None
        self.last_z_tilde: torch.Tensor | None = None

    def _normalized(self, z: torch.Tensor) -> torch.Tensor:
        if not self.group_normalize:
            return z
        top = z.new_zeros(self.num_groups).scatter_reduce(0, self.group_id, z, "amax", include_self=False)
        return z / top[self.group_id].clamp_min(1e-12)

    def z_tilde(self) -> torch.Tensor:
        return logistic(self.psi, self.beta)

    def z_raw(self) -> torch.Tensor:
        """The continuous Heaviside of z̃ (what crispness compares with z̃)."""
        return heaviside(self.z_tilde(), self.gamma)

    def z(self) -> torch.Tensor:
        """The gate value used by the model and the cost (group-normalised when enabled)."""
        return self._normalized(self.z_raw())

    def values(self) -> torch.Tensor:
        if self.fixed is not None:
            return self.fixed.to(self.psi)
        self.last_z_tilde = self.z_tilde()
        self.last_z_raw = heaviside(self.last_z_tilde, self.gamma)
        self.last_z = self._normalized(self.last_z_raw)
        if self.hard_target is not None and self.hard_mix > 0:
            return straight_through(self.last_z, self.hard_target.to(self.last_z), self.hard_mix)
        return self.last_z


class FixedGates(_GateBase):
    """0/1 gates of a hard mask (``Mask.apply``)."""

    def __init__(self, graph: ChannelGraph, keep: torch.Tensor):
        super().__init__(graph)
        self.register_buffer("keep", keep.to(torch.float32).clone())

    def values(self) -> torch.Tensor:
        return self.keep


# --- attaching gates to a model -------------------------------------------------------------------
_PLAIN_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward, nn.Linear.forward)


class _GatedForward:
    """Replaces a consumer's ``forward``: the weight is scaled by the gate of each input channel.

    Grouped convs (whose weight holds one slice of inputs per conv group) and layers with their own
    ``forward`` (e.g. timm's same-padding conv) get the gate on the input activation instead.
    """

    def __init__(self, module: nn.Module, gates: _GateBase, name: str):
        self.module, self.gates, self.name = module, gates, name
        self.gate_input = getattr(module, "groups", 1) > 1 or type(module).forward not in _PLAIN_FORWARDS

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m, g = self.module, self.gates.input_gate(self.name)
        if self.gate_input:
            shape = (1, -1, *([1] * (x.dim() - 2))) if isinstance(m, CONV_TYPES) else (-1,)
            return type(m).forward(m, x * g.view(shape).to(x.dtype))
        w = m.weight * g.view(1, -1, *([1] * (m.weight.dim() - 2))).to(m.weight.dtype)
        if isinstance(m, CONV_TYPES):
            return m._conv_forward(x, w, m.bias)
        return F.linear(x, w, m.bias)


class _RefreshGates:
    """Root forward pre-hook: recompute the gates once per forward pass."""

    def __init__(self, gates: _GateBase):
        self.gates = gates

    def __call__(self, module: nn.Module, args):
        self.gates.refresh()


def attach_gates(model: nn.Module, gates: _GateBase, graph: ChannelGraph) -> nn.Module:
    """Gate ``model`` in place (removing gates it already has) and return it."""
    detach_gates(model)
    model.add_module(GATES_ATTR, gates)
    modules = dict(model.named_modules())
    for layer in graph.consumers():
        module = modules[layer.name]
        module.forward = _GatedForward(module, gates, layer.name)
    model.register_forward_pre_hook(_RefreshGates(gates))
    return model


def detach_gates(model: nn.Module) -> nn.Module:
    """Remove every gate from ``model`` in place; it becomes the plain model again."""
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), _GatedForward):
            del module.forward
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, _RefreshGates):
                del module._forward_pre_hooks[key]
    if isinstance(getattr(model, GATES_ATTR, None), _GateBase):
        delattr(model, GATES_ATTR)
    return model


def plain_model(model: nn.Module) -> nn.Module:
    """``model`` itself when it carries no gates, else a deep copy with the gates removed (``model`` is never
    modified)."""
    return detach_gates(copy.deepcopy(model)) if has_gates(model) else model


def has_gates(model: nn.Module) -> bool:
    """Whether any chipnet-zoo gate is attached anywhere in ``model``."""
    return any(
        isinstance(m, _GateBase) or isinstance(m.__dict__.get("forward"), _GatedForward)
        or any(isinstance(h, _RefreshGates) for h in m._forward_pre_hooks.values())
        for m in model.modules()
    )
