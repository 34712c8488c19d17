"""Mask transfer (docs/architecture.md, "Transfer"): a mask learned on a teacher dataset, used on a student dataset.

Protocols:

* ``scratch`` (the paper's): a freshly initialised student of the mask's architecture with the
  student's class count and input channels; the teacher's scores re-thresholded at the budget on the
  student's model and input size; slimmed; trained from scratch with the fine-tune recipe.
* ``finetune``: a dense model trained on the student (or ``dense_weights``); the same re-thresholded
  mask applied and slimmed; fine-tuned.

The result is an ordinary ``finetune`` run folder (``config.json``, ``metrics.json``, ``weights.safetensors``,
``mask.safetensors`` with ``method=transfer:<origin>``), plus a ``transfer`` section in both JSON files.

    >>> import chipnet_zoo as cz
    >>> metrics = cz.transfer("resnet8/animal-mnist/flops-0.125", "mnist5k", protocol="scratch",
    ...                       training=cz.StudentTraining(recipe="cpu", epochs=10), out="runs/transfer-demo")  # doctest: +SKIP
    >>> metrics["test_accuracy"], metrics["ratios"]["flops"]                            # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .budget import Budget
from .errors import RunError
from .mask import Mask

PROTOCOLS = ("scratch", "finetune")
STUDENT_MASK = "student_mask.safetensors"
TEACHER_MASK = "teacher_mask.safetensors"


def resolve_mask(mask: Mask | str | os.PathLike, registry: Any = None) -> tuple[Mask, str]:
    """A :class:`Mask` and a short origin string from a Mask, a mask file, or a registry key.

    A key is looked up in ``registry`` (a :class:`~chipnet_zoo.registry.MaskRegistry` or location), else in
    the default registry and then the zoo shipped with the package.
    """
    if isinstance(mask, Mask):
        return mask, _origin(mask) or "mask"
    text = os.fspath(mask)
    path = Path(text)
    if path.is_file():
        return Mask.load(path), path.name
    if text.endswith(".safetensors"):
        raise FileNotFoundError(f"mask file not found: {text}")
    from .registry import MaskRegistry, canonical_key

    if registry is not None:
        reg = registry if isinstance(registry, MaskRegistry) else MaskRegistry(registry)
        pulled = reg.pull(text)
    else:
        pulled = _pull_default(text)
    return pulled, _origin(pulled) or canonical_key(text)  # the key it was found under (a latency key's machine)


def _origin(mask: Mask) -> str | None:
    """The registry key ``mask`` is (or would be) published under, if its metadata names one."""
    from .errors import InvalidKeyError
    from .registry import key_for

    try:
        return key_for(mask.meta) if mask.meta.dataset and mask.meta.budget is not None else None
    except InvalidKeyError:
        return None


def _pull_default(key: str) -> Mask:
    """Pull ``key`` from the default registry, falling back to the shipped zoo."""
    from .registry import MaskRegistry

    return MaskRegistry().pull(key)  # the default registry falls back to the shipped zoo itself


def student_mask(mask: Mask, student: torch.nn.Module, *, example_input: torch.Tensor,
                 budget: Budget | str | None = None, origin: str = "mask", **metadata: Any) -> Mask:
    """The teacher's scores re-thresholded at ``budget`` (default: the teacher's) on ``student``.

    A latency budget is met against a latency table of ``student`` at ``example_input`` measured on this
    machine (read from the cache when it was measured before): the teacher's table belongs to its own
    machine and input size.

    Raises:
        MaskMismatchError: the mask was learned on another architecture (or does not fit ``student``).
    """
    mask.check_arch(getattr(student, "arch_name", None), "student")
    budget = Budget.parse(budget) if budget is not None else mask.budget
    if budget is None:
        raise RunError("the mask records no budget; pass budget= (e.g. 'flops:0.125')")
    table = None
    if budget.kind == "latency":  # the student's speed on this machine, at its own input size (cached)
        from .latency import build_latency_table

        table = build_latency_table(student, example_input)
    out = mask.rethreshold(budget, model=student, example_input=example_input, latency_table=table)
    teacher = {k: mask.metadata.get(k) for k in ("arch", "dataset", "num_classes", "input_size", "budget_type",
                                                 "budget", "ratios", "method", "metrics")}
    return out.with_metadata(method=f"transfer:{origin}", metrics={},
                             hparams={"teacher": teacher, "origin": origin}, **metadata)


@dataclass(frozen=True)
class StudentTraining:
    """How a transferred student is trained.

    ``recipe`` (a shipped name or a YAML file) gives the fine-tune phase, ``epochs``/``batch_size``/``lr``
    override it; ``seed`` is the run's seed, ``data_seed`` the data split's (default: ``seed``),
    ``max_samples`` a training subset (val/test shrink in proportion), ``train_samples`` a training subset
    with val and test whole (a data-poor student); ``dense_epochs``: the ``finetune`` protocol's dense student training
    (when no dense weights are given).

    Example:
        >>> StudentTraining(recipe="tiny", epochs=1).seed
        0
    """

    recipe: str = "cpu"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    data_seed: int | None = None
    max_samples: int | None = None
    train_samples: int | None = None
    dense_epochs: int | None = None

    @property
    def split_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed


def transfer(mask: Mask | str | os.PathLike, student_dataset: str, *, protocol: str = "scratch",
             budget: Budget | str | None = None, arch: str | None = None,
             training: StudentTraining | None = None, out: str | os.PathLike | None = None,
             dense_weights: str | os.PathLike | None = None, registry: Any = None, push_to: Any = None,
             overwrite: bool = False, device: str = "auto", progress: bool = True,
             argv: list[str] | None = None) -> dict[str, Any]:
    """Transfer a (teacher) mask to ``student_dataset`` and train the student; returns its metrics.

    Args:
        mask: a :class:`Mask`, a mask file, or a registry key (looked up in ``registry``, else the default
            registry, else the shipped zoo).
        student_dataset: anything ``load_data`` accepts (``mnist5k``, a Hub id, a local folder).
        protocol: ``scratch`` (the paper's) or ``finetune`` (see the module docstring).
        budget: the student's budget (default: the teacher's), counted on the student's model and input size.
        arch: the expected architecture; a mask for another one is refused (``MaskMismatchError``).
        training: how the student is trained (:class:`StudentTraining`; default: the ``cpu`` recipe, seed 0).
        out: the run folder (default ``runs/transfer-<arch>-<student>-<budget>-<protocol>``). A finished
            run there is reported, not redone; an unfinished one is resumed.
        dense_weights: ``finetune`` only: a dense student weights file or a finished ``train`` run folder;
            default: train one into ``<out>/dense`` (``training.dense_epochs`` epochs of the train phase).
        registry: where a mask key is looked up.
        push_to, overwrite: a registry (object or location) to push the student's mask and slim weights to;
            ``overwrite`` replaces a different mask at the key.
        device, progress, argv: where to run, progress bars, the command line recorded in ``config.json``.

    Example:
        >>> import chipnet_zoo as cz
        >>> m = cz.transfer("resnet8/animal-mnist/flops-0.125", "mnist5k",
        ...                 training=cz.StudentTraining(recipe="tiny", max_samples=200))   # doctest: +SKIP
        >>> m["transfer"]["protocol"], m["ratios"]["flops"] <= 0.125                      # doctest: +SKIP
        ('scratch', True)
    """
    from .data import load_data
    from .models import create_model
    from .runs import Run, RunRequest, execute
    from .runs.folder import MASK, WEIGHTS

    if protocol not in PROTOCOLS:
        raise RunError(f"unknown transfer protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    teacher, origin = resolve_mask(mask, registry)
    teacher.check_arch(arch)
    t = training or StudentTraining()
    bundle = load_data(student_dataset, seed=t.split_seed, max_samples=t.max_samples,
                       train_samples=t.train_samples, progress=False)
    student = create_model(teacher.arch, num_classes=bundle.num_classes, in_chans=bundle.in_chans)
    x = torch.zeros(1, *bundle.input_size)
    smask = student_mask(teacher, student, example_input=x, budget=budget, origin=origin, dataset=bundle.name,
                         num_classes=bundle.num_classes)
    the_budget = smask.budget
    if out is None:
        from .runs.folder import default_run_dir

        base = default_run_dir("transfer", teacher.arch, bundle.name, the_budget.slug)
        out = base.with_name(f"{base.name}-{protocol}")
    out = Path(out)
    run = Run(out)
    out.mkdir(parents=True, exist_ok=True)
    smask.save(out / STUDENT_MASK)
    teacher.save(out / TEACHER_MASK)

    weights = None
    dense_info: dict[str, Any] | None = None
    if protocol == "finetune":
        if dense_weights is not None:
            dpath = Path(dense_weights)
            weights = dpath / WEIGHTS if dpath.is_dir() else dpath
            if not weights.is_file():
                raise RunError(f"dense weights not found: {weights}")
            dense_info = {"weights": str(weights)}
        else:
            dense_run = out / "dense"
            dm = execute(RunRequest("train", out=str(dense_run), arch=teacher.arch, dataset=student_dataset,
                                    max_samples=t.max_samples, train_samples=t.train_samples,
                                    data_seed=t.split_seed, epochs=t.dense_epochs,
                                    batch_size=t.batch_size, seed=t.seed, recipe=t.recipe, resume=True,
                                    device=device, progress=progress))
            weights = dense_run / WEIGHTS
            dense_info = {"run": str(dense_run), "val_accuracy": dm.get("val_accuracy"),
                          "test_accuracy": dm.get("test_accuracy")}
    metrics = execute(RunRequest("finetune", out=str(out), arch=teacher.arch, dataset=student_dataset,
                                 max_samples=t.max_samples, train_samples=t.train_samples,
                                 data_seed=t.split_seed, budget=the_budget,
                                 epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, seed=t.seed, recipe=t.recipe,
                                 weights=str(weights) if weights else None, mask=str(out / STUDENT_MASK),
                                 resume=True, device=device, progress=progress, argv=list(argv or [])))
    info = {"protocol": protocol, "origin": origin, "method": f"transfer:{origin}",
            "teacher_dataset": teacher.metadata.get("dataset"), "teacher_budget": str(teacher.budget),
            "teacher_ratios": teacher.ratios, "teacher_input_size": teacher.metadata.get("input_size"),
            "teacher_num_classes": teacher.metadata.get("num_classes"), "student_dataset": bundle.name,
            "budget": str(the_budget), "dense": dense_info}
    metrics = {k: v for k, v in metrics.items() if k != "already_finished"}
    metrics["transfer"] = info
    metrics["mask_origin"] = origin
    config = run.config()
    config["transfer"] = info
    run.write_config(config)
    run.write_metrics(metrics)
    if push_to is not None:
        from .registry import MaskRegistry

        reg = push_to if isinstance(push_to, MaskRegistry) else MaskRegistry(push_to)
        entry = reg.push(run.file(MASK), weights=run.file(WEIGHTS), weights_as="slim",
                         overwrite=overwrite,
                         metrics={"val_accuracy": metrics["val_accuracy"],
                                  "test_accuracy": metrics["test_accuracy"]})
        metrics["pushed"] = {"registry": reg.location, "key": entry.key}
        run.write_metrics(metrics)
        print(f"pushed {entry.key} to {reg.location}", file=sys.stderr)
    return metrics
