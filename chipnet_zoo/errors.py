"""Every exception chipnet-zoo raises on purpose.

Each class also derives from the builtin that fits it, so ``except ValueError`` or
``except FileNotFoundError`` in user code keeps working.
"""

from __future__ import annotations


class ChipNetZooError(Exception):
    """Base class of all chipnet-zoo errors."""


# --- budgets -------------------------------------------------------------------------------------
class BudgetError(ChipNetZooError, ValueError):
    """A budget that is malformed (unknown kind, value outside (0, 1])."""


class UnreachableBudgetError(BudgetError):
    """The target is below the smallest ratio the model can reach (every group keeps >= 1 channel)."""

    def __init__(self, kind: str, target: float, smallest: float, round_to: int = 1, min_keep: float = 0.0,
                 tied: bool = False):
        self.kind, self.target, self.smallest = kind, target, smallest
        keeps = "at least one channel" if round_to == 1 else f"at least {round_to} channels (round_to)"
        if min_keep:
            keeps += f" and at least {min_keep:g} of its channels (min_keep)"
        if tied:
            keeps += ", groups around grouped convolutions one unit of channels across the conv groups"
        super().__init__(
            f"{kind} budget {target:g} is unreachable: the smallest achievable {kind} ratio for this "
            f"model is {smallest:.6g} (every channel group keeps {keeps})"
        )


# --- models and masks ----------------------------------------------------------------------------
class UnknownModelError(ChipNetZooError, ValueError):
    """An architecture name that is not registered."""


class UnsupportedModelError(ChipNetZooError, ValueError):
    """A model that chipnet-zoo cannot prune exactly (e.g. channel shuffle, LayerNorm over channels)."""


class UnsupportedLayerError(UnsupportedModelError):
    """One layer (or operation) of the model that cannot be pruned exactly.

    Attributes:
        layer: qualified name of the layer (for an unnamed operation: the nearest named layer feeding it).
        reason: why that layer cannot be pruned exactly.
    """

    def __init__(self, layer: str, reason: str):
        self.layer, self.reason = layer, reason
        super().__init__(f"layer {layer!r}: {reason}")


class InexactModelError(UnsupportedLayerError):
    """The masked and the slimmed model disagree (outputs or counts), or the slimmed model fails.

    Raised by the exactness check that :class:`~chipnet_zoo.ChipNetPruner` runs at construction and
    :func:`~chipnet_zoo.slim.slim_model` runs before it returns. ``layer`` is the first layer whose kept
    outputs differ (or where the slimmed model fails); ``max_abs_diff`` the largest output difference
    (``nan`` when it failed or the counts differ).
    """

    def __init__(self, layer: str, reason: str, max_abs_diff: float = float("nan")):
        self.max_abs_diff = max_abs_diff
        super().__init__(layer, reason)


class MaskMismatchError(ChipNetZooError, ValueError):
    """A mask applied to a model whose channel groups do not match it."""


class MaskFormatError(ChipNetZooError, ValueError):
    """A mask file that is corrupt, truncated, of an unknown format version, or whose contents are invalid
    (``field``: the tensor or metadata key at fault, when there is one)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class MaskContentError(MaskFormatError):
    """A mask whose tensors or metadata disagree with its architecture (structure, recomputed ratios)."""


# --- data ----------------------------------------------------------------------------------------
class DatasetError(ChipNetZooError, ValueError):
    """A dataset that cannot be found or has no usable image/label columns."""


class UnknownDatasetError(DatasetError):
    """A dataset name that is neither a named dataset, a local path nor a possible Hub id."""

    def __init__(self, message: str, *, name: str, suggestions: list[str] | None = None):
        super().__init__(message)
        self.name, self.suggestions = name, list(suggestions or [])


# --- registry ------------------------------------------------------------------------------------
class RegistryError(ChipNetZooError):
    """Base class of registry errors."""


class InvalidKeyError(RegistryError, ValueError):
    """A registry key, name or repo id that is malformed or unsafe (path traversal, ...)."""


class EntryNotFoundError(RegistryError, FileNotFoundError):
    """A key that the registry does not hold."""


class EntryExistsError(RegistryError, FileExistsError):
    """A push to a key that already holds a different file (pass ``overwrite=True`` to replace it)."""


class RegistryNotFoundError(RegistryError, FileNotFoundError):
    """A registry location (folder or Hub repo) that does not exist."""


class IntegrityError(RegistryError, OSError):
    """A registry file whose sha256 does not match the index, or a corrupt index."""


class IndexFormatError(IntegrityError):
    """An ``index.json`` that breaks the schema (``where``: the file, ``field``: the offending field)."""

    def __init__(self, message: str, *, where: str, field: str | None = None):
        super().__init__(message)
        self.where, self.field = where, field


class BudgetExceededError(RegistryError, ValueError):
    """A push whose mask's true (recomputed) ratio is above the budget it would be published under."""

    def __init__(self, message: str, *, key: str, kind: str, ratio: float, budget: float):
        super().__init__(message)
        self.key, self.kind, self.ratio, self.budget = key, kind, ratio, budget


class RegistryWriteError(RegistryError, OSError):
    """A registry write that failed on the file system (disk full, permissions); nothing was published."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


class HubServerError(RegistryError, ConnectionError):
    """The Hub answered with an error status (``status``; ``answer``: the first line of its body)."""

    def __init__(self, message: str, *, status: int | None, answer: str = ""):
        super().__init__(message)
        self.status, self.answer = status, answer


class OutputPathError(ChipNetZooError, ValueError):
    """An output path that cannot be written as asked (e.g. ``pull --out`` naming a directory)."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


class RunError(ChipNetZooError, RuntimeError):
    """A training/pruning run that cannot start or continue (missing weights, bad run folder)."""


class ResumeMismatchError(RunError):
    """``--resume`` with options that differ from the run's own (``differences``: option -> (run, asked))."""

    def __init__(self, message: str, *, run: str, differences: dict[str, tuple[object, object]]):
        super().__init__(message)
        self.run, self.differences = run, dict(differences)


class CheckpointError(RunError):
    """A checkpoint file that is truncated or corrupt (``path``)."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path
