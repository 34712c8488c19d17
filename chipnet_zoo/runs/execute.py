"""Executing a run: open (or resume) its folder under the lock, load the data, write ``config.json``, run
the phase (:mod:`.train` or :mod:`.prune`) with a checkpoint every epoch, write ``metrics.json``. Runs under
``accelerate`` (CPU, one GPU, or DDP under ``torchrun`` / ``accelerate launch``).

    >>> from chipnet_zoo.runs import RunRequest, execute
    >>> metrics = execute(RunRequest("train", arch="resnet8", dataset="mnist5k", recipe="tiny",
    ...                              max_samples=500, out="runs/demo-train"))     # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from ..distributed import describe_accelerator, is_rank0, make_accelerator
from ..errors import RunError
from .folder import Run, library_versions, now, write_summary
from .options import RunOptions, RunRequest, check_resume, resolve
from .session import RunSession, log

if TYPE_CHECKING:  # pragma: no cover
    pass


def execute(request: RunRequest) -> dict[str, Any]:
    """Run (or resume) one ``train`` / ``prune`` / ``finetune`` run (or an ``eval``); returns its metrics."""
    if request.kind == "eval":
        from .evaluate import evaluate_run

        return evaluate_run(request)
    acc = make_accelerator(request.device)  # joins the process group first: every rank decides before anyone writes
    resuming_existing = request.resume and request.out and Run(request.out).exists()
    options = None if resuming_existing else resolve(request)
    run = Run(request.out if options is None else options.run_dir(request.out))
    if not is_rank0():  # the main process holds the folder for all ranks
        return _open(run, options, request, acc)
    with run.lock(wait=request.wait_for_lock):
        return _open(run, options, request, acc)


def _open(run: Run, options: RunOptions | None, request: RunRequest, acc) -> dict[str, Any]:
    if run.exists():
        old = run.config()
        if request.resume and old.get("kind") == request.kind and isinstance(old.get("resolved"), dict):
            check_resume(run, request, old["resolved"])
        if run.is_finished():
            if not request.resume:
                raise RunError(f"run folder {run.path} holds a finished {old.get('kind')} run; "
                               "choose another --out (or --resume to report it)")
            metrics = run.metrics() or {}
            if is_rank0():
                print(f"run {run.path} already finished ({metrics.get('epochs_done')} epochs); nothing to do",
                      file=sys.stderr)
            return {**metrics, "already_finished": True}
        if not request.resume:
            raise RunError(f"run folder {run.path} holds an unfinished run; pass --resume to continue it, "
                           "or choose another --out")
        if old.get("kind") != request.kind:
            raise RunError(f"{run.path} is a {old.get('kind')!r} run, not a {request.kind!r} run")
        options, resuming = RunOptions.from_dict(old["resolved"]), True
    else:
        if options is None:
            options = resolve(request)
        resuming = False
    acc.wait_for_everyone()
    return _execute(run, options, request, resuming, acc)


def _execute(run: Run, options: RunOptions, request: RunRequest, resuming: bool, acc) -> dict[str, Any]:
    from accelerate.utils import set_seed

    from ..data import load_data, make_loaders

    phase = options.phase
    set_seed(int(options.seed))
    bundle = load_data(**options.data_kwargs)
    loaders = make_loaders(bundle, phase["batch_size"], num_workers=options.workers, seed=int(options.seed),
                           eval_batch_size=max(phase["batch_size"], 128))
    resolved = options.to_dict()
    if acc.is_main_process and not resuming:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config({
            "kind": options.kind, "created": now(), "command": ["chipnet-zoo", *request.argv],
            "arch": options.arch, "num_classes": bundle.num_classes, "in_chans": bundle.in_chans,
            "input_size": list(bundle.input_size), "budget": resolved["budget"], "seed": options.seed,
            "dataset": bundle.describe(), "recipe": resolved["recipe"], "source": options.source,
            "weights_file": options.weights_file, "mask_file": options.mask_file,
            "accelerate": describe_accelerator(acc), "versions": library_versions(), "resolved": resolved,
        })
    acc.wait_for_everyone()
    log(f"{'resuming' if resuming else 'starting'} {options.kind} run {run.path} "
        f"({options.arch} on {bundle.name}, {len(bundle.train)} train / {len(bundle.val)} val / "
        f"{len(bundle.test)} test, {acc.num_processes} process(es) on {acc.device})", acc)
    resume_state, resumed_from = None, 0
    if resuming and run.checkpoint.exists():
        resumed_from, resume_state = run.checkpoint.load()
        log(f"resuming from the epoch-{resumed_from} checkpoint", acc)
    elif resuming:
        log("no checkpoint yet: starting from the beginning", acc)
    if resume_state is None and acc.is_main_process:
        run.write_log([])  # a fresh start (also after a kill before the first checkpoint)
    session = RunSession(run, options, bundle, loaders, acc, progress=request.progress, resume_state=resume_state)

    start = time.perf_counter()
    if options.kind == "prune":
        from .prune import prune_phase

        metrics = prune_phase(session)
    else:
        from .train import train_phase

        metrics = train_phase(session)
    metrics.update({"kind": options.kind, "run_dir": str(run.path), "finished": True,
                    "seconds_this_session": time.perf_counter() - start, "resumed_from_epoch": resumed_from,
                    "world_size": acc.num_processes})
    if acc.is_main_process:
        run.write_metrics(metrics)
        run.checkpoint.remove()
        write_summary(metrics)
    acc.wait_for_everyone()
    return metrics
