"""The ``prune`` phase: ChipNet's gates learned on the dense model (:class:`~chipnet_zoo.pruner.ChipNetPruner`),
thresholded into a budget-exact hard mask; every rank must agree on it. Writes ``mask.safetensors`` and the
pruned-phase (dense-shaped) weights; the run's model is those weights slimmed by the mask."""

from __future__ import annotations

from typing import Any

import torch

from ..distributed import gather_strings, tensors_digest
from ..mask_plot import save_kept_channels
from ..threshold import check_round_to
from .evaluate import final_metrics
from .folder import CURVES, KEPT_PLOT, MASK, PRUNED_WEIGHTS
from .plots import plot_curves
from .session import RunSession, log
from .weights import load_state_dict_file, load_weights_into, save_state_dict


def prune_phase(session: RunSession) -> dict[str, Any]:
    """Learn the mask at the run's budget; save it with the pruned-phase weights; return the metrics."""
    from ..pruner import ChipNetPruner

    options, bundle, acc, run, phase = session.options, session.bundle, session.accelerator, session.run, session.phase
    model = session.new_model()
    load_weights_into(model, load_state_dict_file(options.weights_file), source=options.weights_file)
    model = model.to(acc.device)
    if acc.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    kwargs = {key: float(phase[key]) for key in ("psi_travel", "min_keep", "floor") if phase.get(key) is not None}
    pruner = ChipNetPruner(model, options.budget, example_input=session.example_input(acc.device),
                           round_to=check_round_to(phase.get("round_to", 1)), **kwargs)
    if session.resume_state is not None:
        pruner.load_state_dict(session.resume_state["pruner"])
        session.restore_epoch(pruner.history)
    history = pruner.fit(
        session.loaders.train, session.loaders.val, epochs=phase["epochs"], lr=phase["lr"],
        weight_decay=phase["weight_decay"], budget_weight=phase["budget_weight"],
        crispness_weight=phase["crispness_weight"], accelerator=acc,
        **{key: float(phase[key]) for key in ("harden", "budget_grad_power") if phase.get(key) is not None},
        callback=lambda record, p: session.save_epoch(record, lambda: {"pruner": p.state_dict()}),
        progress=session.progress)
    mask, digests = agree_on_mask(pruner.mask(), acc)
    best = pruner.best or {}
    pruner.remove()
    plain = acc.unwrap_model(pruner.model, keep_fp32_wrapper=False)
    pruned_state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in plain.state_dict().items()}
    # the run's model: a fresh dense model with the pruned-phase weights, slimmed by the mask
    x = session.example_input()
    slim = mask.slim(load_weights_into(session.new_model(), pruned_state, source="(pruned phase)"), x).to(acc.device)
    metrics = final_metrics(slim, x, session.loaders, acc)
    metrics.update({
        "ratios": mask.ratios, "epochs_done": len(history), "budget": str(options.budget),
        "best_epoch": best.get("epoch"), "hard_val_accuracy_best_epoch": best.get("accuracy"),
        "kept_channels": int(mask.keep_vector().sum()), "total_channels": int(mask.keep_vector().numel()),
        "train_seconds": sum(r.get("seconds", 0.0) for r in history),
        "rank_mask_sha256": digests, "ranks_agreed": len(set(digests)) == 1,
    })
    mask = mask.with_metadata(
        dataset=bundle.name, num_classes=bundle.num_classes, input_size=list(bundle.input_size), method="chipnet",
        metrics={"val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"],
                 "hard_val_accuracy": best.get("accuracy"), "best_epoch": best.get("epoch"), "phase": "pruned"},
        hparams={**(mask.metadata.get("hparams") or {}), "recipe": options.recipe_name, "seed": options.seed,
                 "batch_size": phase["batch_size"], "world_size": acc.num_processes})
    if acc.is_main_process:
        mask.save(run.file(MASK))
        save_state_dict(run.file(PRUNED_WEIGHTS), pruned_state, arch=options.arch, kind="pruned-phase",
                        num_classes=bundle.num_classes, input_size=list(bundle.input_size))
        save_kept_channels(mask, run.file(KEPT_PLOT))
        plot_curves(history, run.file(CURVES), f"prune {options.arch} on {bundle.name} at {options.budget}")
    return metrics


def mask_digest(mask) -> str:
    """sha256 of a mask's keep and score tensors (equal digests: the same mask)."""
    return tensors_digest({**{f"k/{n}": v for n, v in mask.keep.items()},
                           **{f"s/{n}": v for n, v in mask.scores.items()}})


def agree_on_mask(mask, acc):
    """Verify every rank learned the same mask; if not, adopt rank 0's (and say so).
    Returns the mask and every rank's digest of its own mask (before any correction)."""
    digests = gather_strings(mask_digest(mask), acc)
    if len(set(digests)) == 1:
        return mask, digests
    import torch.distributed as dist

    from ..mask import Mask

    log(f"warning: ranks ended with different masks ({digests}); using rank 0's", acc)
    keep = {n: v.to(acc.device, torch.uint8) for n, v in mask.keep.items()}
    scores = {n: v.to(acc.device) for n, v in mask.scores.items()}
    for t in [*keep.values(), *scores.values()]:
        dist.broadcast(t, src=0)
    agreed = Mask({n: v.cpu().bool() for n, v in keep.items()}, {n: v.cpu() for n, v in scores.items()},
                  mask.metadata)
    return agreed, digests
