"""``ChipNetPruner``: learn a budget-exact channel mask for any BatchNorm CNN (docs/architecture.md)."""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .budget import Budget
from .cost import CostModel
from .errors import UnreachableBudgetError
from .evaluation import evaluate
from .gates import ChipNetGates, GateSchedule, attach_gates, crispness_loss, detach_gates, soft_keep
from .groups import output_classes
from .latency import LatencyTable, cost_setup, latency_metadata
from .mask import Mask
from .slim import verify_model
from .threshold import (
    check_min_keep,
    describe_round_to,
    floor_fraction,
    smallest_mask,
    threshold_hparams,
    threshold_scores,
)

#: How far (in ψ units) AdamW must be able to move a gate within one run. The authors' defaults
#: give 28 on CIFAR (28k steps × lr 1e-3) but only ~2 on a 3.5k-image set, where no gate can close
#: (docs/benchmarks.md, "The pruning phase on small data"); ψ's learning rate is raised to reach this travel on small data.
DEFAULT_PSI_TRAVEL = 30.0
#: Final fraction of the pruning phase whose forward pass moves to the hard mask (straight-through).
#: On small data the soft phase alone ends with gates that sit between 0 and 1 — a conv followed by
#: BatchNorm is blind to the scale of its input, so a whole group at z ≈ 0.4 costs nothing while the
#: soft cost counts it as removed — and the thresholded mask then collapses the network
#: (docs/benchmarks.md, "The pruning phase on small data"). Training the last stretch under the mask
#: that will be returned removes that gap; ψ keeps learning through the straight-through gradient.
DEFAULT_HARDEN = 0.3
#: Default weight of the crispness loss. The authors use 10 on CIFAR (28k steps); on a few thousand
#: images the gates then end far from 0/1 (27 % crisp in the small-data benchmark) while 100 gives
#: 96 % with the same hard-mask accuracy (docs/benchmarks.md). The ``paper`` recipes keep 10.
DEFAULT_CRISPNESS_WEIGHT = 100.0
#: Default width floor (``ChipNetPruner(floor=...)``): the share of the budget first spent on a uniformly
#: thinned skeleton, every group at the same width; the gates then pick *which* channels each group keeps
#: and where the rest of the budget goes. Without it (``0``, the authors' allocation) a tight FLOPs budget
#: empties the high-resolution groups down to one channel and, fine-tuned, loses 13-17 points to a random
#: mask; with 1.0 it is 1.4-3.7 points above random at FLOPs 0.125-0.03125 (3 seeds, intervals include 0;
#: docs/benchmarks.md, "Where the channels go"). The ``paper`` recipes keep 0.
DEFAULT_FLOOR = 1.0
#: How often (in steps) the hardening target is re-thresholded from the current gates.
HARDEN_REFRESH_STEPS = 8
#: A gate counts as crisp when |z − z̃| is below this.
CRISP_TOLERANCE = 0.05


def reweight_budget_gradient(ratio: torch.Tensor, keep: torch.Tensor, power: float = 1.0,
                             marginal: torch.Tensor | None = None) -> torch.Tensor:
    """``ratio`` with the same value but a gradient w.r.t. ``keep`` of ``c_i**power`` (rescaled to the same
    total as the exact gradient), where ``c_i`` is channel i's marginal cost: ``marginal`` when given (e.g.
    evaluated once at a fixed reference point), else ``∂ratio/∂keep_i`` at the current ``keep``.
    ``power=1`` without ``marginal`` is the plain gradient; ``power=0`` pushes every channel down equally."""
    exact = torch.autograd.grad(ratio, keep, retain_graph=True)[0].detach().clamp_min(0)
    cost = exact if marginal is None else marginal.to(exact).clamp_min(0)
    weight = cost ** power
    weight = weight * (exact.sum() / weight.sum().clamp_min(1e-30))
    return ratio.detach() + (weight * (keep - keep.detach())).sum()


