"""``ChipNetPruner``: learn a budget-exact channel mask for any BatchNorm CNN (DESIGN §3)."""

from __future__ import annotations

import copy
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
from .evaluation import evaluate_accuracy
from .gates import ChipNetGates, GateSchedule, attach_gates, crispness_loss, detach_gates, soft_keep
from .groups import build_channel_graph
from .mask import Mask
from .threshold import check_round_to, smallest_mask, threshold_scores
from .verify import verify_model

#: How far (in ψ units) AdamW must be able to move a gate within one run. The authors' defaults
#: give 28 on CIFAR (28k steps × lr 1e-3) but only ~2 on a 3.5k-image set, where no gate can close
#: (DESIGN §3.3, "measured pitfall"); ψ's learning rate is raised to reach this travel on small data.
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
#: How often (in steps) the hardening target is re-thresholded from the current gates.
HARDEN_REFRESH_STEPS = 8
#: A gate counts as crisp when |z − z̃| is below this.
CRISP_TOLERANCE = 0.05


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
        check: before gating, slim the model with a probe mask and check masked == slimmed (outputs
            and counts) on ``example_input`` (:func:`chipnet_zoo.verify.verify_model`).

    Raises:
        UnsupportedLayerError: a layer or channel operation that cannot be pruned exactly (named), found
            by the channel graph or (``InexactModelError``) by the probe.
        UnreachableBudgetError: the budget is below the smallest reachable ratio.

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
                 group_normalize: bool = True, round_to: int = 1, check: bool = True):
        self.budget = Budget.parse(budget)
        self.round_to = check_round_to(round_to)
        self.model = model
        self.example_input = example_input.detach()[:1]
        self.schedule = schedule or GateSchedule()
        self.psi_travel = psi_travel
        detach_gates(model)
        self.graph = build_channel_graph(model, self.example_input, classifier_name)
        self.cost = CostModel(self.graph)
        if check:
            verify_model(model, self.graph, self.example_input, self.cost)
        smallest = float(self.cost.ratio(self.budget.kind, smallest_mask(torch.zeros(self.graph.num_channels),
                                                                       self.cost, self.round_to).double()))
        if smallest > self.budget.value + 1e-12:
            raise UnreachableBudgetError(self.budget.kind, self.budget.value, smallest, self.round_to,
                                         self.graph.tied)
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
            keep = soft_keep(self.gates.z(), self.gates.steepness)
            return float(self.cost.ratio(self.budget.kind, keep))

    def hard_keep(self, budget: Budget | str | None = None) -> torch.Tensor:
        """Boolean keep vector from the current gates, thresholded at ``budget`` (default: the pruner's)."""
        return threshold_scores(self.z(), self.cost, budget or self.budget, round_to=self.round_to)

    def mask(self, budget: Budget | str | None = None) -> Mask:
        """The hard :class:`Mask`: from the best epoch after :meth:`fit`, else from the current gates."""
        budget = Budget.parse(budget) if budget is not None else self.budget
        if self.best is not None and budget == self.budget:
            keep, scores = self.best["keep"], self.best["scores"]
        else:
            scores = self.z()
            keep = threshold_scores(scores, self.cost, budget, round_to=self.round_to)
        metrics = {"hard_val_accuracy": self.best["accuracy"], "best_epoch": self.best["epoch"]} if self.best else {}
        model = self.model
        return Mask.from_vectors(
            self.graph, keep, scores,
            arch=str(getattr(model, "arch_name", type(model).__name__)),
            num_classes=int(getattr(model, "num_classes", 0) or 0),
            budget_type=budget.kind, budget=budget.value,
            ratios=self.cost.hard_ratios(keep), method="chipnet", metrics=metrics,
            hparams={**self._hparams, **({"round_to": self.round_to} if self.round_to != 1 else {})},
        )

    # --- the pruning phase -----------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, epochs: int = 20, *, lr: float = 1e-3,
            weight_decay: float = 1e-3, psi_lr: float | None = None, budget_weight: float = 30.0,
            crispness_weight: float | None = None, harden: float = DEFAULT_HARDEN, accelerator=None,
            callback: Callable[[dict[str, Any], ChipNetPruner], None] | None = None,
            progress: bool = True) -> list[dict[str, Any]]:
        """Run the pruning phase: minimise CE + w_b·(R̂ − V)² + w_c·crispness jointly over weights and ψ.

        Each epoch ends with a validation under the soft gates and under the hard (thresholded) mask;
        the epoch with the best hard-mask accuracy is kept (its weights are restored at the end).

        ``harden`` is the final fraction of the run during which the forward pass moves from the soft
        gates to the budget-exact hard mask of the current gates (straight-through, ψ keeps learning;
        see :data:`DEFAULT_HARDEN`); ``0`` is the authors' purely soft phase.
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
        self._hparams = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "psi_lr": psi_lr,
                         "budget_weight": budget_weight, "crispness_weight": crispness_weight, "harden": harden,
                         "group_normalize": self.gates.group_normalize,
                         "steps_per_epoch": steps_per_epoch, "psi_travel": self.psi_travel}
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
                ce = F.cross_entropy(logits, labels)
                budget_loss = (self.cost.ratio(kind, soft_keep(gates.last_z, gates.steepness)) - target) ** 2
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
            soft = float(self.cost.ratio(self.budget.kind, soft_keep(z, gates.steepness)))
            crisp_fraction = float(((z_raw - z_tilde).abs() < CRISP_TOLERANCE).float().mean())
        keep = (self.committed.clone() if self.committed is not None
                else threshold_scores(z, self.cost, self.budget, round_to=self.round_to))
        record: dict[str, Any] = {"soft_ratio": soft, "hard_ratio": self.cost.hard_ratios(keep)[self.budget.kind],
                                  "crisp_fraction": crisp_fraction, "kept_channels": int(keep.sum())}
        if val_loader is not None:
            record["soft_val_accuracy"] = evaluate_accuracy(model, val_loader, accelerator=accelerator)
            gates.fixed = keep.to(z.device, torch.float32)
            try:
                record["hard_val_accuracy"] = evaluate_accuracy(model, val_loader, accelerator=accelerator)
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
