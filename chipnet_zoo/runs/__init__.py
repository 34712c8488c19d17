"""Runs: ``train`` (dense), ``prune`` (ChipNet), ``finetune`` (slimmed by a mask) and ``eval``, each in a run
folder that resumes from per-epoch checkpoints.

Data flow: :class:`RunRequest` (the CLI's options) -> :func:`~.options.resolve` -> :class:`RunOptions`
(typed; ``config.json``'s ``resolved``) -> :func:`execute` opens the :class:`Run` folder under its lock ->
a :class:`~.session.RunSession` -> :func:`~.train.train_phase` or :func:`~.prune.prune_phase` -> ``metrics.json``.

Modules: :mod:`.folder` (the folder: files, lock, log, checkpoints), :mod:`.options`, :mod:`.execute`,
:mod:`.train` (dense training; the training of fine-tuning), :mod:`.finetune` (the mask a fine-tuning slims
with), :mod:`.prune`, :mod:`.evaluate`, :mod:`.weights` (state dicts, :func:`load_run_model`), :mod:`.plots`.

    >>> from chipnet_zoo.runs import load_run_model
    >>> model = load_run_model("runs/finetune-resnet8-mnist5k-flops-0.25")   # doctest: +SKIP
"""

from __future__ import annotations

from .execute import execute
from .folder import RUN_KINDS, Run, open_source_run, run_lock
from .options import RunOptions, RunRequest, resolve
from .weights import load_run_model

__all__ = ["RUN_KINDS", "Run", "RunOptions", "RunRequest", "execute", "load_run_model", "open_source_run",
           "resolve", "run_lock"]