def uniform_marginal_cost(cost: CostModel, kind: str, target: float) -> torch.Tensor:
    """Each channel's marginal cost ``∂ratio/∂keep_i`` at the uniformly thinned model whose soft ratio is
    ``target`` (every channel kept at the same fraction ``w``). Costs are products of adjacent widths
    (a conv's MACs = in × out × k × area), so marginal costs evaluated at the *current* gates feed back — a
    wide group makes its neighbours expensive, they shrink, it gets cheaper — and drive the allocation to
    a corner; a fixed reference point has no such loop."""
    n = cost.graph.num_channels
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(cost.ratio(kind, torch.full((n,), mid, dtype=torch.float64))) <= target else (lo, mid)
    keep = torch.full((n,), lo, dtype=torch.float64, requires_grad=True)
    return torch.autograd.grad(cost.ratio(kind, keep), keep)[0].float()



def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      weight: float = 0.5, temperature: float = 4.0) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015): ``(1 − weight)·CE + weight·T²·KL(teacher ‖ student)``.

    >>> x = torch.randn(4, 10)
    >>> float(distillation_loss(x, x, torch.zeros(4, dtype=torch.long), weight=1.0))
    0.0
    """
    if not 0.0 <= weight <= 1.0 or temperature <= 0:
        raise ValueError(f"distillation needs 0 <= weight <= 1 and temperature > 0, got {weight}, {temperature}")
    kl = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return (1.0 - weight) * F.cross_entropy(logits, labels) + weight * temperature ** 2 * kl

class ChipNetPruner:
    """Attach ChipNet gates to ``model`` and learn a mask that meets ``budget`` exactly.

    Args:
        model: a (pre-trained) CNN with BatchNorm; gated in place until :meth:`remove`.
        budget: a :class:`Budget` or ``"kind:value"`` string, e.g. ``"flops:0.1"``.
        example_input: one example batch; sets spatial sizes for the volume and FLOPs costs.
        classifier_name: the layer whose output is never pruned (default: ``model.classifier_name``
            or the last linear layer).
        schedule: β/γ/steepness schedules (default: the authors', stretched over the run).
        psi_travel: see :data:`DEFAULT_PSI_TRAVEL`.
        group_normalize: divide each gate by the largest gate of its group, so that the strongest
            channel of every group is always fully on. A conv followed by BatchNorm is blind to the
            scale of its input, so without this a whole group can sit at z ≈ 0.1 — counted as removed
            by the soft cost, yet fully used — and the thresholded mask (which keeps ≥ 1 channel per
            group) then collapses the network. ``False`` is the authors' gate.
        round_to: every group keeps a multiple of this many channels (or all of them); 8 or 16
            makes the slimmed model run much closer to its ideal speed-up (docs/benchmarks.md). Groups
            around grouped convs keep a multiple of ``lcm(round_to, group.granularity)`` channels.
            ``"auto"``: per group, only the widths that run fast on the model's device
            (:func:`~chipnet_zoo.latency.auto_round_to`; timed once per latency table).
        min_keep: every group keeps at least this fraction of its channels (an absolute width floor).
        floor: a width floor relative to the budget: every group keeps at least the width of a uniformly
            thinned model that spends this share of the budget (:func:`~chipnet_zoo.threshold.floor_fraction`);
            the rest of the budget goes by the gates. Without it, a tight FLOPs budget empties the
            high-resolution groups first and the network runs through a 1-channel stem
            (docs/benchmarks.md, "Where the channels go"). Default :data:`DEFAULT_FLOOR`; ``0`` is the
            authors' allocation.
        check: before gating, slim the model with a probe mask and check masked == slimmed (outputs
            and counts) on ``example_input`` (:func:`chipnet_zoo.slim.verify_model`).
        latency_table: the :class:`~chipnet_zoo.latency.LatencyTable` of a ``latency`` budget; without one it
            is measured (or read from the cache) on the model's device at ``example_input``'s batch size.

    Raises:
        UnsupportedLayerError: a layer or channel operation that cannot be pruned exactly (named), found
            by the channel graph or (``InexactModelError``) by the probe.
        UnreachableBudgetError: the budget is below the smallest reachable ratio.
        LatencyTableError: a latency budget, no ``latency_table`` and none measurable (e.g. the ``meta`` device),
            or a table measured for another model or input size.

    Example:
        >>> import torch, chipnet_zoo as cz
        >>> model = cz.create_model("resnet20", num_classes=10)
        >>> pruner = cz.ChipNetPruner(model, "flops:0.25", example_input=torch.randn(1, 3, 32, 32))
        >>> pruner.mask().ratios["flops"] <= 0.25
        True
    """

    def __init__(self, model: nn.Module, budget: Budget | str, *, example_input: torch.Tensor,
                 classifier_name: str | None = None, schedule: GateSchedule | None = None,
                 init_scale: float = 0.01, psi_travel: float = DEFAULT_PSI_TRAVEL,
                 group_normalize: bool = True, round_to: int | str = 1, min_keep: float = 0.0,
                 floor: float = DEFAULT_FLOOR, check: bool = True, latency_table: LatencyTable | None = None):
        self.budget = Budget.parse(budget)
        self.min_keep = check_min_keep(min_keep)
        self.floor = check_min_keep(floor)
        self.model = model
        self.example_input = example_input.detach()[:1]
        self.schedule = schedule or GateSchedule()
        self.psi_travel = psi_travel
        self.graph, self.cost, self.round_to = cost_setup(model, example_input, self.budget.kind, round_to,
                                                          latency_table=latency_table, classifier_name=classifier_name)
        if check:
            verify_model(model, self.graph, self.example_input, self.cost)
        smallest = float(self.cost.ratio(self.budget.kind, smallest_mask(torch.zeros(self.graph.num_channels),
                                                                       self.cost, self.round_to, self.min_keep).double()))
        # a budget-relative floor always fits (it spends a share of the budget); an absolute one may not
        if smallest > self.budget.value + 1e-12:
            raise UnreachableBudgetError(self.budget.kind, self.budget.value, smallest, describe_round_to(self.round_to),
                                         self.min_keep, self.graph.tied)
        device = next(model.parameters()).device
        self.gates = ChipNetGates(self.graph, init_scale, self.schedule, group_normalize).to(device)
        attach_gates(model, self.gates, self.graph)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # {"epoch", "accuracy", "keep", "state"}
        self._pending_optimizer_state: dict | None = None
        self._hparams: dict[str, Any] = {}
        self.committed: torch.Tensor | None = None  # the frozen mask of the hardening's commit half

    # --- masks -----------------------------------------------------------------------------------
    def z(self) -> torch.Tensor:
        """Current gate values z (no gradient)."""
        with torch.no_grad():
            return self.gates.z().detach().cpu()

    def soft_ratio(self) -> float:
        """Soft ratio R̂ of the budget's kind at the current gates and steepness."""
        with torch.no_grad():
            return float(self.cost.ratio(self.budget.kind, self.soft_keep(self.gates.z())))

    def soft_keep(self, z: torch.Tensor, linear: bool = False, floor_aware: bool = False) -> torch.Tensor:
        """The differentiable keep value of every channel: ``σ(s·(z − 0.5))`` (or ``z`` with ``linear``).
        ``floor_aware``: each group's soft count is held at or above the width floor's count (a group whose
        soft count falls below it is scaled up to it), so the budget loss presses on a group only while it
        holds more than the floor keeps anyway.
        """
        keep = z if linear else soft_keep(z, self.gates.steepness)
        if not floor_aware or int(self._floor_counts.max()) <= 1:
            return keep
        group_id = self.gates.group_id
        floor = self._floor_counts.to(keep)
        count = keep.new_zeros(floor.numel()).index_add(0, group_id, keep)
        scale = torch.where(count < floor, floor / count.clamp_min(1e-12), torch.ones_like(count))
        return keep * scale[group_id]

    @functools.cached_property
    def _floor_counts(self) -> torch.Tensor:
        """How many channels of each group the width floor keeps (for the floor-aware soft budget)."""
        width = max(self.min_keep, floor_fraction(self.cost, self.budget, self.floor, self.round_to))
        kept = smallest_mask(torch.zeros(self.graph.num_channels), self.cost, self.round_to, width)
        return torch.tensor([int(kept[g.indices].sum()) for g in self.graph.groups])

    def hard_keep(self, budget: Budget | str | None = None, scores: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean keep vector from ``scores`` (default: the current gates), thresholded at ``budget``
        (default: the pruner's) with the pruner's ``round_to`` and width floors."""
        if scores is None:
            from .scorers import GateScorer, score_vector

            scores = score_vector(GateScorer(self), self.graph)
        return threshold_scores(scores, self.cost, budget or self.budget,
                                round_to=self.round_to, min_keep=self.min_keep, floor=self.floor)

    def mask(self, budget: Budget | str | None = None) -> Mask:
        """The hard :class:`Mask`: from the best epoch after :meth:`fit`, else from the current gates."""
        budget = Budget.parse(budget) if budget is not None else self.budget
        if self.best is not None and budget == self.budget:
            keep, scores = self.best["keep"], self.best["scores"]
        else:
            from .scorers import GateScorer, score_vector

            scores = score_vector(GateScorer(self), self.graph)
            keep = self.hard_keep(budget, scores)
        metrics = {"hard_val_accuracy": self.best["accuracy"], "best_epoch": self.best["epoch"]} if self.best else {}
        model = self.model
        return Mask.from_vectors(
            self.graph, keep, scores,
            arch=str(getattr(model, "arch_name", type(model).__name__)),
            num_classes=output_classes(model, self.graph),
            budget_type=budget.kind, budget=budget.value,
            ratios=self.cost.hard_ratios(keep), method="chipnet", metrics=metrics,
            hparams={**self._hparams, **threshold_hparams(self.round_to, self.min_keep, self.floor)},
            **latency_metadata(self.cost),
        )

    # --- the pruning phase -----------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, *, epochs: int = 20, lr: float = 1e-3,
            weight_decay: float = 1e-3, psi_lr: float | None = None, budget_weight: float = 30.0,
            crispness_weight: float | None = None, harden: float = DEFAULT_HARDEN,
            budget_grad_power: float = 1.0, budget_grad_at: str = "current", soft_count: str = "sigmoid",
            floor_aware: bool = False, distill_from: nn.Module | None = None, distill_weight: float = 0.5,
            distill_temperature: float = 4.0, accelerator=None,
            callback: Callable[[dict[str, Any], ChipNetPruner], None] | None = None,
            progress: bool = True) -> list[dict[str, Any]]:
        """Run the pruning phase: minimise CE + w_b·(R̂ − V)² + w_c·crispness jointly over weights and ψ.

        Each epoch ends with a validation under the soft gates and under the hard (thresholded) mask;
        the epoch with the best hard-mask accuracy is kept (its weights are restored at the end).

        ``harden`` is the final fraction of the run during which the forward pass moves from the soft
        gates to the budget-exact hard mask of the current gates (straight-through, ψ keeps learning;
        see :data:`DEFAULT_HARDEN`); ``0`` is the authors' purely soft phase.
        ``budget_grad_power``, ``budget_grad_at`` and ``soft_count`` change the budget loss (levers measured
        in docs/benchmarks.md; the defaults are the authors' form): the budget gradient of each channel
        ∝ its marginal cost ``** budget_grad_power`` (0 = the same push for every channel), the marginal
        cost taken at the current gates or once at the uniformly thinned model (``"uniform"``, see
        :func:`uniform_marginal_cost`), the soft count ``σ(s·(z − 0.5))`` or ``z`` itself (``"linear"``), and
        with ``floor_aware`` a soft count held at the width floor (:meth:`soft_keep`).
        ``distill_from`` (a frozen model, e.g. the dense one; off by default) replaces the cross-entropy by
        ``(1 − w)·CE + w·T²·KL(teacher ‖ student)`` at temperature ``T`` (:func:`distillation_loss`).
        Resumes from :meth:`load_state_dict` state when given. Returns the per-epoch history.
        """
        # optimizer steps per epoch on each rank (a prepared loader is split across processes)
        processes = accelerator.num_processes if accelerator is not None else 1
        steps_per_epoch = math.ceil(len(train_loader) / processes)
        total_steps = max(1, epochs * steps_per_epoch)
        psi_lr = psi_lr if psi_lr is not None else max(lr, self.psi_travel / total_steps)
        crispness_weight = DEFAULT_CRISPNESS_WEIGHT if crispness_weight is None else crispness_weight
        if not 0.0 <= harden <= 1.0:
            raise ValueError(f"harden must be a fraction in [0, 1], got {harden}")
        if budget_grad_at not in ("current", "uniform"):
            raise ValueError(f"budget_grad_at must be 'current' or 'uniform', got {budget_grad_at!r}")
        if soft_count not in ("sigmoid", "linear"):
            raise ValueError(f"soft_count must be 'sigmoid' or 'linear', got {soft_count!r}")
        if not 0.0 <= budget_grad_power <= 1.0:
            raise ValueError(f"budget_grad_power must be in [0, 1], got {budget_grad_power}")
        self._hparams = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "psi_lr": psi_lr,
                         "budget_weight": budget_weight, "crispness_weight": crispness_weight, "harden": harden,
                         "group_normalize": self.gates.group_normalize, "budget_grad_power": budget_grad_power,
                         "budget_grad_at": budget_grad_at, "soft_count": soft_count, "floor_aware": floor_aware,
                         "steps_per_epoch": steps_per_epoch, "psi_travel": self.psi_travel}
        if distill_from is not None:
            self._hparams.update(distill_weight=distill_weight, distill_temperature=distill_temperature)
            distill_from.eval()
        psi = self.gates.psi
        weights = [p for p in self.model.parameters() if p is not psi and p.requires_grad]
        optimizer = torch.optim.AdamW([
            {"params": weights, "lr": lr, "weight_decay": weight_decay},
            {"params": [psi], "lr": psi_lr, "weight_decay": 0.0},
        ])
        if self._pending_optimizer_state is not None:
            optimizer.load_state_dict(self._pending_optimizer_state)
            self._pending_optimizer_state = None
        model = self.model
        if accelerator is not None:
            model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
            if val_loader is not None:
                val_loader = accelerator.prepare(val_loader)
        device = next(self.model.parameters()).device
        is_main = accelerator is None or accelerator.is_main_process
        kind, target = self.budget.kind, self.budget.value
        gates = self.gates
        marginal = (uniform_marginal_cost(self.cost, kind, target).to(device) if budget_grad_at == "uniform"
                    else None)
        self._set_schedule(self.epoch, epochs)

        bar = tqdm(range(self.epoch, epochs), desc="pruning", disable=not (progress and is_main),
                   initial=self.epoch, total=epochs)
        for epoch in bar:
            start = time.perf_counter()
            model.train()
            gates.fixed = None
            sums = {"loss": 0.0, "ce": 0.0, "budget_loss": 0.0, "crispness": 0.0}
            n = 0
            batches = tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not (progress and is_main))
            for step, (images, labels) in enumerate(batches):
                self._set_schedule(epoch * steps_per_epoch + step, total_steps)
                self._set_hardening(epoch * steps_per_epoch + step, total_steps, harden)
                if accelerator is None:
                    images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                logits = model(images)
                if distill_from is None:
                    ce = F.cross_entropy(logits, labels)
                else:
                    with torch.no_grad():
                        teacher_logits = distill_from(images)
                    ce = distillation_loss(logits, teacher_logits, labels, weight=distill_weight,
                                           temperature=distill_temperature)
                keep = self.soft_keep(gates.last_z, linear=soft_count == "linear", floor_aware=floor_aware)
                ratio = self.cost.ratio(kind, keep)
                if budget_grad_power != 1.0 or marginal is not None:
                    ratio = reweight_budget_gradient(ratio, keep, budget_grad_power, marginal)
                budget_loss = (ratio - target) ** 2
                crisp = crispness_loss(gates.last_z_raw, gates.last_z_tilde)
                loss = ce + budget_weight * budget_loss + crispness_weight * crisp
                if self.committed is not None:  # pull the gates (z̃ and z) onto the committed mask
                    target_mask = gates.hard_target
                    loss = loss + crispness_weight * (((gates.last_z_tilde - target_mask) ** 2).mean()
                                                      + ((gates.last_z - target_mask) ** 2).mean())
                optimizer.zero_grad(set_to_none=True)
                if accelerator is not None:
                    accelerator.backward(loss)
                else:
                    loss.backward()
                optimizer.step()
                for key, value in (("loss", loss), ("ce", ce), ("budget_loss", budget_loss), ("crispness", crisp)):
                    sums[key] += float(value.detach())
                n += 1
            record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(n, 1) for k, v in sums.items()},
                                      "beta": float(gates.beta), "gamma": float(gates.gamma),
                                      "hard_mix": gates.hard_mix}
            gates.hard_target, gates.hard_mix = None, 0.0
            record.update(self._end_of_epoch(model, val_loader, accelerator))
            record["steepness"] = float(gates.steepness)
            record["seconds"] = time.perf_counter() - start
            self.epoch = epoch + 1
            self._set_schedule(self.epoch, epochs)
            self.history.append(record)
            if progress and is_main:
                bar.set_postfix(soft=f"{record['soft_ratio']:.3f}", hard_acc=f"{record['hard_val_accuracy']:.3f}")
            if callback is not None:
                self._pending_optimizer_state = optimizer.state_dict()
                callback(record, self)
                self._pending_optimizer_state = None
        gates.hard_target, gates.hard_mix = None, 0.0
        if self.best is not None:
            self.model.load_state_dict(self.best["state"])
        return self.history

    def _set_hardening(self, done: int, total: int, harden: float) -> None:
        """The last ``harden`` of the run, in two halves. *Ramp*: the forward value moves from the soft
        gates to the budget-exact hard mask of the current gates (re-thresholded every
        :data:`HARDEN_REFRESH_STEPS` steps; straight-through, so ψ keeps learning). *Commit*: the mask is
        frozen; the weights and BN statistics adapt to it and the gates are pulled onto it (crisp)."""
        gates = self.gates
        start = 1.0 - harden
        progress = done / max(total, 1)
        if harden <= 0 or progress < start:
            gates.hard_target, gates.hard_mix, self.committed = None, 0.0, None
            return
        gates.hard_mix = min(1.0, (progress - start) / (0.5 * harden))
        if gates.hard_mix >= 1.0:
            if self.committed is None:
                self.committed = self.hard_keep()
            gates.hard_target = self.committed.to(gates.psi.device, torch.float32)
        elif gates.hard_target is None or done % HARDEN_REFRESH_STEPS == 0:
            gates.hard_target = self.hard_keep().to(gates.psi.device, torch.float32)

    def _set_schedule(self, done: float, total: float) -> None:
        """Set β, γ and s for the point ``done / total`` of the run (updated every step, so that a
        short run passes through the schedule smoothly rather than in large per-epoch jumps)."""
        e_ref = self.schedule.reference_epoch(done, total)
        self.gates.beta.fill_(self.schedule.beta(e_ref))
        self.gates.gamma.fill_(self.schedule.gamma(e_ref))
        self.gates.steepness.fill_(self.schedule.steepness(e_ref))

    def _end_of_epoch(self, model: nn.Module, val_loader, accelerator) -> dict[str, Any]:
        gates = self.gates
        with torch.no_grad():
            z, z_raw, z_tilde = gates.z(), gates.z_raw(), gates.z_tilde()
            soft = float(self.cost.ratio(self.budget.kind, self.soft_keep(z)))
            crisp_fraction = float(((z_raw - z_tilde).abs() < CRISP_TOLERANCE).float().mean())
        keep = (self.committed.clone() if self.committed is not None
                else self.hard_keep(scores=z))
        record: dict[str, Any] = {"soft_ratio": soft, "hard_ratio": self.cost.hard_ratios(keep)[self.budget.kind],
                                  "crisp_fraction": crisp_fraction, "kept_channels": int(keep.sum())}
        if val_loader is not None:
            record["soft_val_accuracy"] = evaluate(model, val_loader, accelerator=accelerator)["accuracy"]
            gates.fixed = keep.to(z.device, torch.float32)
            try:
                record["hard_val_accuracy"] = evaluate(model, val_loader, accelerator=accelerator)["accuracy"]
            finally:
                gates.fixed = None
        else:
            record["soft_val_accuracy"] = record["hard_val_accuracy"] = math.nan
        accuracy = record["hard_val_accuracy"]
        score = -math.inf if math.isnan(accuracy) else accuracy
        if val_loader is None or self.best is None or score > self.best["accuracy"]:
            self.best = {"epoch": self.epoch + 1, "accuracy": accuracy, "keep": keep, "scores": z.detach().cpu(),
                         "state": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
        return record

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume :meth:`fit` mid-phase (model incl. gates, optimizer, best epoch)."""
        return {
            "epoch": self.epoch,
            "history": copy.deepcopy(self.history),
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self._pending_optimizer_state),
            "best": None if self.best is None else dict(self.best),
            "committed": None if self.committed is None else self.committed.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next :meth:`fit` continues from its epoch."""
        self.model.load_state_dict(state["model"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history") or [])
        self.best = state.get("best")
        self.committed = state.get("committed")
        self._pending_optimizer_state = state.get("optimizer")

    def remove(self) -> nn.Module:
        """Detach the gates; the model is the plain model again (with the weights it has now)."""
        return detach_gates(self.model)

    def __repr__(self) -> str:
        return (f"ChipNetPruner(budget={self.budget}, groups={len(self.graph.groups)}, "
                f"channels={self.graph.num_channels}, epoch={self.epoch})")
