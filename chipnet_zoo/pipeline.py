"""The four runs behind the CLI: dense ``train``, ChipNet ``prune``, ``finetune`` of the slimmed model
and ``eval``. Each run writes a run folder (:mod:`chipnet_zoo.runs`), checkpoints every epoch
(:mod:`chipnet_zoo.checkpoint`), resumes with ``resume=True`` and runs under ``accelerate``
(CPU, one GPU, or DDP under ``torchrun`` / ``accelerate launch``).

    >>> from chipnet_zoo.pipeline import RunSettings, execute
    >>> metrics = execute(RunSettings("train", arch="resnet8", dataset="mnist5k", recipe="tiny",
    ...                               max_samples=500, out="runs/demo-train"))     # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import runs as R
from .budget import Budget
from .errors import ResumeMismatchError, RunError
from .training import (
    Trainer,
    describe_accelerator,
    evaluate,
    gather_strings,
    load_recipe,
    make_accelerator,
    measure_latency,
    phase_config,
    tensors_digest,
)

ALL_ONES = {"channels": 1.0, "volume": 1.0, "params": 1.0, "flops": 1.0}
_PHASE = {"train": "train", "prune": "prune", "finetune": "finetune"}


@dataclass
class RunSettings:
    """What one run is asked to do (the CLI's options); ``None`` = take it from ``from_run`` / the recipe."""

    kind: str
    out: str | None = None
    from_run: str | None = None
    arch: str | None = None
    dataset: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    max_samples: int | None = None
    data_seed: int | None = None
    image_size: int | None = None
    budget: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    recipe: str | None = None
    weights: str | None = None
    mask: str | None = None
    resume: bool = False
    device: str = "auto"
    workers: int = 0
    progress: bool = True
    latency_repeats: int = 10
    round_to: int | None = None  # prune: channel counts in multiples of this (overrides the recipe)
    wait_for_lock: bool = False  # another process on the same run folder: wait (True) or fail (False)
    argv: list[str] = field(default_factory=list)


def log(msg: str, accelerator=None) -> None:
    if accelerator is None or accelerator.is_main_process:
        print(msg, file=sys.stderr, flush=True)


# --- resolving a run's configuration -------------------------------------------------------------
def _check_arch(arch: str) -> None:
    from .models import create_model, is_model

    if not is_model(arch):
        create_model(arch)  # raises UnknownModelError with suggestions


def resolve(s: RunSettings) -> dict[str, Any]:
    """The full, reproducible configuration of a new run (written to ``config.json``)."""
    if s.kind not in _PHASE:
        raise RunError(f"unknown run kind {s.kind!r}")
    if s.kind == "prune" and not s.budget:
        raise RunError("prune needs --budget kind:value (e.g. flops:0.25)")
    budget = str(Budget.parse(s.budget)) if s.budget else None  # a bad budget string fails first
    source_cfg: dict[str, Any] = {}
    if s.from_run:
        kinds = {"prune": ("train",), "finetune": ("prune",), "train": ("train",)}[s.kind]
        source_run, source_cfg = R.open_source_run(s.from_run, kinds)
    arch = s.arch or source_cfg.get("arch")
    weights, mask = s.weights, s.mask
    if s.kind == "prune" and not weights:
        if not s.from_run:
            raise RunError("prune needs dense weights: --from TRAIN_RUN or --weights FILE")
        weights = str(source_run.file(R.WEIGHTS))
    if s.kind == "finetune":
        if s.from_run:
            mask = mask or str(source_run.file(R.MASK))
            weights = weights or str(source_run.file(R.PRUNED_WEIGHTS))
        if not mask:
            raise RunError("finetune needs a mask: --from PRUNE_RUN or --mask FILE [--weights FILE]")
        if not Path(mask).is_file():
            raise RunError(f"mask file not found: {mask}")
        from .mask import Mask

        mask_obj = Mask.load(mask)
        arch = arch or mask_obj.arch
        if budget is None and mask_obj.budget is not None:
            budget = str(mask_obj.budget)
    if s.kind == "train" and s.from_run:
        weights = weights or str(source_run.file(R.WEIGHTS))
    if not arch:
        raise RunError("--arch is required (or --from a run)")
    _check_arch(arch)
    if s.kind == "finetune":
        R.check_mask_arch(mask_obj, arch)
    if weights and not Path(weights).is_file():
        raise RunError(f"weights file not found: {weights}")

    # data: the source run's split unless the dataset changes
    src_kwargs = dict((source_cfg.get("dataset") or {}).get("load_kwargs") or {})
    if s.dataset is not None and s.dataset != src_kwargs.get("name_or_path"):
        src_kwargs = {}
    data_kwargs = {"name_or_path": s.dataset or src_kwargs.get("name_or_path")}
    if not data_kwargs["name_or_path"]:
        raise RunError("--dataset is required (or --from a run)")
    seed = s.seed if s.seed is not None else int(source_cfg.get("seed", 0))
    for key, value in (("image_column", s.image_column), ("label_column", s.label_column),
                       ("max_samples", s.max_samples), ("image_size", s.image_size)):
        data_kwargs[key] = value if value is not None else src_kwargs.get(key)
    data_kwargs["seed"] = s.data_seed if s.data_seed is not None else src_kwargs.get("seed", seed)
    for key, value in src_kwargs.items():  # val/test fractions, augmentation, config, ...
        data_kwargs.setdefault(key, value)

    recipe_name = s.recipe or (source_cfg.get("recipe") or {}).get("source") or "paper"
    if Path(recipe_name).is_file():
        recipe_name = str(Path(recipe_name).resolve())
    recipe = load_recipe(recipe_name)
    phase = phase_config(recipe, _PHASE[s.kind], epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                         round_to=s.round_to if s.kind == "prune" else None)
    return {
        "kind": s.kind, "arch": arch, "budget": budget, "seed": seed, "data_kwargs": data_kwargs,
        "recipe": {"name": recipe.get("name"), "source": recipe_name, "phase": phase},
        "weights_file": str(Path(weights).resolve()) if weights else None,
        "mask_file": str(Path(mask).resolve()) if mask else None,
        "source": {"run": str(Path(s.from_run).resolve()), "kind": source_cfg.get("kind")} if s.from_run else None,
        "workers": s.workers,
    }


#: ``RunSettings`` fields that may differ on ``--resume``: they change how a run executes, not what it computes
#: (``kind`` is checked on its own). Every other field is compared by :func:`resume_differences`.
RESUME_FREE = ("kind", "out", "resume", "device", "workers", "progress", "latency_repeats", "wait_for_lock", "argv")


def _same_path(a: Any, b: Any) -> bool:
    return a is not None and b is not None and Path(str(a)).resolve() == Path(str(b)).resolve()


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _run_values(cfg: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{RunSettings field: (the run's value, how to compare)}`` from a run's resolved configuration."""
    phase = (cfg.get("recipe") or {}).get("phase") or {}
    data = cfg.get("data_kwargs") or {}
    recipe = cfg.get("recipe") or {}
    return {
        "arch": (cfg.get("arch"), _same_value), "dataset": (data.get("name_or_path"), _same_value),
        "image_column": (data.get("image_column"), _same_value),
        "label_column": (data.get("label_column"), _same_value),
        "max_samples": (data.get("max_samples"), _same_value), "image_size": (data.get("image_size"), _same_value),
        "data_seed": (data.get("seed"), _same_value), "seed": (cfg.get("seed"), _same_value),
        "epochs": (phase.get("epochs"), _same_value), "batch_size": (phase.get("batch_size"), _same_value),
        "lr": (phase.get("lr"), _same_value), "round_to": (phase.get("round_to", 1), _same_value),
        "weights": (cfg.get("weights_file"), _same_path), "mask": (cfg.get("mask_file"), _same_path),
        "from_run": ((cfg.get("source") or {}).get("run"), _same_path),
        "budget": (cfg.get("budget"), lambda asked, had: str(Budget.parse(asked)) == had),
        "recipe": (recipe.get("source"), lambda asked, had: asked in (had, recipe.get("name")) or (
            Path(asked).is_file() and _same_path(asked, had))),
    }


def resume_differences(s: RunSettings, cfg: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The options given to a ``--resume`` that differ from the run's resolved configuration ``cfg``:
    ``{RunSettings field: (the run's value, the value asked for)}``. Options not given (``None``) never
    differ. Every option that changes what the run computes must match - ``--epochs`` included: the
    learning-rate and pruning schedules depend on the total number of epochs, so a longer run is a new run
    (docs/reliability.md). Only the fields in :data:`RESUME_FREE` may differ."""
    differences: dict[str, tuple[Any, Any]] = {}
    for name, (had, same) in _run_values(cfg).items():
        asked = getattr(s, name)
        if asked is not None and not same(asked, had):
            differences[name] = (had, asked)
    return differences


def _check_resume(run: R.Run, s: RunSettings, cfg: dict[str, Any]) -> None:
    differences = resume_differences(s, cfg)
    if differences:
        listed = "; ".join(f"{'--from' if k == 'from_run' else '--' + k.replace('_', '-')}: the run has {had!r}, "
                           f"asked {asked!r}" for k, (had, asked) in differences.items())
        raise ResumeMismatchError(
            f"cannot resume {run.path} with other options ({listed}). Resume with the run's own options (or "
            "none), or start a new run with another --out", run=str(run.path), differences=differences)


def _run_dir(s: RunSettings, cfg: dict[str, Any]) -> Path:
    if s.out:
        return Path(s.out)
    dataset = Path(str(cfg["data_kwargs"]["name_or_path"])).name
    slug = Budget.parse(cfg["budget"]).slug if cfg.get("budget") else None
    return R.default_run_dir(s.kind, cfg["arch"], dataset, slug)


# --- the entry point -----------------------------------------------------------------------------
def _is_rank0() -> bool:
    """The global main process (also before the process group exists: ``RANK`` is set by the launcher)."""
    return int(os.environ.get("RANK", "0")) == 0


def execute(s: RunSettings) -> dict[str, Any]:
    """Run (or resume) one ``train`` / ``prune`` / ``finetune`` run; returns its final metrics."""
    if s.kind == "eval":
        return evaluate_run(s)
    acc = make_accelerator(s.device)  # joins the process group first: every rank decides before anyone writes
    cfg = resolve(s) if not (s.resume and s.out and R.Run(s.out).exists()) else None
    run = R.Run(s.out if cfg is None else _run_dir(s, cfg))
    if not _is_rank0():  # the main process holds the folder for all ranks
        return _execute_unlocked(run, cfg, s, acc)
    with R.run_lock(run.path, wait=s.wait_for_lock):
        return _execute_unlocked(run, cfg, s, acc)


def _execute_unlocked(run: R.Run, cfg: dict[str, Any] | None, s: RunSettings, acc) -> dict[str, Any]:
    if run.exists():
        old = run.config()
        if s.resume and old.get("kind") == s.kind and isinstance(old.get("resolved"), dict):
            _check_resume(run, s, old["resolved"])
        if run.is_finished():
            if not s.resume:
                raise RunError(f"run folder {run.path} holds a finished {old.get('kind')} run; "
                               "choose another --out (or --resume to report it)")
            metrics = run.metrics() or {}
            if _is_rank0():
                print(f"run {run.path} already finished ({metrics.get('epochs_done')} epochs); nothing to do",
                      file=sys.stderr)
            return {**metrics, "already_finished": True}
        if not s.resume:
            raise RunError(f"run folder {run.path} holds an unfinished run; pass --resume to continue it, "
                           "or choose another --out")
        if old.get("kind") != s.kind:
            raise RunError(f"{run.path} is a {old.get('kind')!r} run, not a {s.kind!r} run")
        cfg, resuming = old["resolved"], True
    else:
        if cfg is None:
            cfg = resolve(s)
        resuming = False
    acc.wait_for_everyone()
    return _execute(run, cfg, s, resuming, acc)


def _execute(run: R.Run, cfg: dict[str, Any], s: RunSettings, resuming: bool, acc) -> dict[str, Any]:
    from accelerate.utils import set_seed

    from .data import load_data, make_loaders

    phase = cfg["recipe"]["phase"]
    set_seed(int(cfg["seed"]))
    bundle = load_data(**cfg["data_kwargs"])
    loaders = make_loaders(bundle, phase["batch_size"], num_workers=int(cfg.get("workers") or 0),
                           seed=int(cfg["seed"]), eval_batch_size=max(phase["batch_size"], 128))
    generators = {"train_loader": loaders.train.generator}
    if acc.is_main_process and not resuming:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config({
            "kind": cfg["kind"], "created": R.now(), "command": ["chipnet-zoo", *s.argv],
            "arch": cfg["arch"], "num_classes": bundle.num_classes, "in_chans": bundle.in_chans,
            "input_size": list(bundle.input_size), "budget": cfg["budget"], "seed": cfg["seed"],
            "dataset": bundle.describe(), "recipe": cfg["recipe"], "source": cfg["source"],
            "weights_file": cfg["weights_file"], "mask_file": cfg["mask_file"],
            "accelerate": describe_accelerator(acc), "versions": R.library_versions(), "resolved": cfg,
        })
    acc.wait_for_everyone()
    log(f"{'resuming' if resuming else 'starting'} {cfg['kind']} run {run.path} "
        f"({cfg['arch']} on {bundle.name}, {len(bundle.train)} train / {len(bundle.val)} val / "
        f"{len(bundle.test)} test, {acc.num_processes} process(es) on {acc.device})", acc)
    ckpt = run.checkpoint
    resume_state, resumed_from = None, 0
    if resuming and ckpt.exists():
        resumed_from, resume_state = ckpt.load()
        log(f"resuming from the epoch-{resumed_from} checkpoint", acc)
    elif resuming:
        log("no checkpoint yet: starting from the beginning", acc)

    def checkpoint(record: dict[str, Any], state_fn) -> None:
        epoch = int(record["epoch"])
        if acc.is_main_process:
            run.append_log(record)
        ckpt.path.mkdir(parents=True, exist_ok=True)
        ckpt.save_rng(epoch, acc.process_index, generators)
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.commit(epoch, state_fn(), acc.num_processes)
        acc.wait_for_everyone()

    def restore(history: list[dict[str, Any]]) -> None:
        from .checkpoint import set_rng_state

        rng = ckpt.load_rng(acc.process_index)
        if rng is not None:
            set_rng_state(rng, generators)
        if acc.is_main_process:
            run.write_log(history)
    if resume_state is None and acc.is_main_process:
        run.write_log([])  # a fresh start (also after a kill before the first checkpoint)

    start = time.perf_counter()
    kind = cfg["kind"]
    if kind == "prune":
        metrics = _prune(run, cfg, bundle, loaders, acc, s, resume_state, checkpoint, restore)
    else:
        metrics = _train(run, cfg, bundle, loaders, acc, s, resume_state, checkpoint, restore)
    metrics.update({"kind": kind, "run_dir": str(run.path), "finished": True,
                    "seconds_this_session": time.perf_counter() - start, "resumed_from_epoch": resumed_from,
                    "world_size": acc.num_processes})
    if acc.is_main_process:
        run.write_metrics(metrics)
        ckpt.remove()
        R.write_summary(metrics)
    acc.wait_for_everyone()
    return metrics


# --- train / finetune ----------------------------------------------------------------------------
def _mask_ratios(mask, model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """The mask's four hard ratios on this model at this input size."""
    from .cost import CostModel
    from .groups import build_channel_graph

    graph = build_channel_graph(model, x)
    mask.check_fits(graph.structure, arch=getattr(model, "arch_name", None))
    return CostModel(graph).hard_ratios(mask.keep_vector())


def _final_metrics(model: nn.Module, config_x: torch.Tensor, loaders, acc) -> dict[str, Any]:
    from .cost import measure_params_macs

    val_loader, test_loader = acc.prepare(loaders.val, loaders.test)
    val = evaluate(model, val_loader, acc)
    test = evaluate(model, test_loader, acc)
    cpu = _cpu_copy(model)
    params, macs = measure_params_macs(cpu, config_x)
    return {"val_accuracy": val["accuracy"], "val_loss": val["loss"], "test_accuracy": test["accuracy"],
            "test_loss": test["loss"], "params": int(params), "macs": int(macs)}


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    cpu = copy.deepcopy(model)
    for attr in ("forward", "_original_forward"):  # accelerate's autocast wrapper, if any
        cpu.__dict__.pop(attr, None)
    return cpu.to("cpu").float().to(memory_format=torch.contiguous_format)


def _train(run, cfg, bundle, loaders, acc, s, resume_state, checkpoint, restore) -> dict[str, Any]:
    from .mask import Mask

    phase = cfg["recipe"]["phase"]
    x = torch.zeros(1, *bundle.input_size)
    model = R.build_model({"arch": cfg["arch"], "num_classes": bundle.num_classes, "in_chans": bundle.in_chans})
    weights = cfg.get("weights_file")
    if weights:
        R.load_weights_into(model, R.load_state_dict_file(weights), weights)
    mask = ratios = None
    if cfg["kind"] == "finetune":
        mask = Mask.load(cfg["mask_file"])
        R.check_mask_arch(mask, cfg["arch"])
        if cfg.get("budget") and mask.budget is not None and Budget.parse(cfg["budget"]) != mask.budget:
            mask = mask.rethreshold(cfg["budget"], model=model, example_input=x)
            log(f"mask re-thresholded to {cfg['budget']}: ratios {mask.ratios}", acc)
        ratios = _mask_ratios(mask, model, x)
        model = mask.slim(model, x)
        if not weights:
            log("no --weights: the slimmed model is trained from scratch (random init)", acc)
    trainer = Trainer(model, loaders.train, loaders.val, phase, accelerator=acc, progress=s.progress,
                      desc=cfg["kind"])
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        restore(trainer.history)
    trainer.fit(callback=lambda record, t: checkpoint(record, t.state_dict))
    final = trainer.unwrapped
    metrics = _final_metrics(final, x, loaders, acc)
    metrics["rank_weights_sha256"] = trainer.rank_digests
    history = trainer.history
    metrics.update({
        "ratios": ratios or dict(ALL_ONES), "epochs_done": len(history),
        "best_epoch": trainer.best["epoch"] if trainer.best else None,
        "best_val_accuracy_during_training": trainer.best["val_accuracy"] if trainer.best else None,
        "train_seconds": sum(r["seconds"] for r in history),
    })
    if acc.is_main_process:
        state = _cpu_copy(final).state_dict()
        R.save_state_dict(run.file(R.WEIGHTS), state, arch=cfg["arch"], kind="slim" if mask else "dense",
                          num_classes=bundle.num_classes, input_size=list(bundle.input_size))
        if mask is not None:
            mask.with_metadata(metrics={**(mask.metadata.get("metrics") or {}),
                                        "finetuned_val_accuracy": metrics["val_accuracy"],
                                        "finetuned_test_accuracy": metrics["test_accuracy"]}).save(run.file(R.MASK))
            R.plot_kept_channels(mask, run.file(R.KEPT_PLOT))
        R.plot_curves(history, run.file(R.CURVES), f"{cfg['kind']} {cfg['arch']} on {bundle.name}")
    return metrics


# --- prune ---------------------------------------------------------------------------------------
def _prune(run, cfg, bundle, loaders, acc, s, resume_state, checkpoint, restore) -> dict[str, Any]:
    from .pruner import ChipNetPruner

    phase = cfg["recipe"]["phase"]
    model = R.build_model({"arch": cfg["arch"], "num_classes": bundle.num_classes, "in_chans": bundle.in_chans})
    R.load_weights_into(model, R.load_state_dict_file(cfg["weights_file"]), cfg["weights_file"])
    model = model.to(acc.device)
    if acc.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    x_dev = torch.zeros(1, *bundle.input_size, device=acc.device)
    kwargs = {key: float(phase[key]) for key in ("psi_travel", "min_keep", "floor") if phase.get(key) is not None}
    pruner = ChipNetPruner(model, cfg["budget"], example_input=x_dev, round_to=int(phase.get("round_to", 1)),
                           **kwargs)
    if resume_state is not None:
        pruner.load_state_dict(resume_state["pruner"])
        restore(pruner.history)
    history = pruner.fit(
        loaders.train, loaders.val, epochs=phase["epochs"], lr=phase["lr"], weight_decay=phase["weight_decay"],
        budget_weight=phase["budget_weight"], crispness_weight=phase["crispness_weight"], accelerator=acc,
        **{key: float(phase[key]) for key in ("harden", "budget_grad_power") if phase.get(key) is not None},
        callback=lambda record, p: checkpoint(record, lambda: {"pruner": p.state_dict()}), progress=s.progress)
    mask, digests = _agree_on_mask(pruner.mask(), acc)
    best = pruner.best or {}
    pruner.remove()
    plain = acc.unwrap_model(pruner.model, keep_fp32_wrapper=False)
    pruned_state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in plain.state_dict().items()}
    # the run's model: a fresh dense model with the pruned-phase weights, slimmed by the mask
    x = torch.zeros(1, *bundle.input_size)
    fresh = R.build_model({"arch": cfg["arch"], "num_classes": bundle.num_classes, "in_chans": bundle.in_chans})
    slim = mask.slim(R.load_weights_into(fresh, pruned_state, "(pruned phase)"), x).to(acc.device)
    metrics = _final_metrics(slim, x, loaders, acc)
    metrics.update({
        "ratios": mask.ratios, "epochs_done": len(history), "budget": cfg["budget"],
        "best_epoch": best.get("epoch"), "hard_val_accuracy_best_epoch": best.get("accuracy"),
        "kept_channels": int(mask.keep_vector().sum()), "total_channels": int(mask.keep_vector().numel()),
        "train_seconds": sum(r.get("seconds", 0.0) for r in history),
        "rank_mask_sha256": digests, "ranks_agreed": len(set(digests)) == 1,
    })
    mask = mask.with_metadata(
        dataset=bundle.name, num_classes=bundle.num_classes, input_size=list(bundle.input_size), method="chipnet",
        metrics={"val_accuracy": metrics["val_accuracy"], "test_accuracy": metrics["test_accuracy"],
                 "hard_val_accuracy": best.get("accuracy"), "best_epoch": best.get("epoch"), "phase": "pruned"},
        hparams={**(mask.metadata.get("hparams") or {}), "recipe": cfg["recipe"]["name"], "seed": cfg["seed"],
                 "batch_size": phase["batch_size"], "world_size": acc.num_processes})
    if acc.is_main_process:
        mask.save(run.file(R.MASK))
        R.save_state_dict(run.file(R.PRUNED_WEIGHTS), pruned_state, arch=cfg["arch"], kind="pruned-phase",
                          num_classes=bundle.num_classes, input_size=list(bundle.input_size))
        R.plot_kept_channels(mask, run.file(R.KEPT_PLOT))
        R.plot_curves(history, run.file(R.CURVES), f"prune {cfg['arch']} on {bundle.name} at {cfg['budget']}")
    return metrics


def _mask_digest(mask) -> str:
    return tensors_digest({**{f"k/{n}": v for n, v in mask.keep.items()},
                           **{f"s/{n}": v for n, v in mask.scores.items()}})


def _agree_on_mask(mask, acc):
    """Verify every rank learned the same mask; if not, adopt rank 0's (and say so).
    Returns the mask and every rank's digest of its own mask (before any correction)."""
    digests = gather_strings(_mask_digest(mask), acc)
    if len(set(digests)) == 1:
        return mask, digests
    import torch.distributed as dist

    from .mask import Mask

    log(f"warning: ranks ended with different masks ({digests}); using rank 0's", acc)
    keep = {n: v.to(acc.device, torch.uint8) for n, v in mask.keep.items()}
    scores = {n: v.to(acc.device) for n, v in mask.scores.items()}
    for t in [*keep.values(), *scores.values()]:
        dist.broadcast(t, src=0)
    agreed = Mask({n: v.cpu().bool() for n, v in keep.items()}, {n: v.cpu() for n, v in scores.items()},
                  mask.metadata)
    return agreed, digests


# --- eval ----------------------------------------------------------------------------------------
def evaluate_run(s: RunSettings) -> dict[str, Any]:
    """Accuracy (val/test), the four ratios, params, MACs and CPU latency of a run's model."""
    from .cost import measure_params_macs
    from .data import load_data, make_loaders
    from .mask import Mask

    if not s.from_run:
        raise RunError("eval needs --from RUN")
    source, config = R.open_source_run(s.from_run, R.RUN_KINDS)
    model = R.load_run_model(source.path)
    data_kwargs = dict(config["dataset"]["load_kwargs"])
    if s.dataset is not None and s.dataset != data_kwargs.get("name_or_path"):
        data_kwargs = {"name_or_path": s.dataset, "seed": data_kwargs.get("seed", 0)}
    for key, value in (("image_column", s.image_column), ("label_column", s.label_column),
                       ("max_samples", s.max_samples)):
        if value is not None:
            data_kwargs[key] = value
    bundle = load_data(**data_kwargs)
    if bundle.num_classes != int(config["num_classes"]):
        raise RunError(f"dataset {bundle.name!r} has {bundle.num_classes} classes, the run's model "
                       f"{config['num_classes']}")
    loaders = make_loaders(bundle, s.batch_size or 256, seed=0)
    device = "cuda" if s.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    model = model.to(device)
    val, test = evaluate(model, loaders.val), evaluate(model, loaders.test)
    x = torch.zeros(1, *config["input_size"])
    cpu = model.to("cpu")
    params, macs = measure_params_macs(cpu, x)
    if config["kind"] == "train":
        ratios = dict(ALL_ONES)
    else:
        ratios = _mask_ratios(Mask.load(source.file(R.MASK)), R.build_model(config), x)
    latency = measure_latency(cpu, config["input_size"], (64, 1), repeats=s.latency_repeats)
    src_metrics = source.metrics() or {}
    metrics = {
        "kind": "eval", "source_run": str(source.path), "source_kind": config["kind"], "arch": config["arch"],
        "dataset": bundle.name, "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
        "val_loss": val["loss"], "test_loss": test["loss"], "ratios": ratios, "params": int(params),
        "macs": int(macs), "latency_cpu": latency, "epochs_done": src_metrics.get("epochs_done"),
        "budget": config.get("budget"), "versions": R.library_versions(), "created": R.now(),
    }
    if s.out:
        out = R.Run(s.out)
        out.path.mkdir(parents=True, exist_ok=True)
        out.write_config({"kind": "eval", "created": R.now(), "command": ["chipnet-zoo", *s.argv],
                          "settings": asdict(s), "source": str(source.path), "data_kwargs": data_kwargs})
        out.write_metrics(metrics)
    else:
        from .checkpoint import atomic_write_json

        atomic_write_json(source.file("eval.json"), metrics)
    R.write_summary(metrics)
    lat = ", ".join(f"batch {b}: {latency[f'batch_{b}_ms']:.2f} ms" for b in (64, 1))
    print(f"  CPU latency (median of {s.latency_repeats}, {latency['threads']} threads): {lat}", file=sys.stderr)
    return metrics
