"""The ``train`` phase (a dense model, from random init or ``--weights``) and the training of the
``finetune`` phase (a model slimmed by its mask, :mod:`.finetune`): plain cross-entropy training
(:class:`~chipnet_zoo.training.Trainer`) with a checkpoint every epoch."""

from __future__ import annotations

from typing import Any

from ..training import Trainer
from .evaluate import ALL_ONES, cpu_copy, final_metrics
from .finetune import save_finetuned_mask, slim_with_mask
from .folder import CURVES, WEIGHTS
from .plots import plot_curves
from .session import RunSession
from .weights import load_state_dict_file, load_weights_into, save_state_dict


def train_phase(session: RunSession) -> dict[str, Any]:
    """Train (or fine-tune) the run's model, save its weights (and mask) and return its metrics."""
    options, bundle, acc, run = session.options, session.bundle, session.accelerator, session.run
    x = session.example_input()
    model = session.new_model()
    weights = options.weights_file
    if weights:
        load_weights_into(model, load_state_dict_file(weights), source=weights)
    mask = ratios = None
    if options.kind == "finetune":
        model, mask, ratios = slim_with_mask(session, model, x)
        if not weights:
            session.log("no --weights: the slimmed model is trained from scratch (random init)")
    trainer = Trainer(model, session.loaders.train, session.loaders.val, session.phase, accelerator=acc,
                      progress=session.progress, desc=options.kind)
    if session.resume_state is not None:
        trainer.load_state_dict(session.resume_state)
        session.restore_epoch(trainer.history)
    trainer.fit(callback=lambda record, t: session.save_epoch(record, t.state_dict))
    final = trainer.unwrapped
    metrics = final_metrics(final, x, session.loaders, acc)
    metrics["rank_weights_sha256"] = trainer.rank_digests
    history = trainer.history
    metrics.update({
        "ratios": ratios or dict(ALL_ONES), "epochs_done": len(history),
        "best_epoch": trainer.best["epoch"] if trainer.best else None,
        "best_val_accuracy_during_training": trainer.best["val_accuracy"] if trainer.best else None,
        "train_seconds": sum(r["seconds"] for r in history),
    })
    if acc.is_main_process:
        state = cpu_copy(final).state_dict()
        save_state_dict(run.file(WEIGHTS), state, arch=options.arch, kind="slim" if mask else "dense",
                        num_classes=bundle.num_classes, input_size=list(bundle.input_size))
        if mask is not None:
            save_finetuned_mask(session, mask, metrics)
        plot_curves(history, run.file(CURVES), f"{options.kind} {options.arch} on {bundle.name}")
    return metrics
