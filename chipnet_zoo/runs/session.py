"""The state a phase works on: :class:`RunSession` (the run's folder, resolved options, data, accelerator and
resume state) and :func:`log`. :mod:`.execute` builds it; the phases (:mod:`.train`, :mod:`.prune`,
:mod:`.finetune`) take only it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .folder import Run
from .options import RunOptions

if TYPE_CHECKING:  # pragma: no cover
    from ..data import DataBundle, Loaders


def log(msg: str, accelerator=None) -> None:
    """A progress line on stderr, from the main process only."""
    if accelerator is None or accelerator.is_main_process:
        print(msg, file=sys.stderr, flush=True)


@dataclass
class RunSession:
    """A run being executed: its folder, resolved options, data, accelerator and (on resume) the
    checkpointed phase state. The phases (:func:`.train.train_phase`, :func:`.prune.prune_phase`) take
    only this."""

    run: Run
    options: RunOptions
    bundle: DataBundle
    loaders: Loaders
    accelerator: Any
    progress: bool = True
    resume_state: dict[str, Any] | None = None

    @property
    def generators(self) -> dict[str, torch.Generator]:
        return {"train_loader": self.loaders.train.generator}

    @property
    def phase(self) -> dict[str, Any]:
        return self.options.phase

    def example_input(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(1, *self.bundle.input_size, device=device)

    def new_model(self) -> nn.Module:
        """A freshly initialised dense model of the run's architecture, class count and input channels."""
        from .weights import build_model

        return build_model({"arch": self.options.arch, "num_classes": self.bundle.num_classes,
                            "in_chans": self.bundle.in_chans})

    def save_epoch(self, record: Mapping[str, Any], state_fn: Callable[[], Any]) -> None:
        self.run.save_epoch(record, state_fn, self.accelerator, self.generators)

    def restore_epoch(self, history: list[Mapping[str, Any]]) -> None:
        self.run.restore_epoch(history, self.accelerator, self.generators)

    def log(self, msg: str) -> None:
        log(msg, self.accelerator)
