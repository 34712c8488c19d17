"""The ``train`` phase (a dense model, from random init or ``--weights``) and the ``finetune`` phase (a
model slimmed by a mask - re-thresholded first if the run's budget differs - then trained with the mask
frozen). Both are plain cross-entropy training (:class:`~chipnet_zoo.training.Trainer`)."""

from __future__ import annotations

from typing import Any

from ..mask_plot import save_kept_channels
from ..training import Trainer
from .evaluate import ALL_ONES, cpu_copy, final_metrics, mask_ratios
from .execute import RunSession
from .folder import CURVES, KEPT_PLOT, MASK, WEIGHTS
from .plots import plot_curves
from .weights import check_mask_arch, load_state_dict_file, load_weights_into, save_state_dict


def train_phase(session: RunSession) -> dict[str, Any]:
    """Train (or fine-tune) the run's model, save its weights (and mask) and return its metrics."""
    from ..mask import Mask

    options, bundle, acc, run = session.options, session.bundle, session.accelerator, session.run
    x = session.example_input()
    model = session.new_model()
    weights = options.weights_file
    if weights:
        load_weights_into(model, load_state_dict_file(weights), weights)
    mask = ratios = None
    if options.kind == "finetune":
        mask = Mask.load(options.mask_file)
        check_mask_arch(mask, options.arch)
        if options.budget is not None and mask.budget is not None and options.budget != mask.budget:
            mask = mask.rethreshold(options.budget, model=model, example_input=x)
            session.log(f"mask re-thresholded to {options.budget}: ratios {mask.ratios}")
        ratios = mask_ratios(mask, model, x)
        model = mask.slim(model, x)
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
            mask.with_metadata(metrics={**(mask.metadata.get("metrics") or {}),
                                        "finetuned_val_accuracy": metrics["val_accuracy"],
                                        "finetuned_test_accuracy": metrics["test_accuracy"]}).save(run.file(MASK))
            save_kept_channels(mask, run.file(KEPT_PLOT))
        plot_curves(history, run.file(CURVES), f"{options.kind} {options.arch} on {bundle.name}")
    return metrics
