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

    def __init__(self, kind: str, target: float, smallest: float, round_to: int | str = 1, min_keep: float = 0.0,
                 tied: bool = False):
        self.kind, self.target, self.smallest = kind, target, smallest
        if str(round_to) == "1":
            keeps = "at least one channel"
        elif str(round_to).isdigit():
            keeps = f"at least {round_to} channels (round_to)"
        else:  # per-group block sizes (round_to="auto")
            keeps = "at least its narrowest allowed width (per-group widths, e.g. round_to='auto')"
        if min_keep:
            keeps += f" and at least {min_keep:g} of its channels (min_keep)"
        if tied:
            keeps += ", groups around grouped convolutions one unit of channels across the conv groups"
        super().__init__(
            f"{kind} budget {target:g} is unreachable: the smallest achievable {kind} ratio for this "
            f"model is {smallest:.6g} (every channel group keeps {keeps})"
        )


class LatencyTableError(BudgetError):
    """A latency budget without a usable latency table: none given and none measurable (e.g. a model on the
    ``meta`` device), or a table measured for another model, input size or layer list."""


class LatencyKeyWarning(UserWarning):
    """A latency mask used on a machine (device, threads, torch version) other than the one its latency
    table was measured on: its predicted speed-up may not hold here."""


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
    """A mask applied to a model whose channel groups do not match it (``group``: the first group that
    differs, when one does; ``arch``: the model's architecture, when that is what differs)."""

    def __init__(self, message: str, *, group: str | None = None, arch: str | None = None):
        super().__init__(message)
        self.group, self.arch = group, arch


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
    """Base class of registry errors (``registry``: the folder or ``hf://`` location, when known)."""

    def __init__(self, message: str, *, registry: str | None = None):
        super().__init__(message)
        self.registry = registry


class InvalidKeyError(RegistryError, ValueError):
    """A registry key (or an architecture, dataset or budget part of one) that is malformed or unsafe
    (``key``: the key or part as given; ``None`` when none was given)."""

    def __init__(self, message: str, *, key: object = None, registry: str | None = None):
        super().__init__(message, registry=registry)
        self.key = key


class AmbiguousKeyError(InvalidKeyError):
    """A latency key without a machine tag where the registry holds that budget for several machines
    (``candidates``: their full keys)."""

    def __init__(self, message: str, *, key: str | None = None, registry: str | None = None,
                 candidates: list[str] | None = None):
        super().__init__(message, key=key, registry=registry)
        self.candidates = list(candidates or [])


class InvalidLocationError(RegistryError, ValueError):
    """A registry location that is not a folder or ``hf://<owner>/<repo>[@<revision>]`` (``location``)."""

    def __init__(self, message: str, *, location: str, registry: str | None = None):
        super().__init__(message, registry=registry)
        self.location = location


class InvalidRepoIdError(InvalidLocationError):
    """A Hub repo id (or revision) that is malformed (``repo_id``; ``revision`` when that is at fault)."""

    def __init__(self, message: str, *, repo_id: str, revision: str | None = None):
        super().__init__(message, location=f"hf://{repo_id}" + (f"@{revision}" if revision else ""))
        self.repo_id, self.revision = repo_id, revision


class UnsafePathError(RegistryError, ValueError):
    """A file path that would leave the registry folder (``path``)."""

    def __init__(self, message: str, *, path: str, registry: str | None = None):
        super().__init__(message, registry=registry)
        self.path = path


class MetadataMissingError(RegistryError, ValueError):
    """A mask pushed without the metadata its key needs (``field``: ``arch``, ``dataset``, ``budget``)."""

    def __init__(self, message: str, *, field: str, registry: str | None = None):
        super().__init__(message, registry=registry)
        self.field = field


class ReadOnlyRegistryError(RegistryError, PermissionError):
    """A write to a read-only registry (the zoo shipped inside the package)."""


class EntryNotFoundError(RegistryError, FileNotFoundError):
    """A key that the registry does not hold, or a file its index lists that is missing
    (``key``, ``registry``; ``path``: the missing file, when it is a file)."""

    def __init__(self, message: str, *, key: str | None = None, registry: str | None = None,
                 path: str | None = None):
        super().__init__(message, registry=registry)
        self.key, self.path = key, path


class WeightsNotFoundError(EntryNotFoundError):
    """An entry that holds no weights (``pull_model`` needs them)."""


class EntryExistsError(RegistryError, FileExistsError):
    """A push to a key that already holds a different file (pass ``overwrite=True`` to replace it;
    ``key``, ``registry``, ``path``: the file that differs)."""

    def __init__(self, message: str, *, key: str, registry: str | None = None, path: str | None = None):
        super().__init__(message, registry=registry)
        self.key, self.path = key, path


class RegistryNotFoundError(RegistryError, FileNotFoundError):
    """A registry location (folder or Hub repo) that does not exist (``registry``; ``repo_id`` and
    ``revision`` for a Hub repo)."""

    def __init__(self, message: str, *, registry: str, repo_id: str | None = None, revision: str | None = None):
        super().__init__(message, registry=registry)
        self.repo_id, self.revision = repo_id, revision


class IntegrityError(RegistryError, OSError):
    """A registry file whose sha256 does not match the index, or a corrupt index (``path``: the file;
    ``expected``/``actual``: the sha256 values, for a mismatch)."""

    def __init__(self, message: str, *, path: str | None = None, expected: str | None = None,
                 actual: str | None = None, registry: str | None = None):
        super().__init__(message, registry=registry)
        self.path, self.expected, self.actual = path, expected, actual


class IndexFormatError(IntegrityError):
    """An ``index.json`` that breaks the schema (``where``: the file, ``field``: the offending field)."""

    def __init__(self, message: str, *, where: str, field: str | None = None):
        super().__init__(message, path=where)
        self.where, self.field = where, field


class BudgetExceededError(RegistryError, ValueError):
    """A push whose mask's true (recomputed) ratio is above the budget it would be published under."""

    def __init__(self, message: str, *, key: str, kind: str, ratio: float, budget: float):
        super().__init__(message)
        self.key, self.kind, self.ratio, self.budget = key, kind, ratio, budget


class RegistryWriteError(RegistryError, OSError):
    """A registry write that failed on the file system (disk full, permissions); nothing was published."""

    def __init__(self, message: str, *, path: str, registry: str | None = None):
        super().__init__(message, registry=registry)
        self.path = path


class RegistryLockError(RegistryError, TimeoutError):
    """Timed out waiting for the lock of a local registry (``registry``, ``timeout`` in seconds)."""

    def __init__(self, message: str, *, registry: str, timeout: float):
        super().__init__(message, registry=registry)
        self.timeout = timeout


class HubServerError(RegistryError, ConnectionError):
    """The Hub answered with an error status (``status``; ``answer``: the first line of its body;
    ``repo_id``: the repo asked)."""

    def __init__(self, message: str, *, status: int | None, answer: str = "", repo_id: str | None = None,
                 registry: str | None = None):
        super().__init__(message, registry=registry)
        self.status, self.answer, self.repo_id = status, answer, repo_id


class OutputPathError(ChipNetZooError, ValueError):
    """An output path that cannot be written as asked (e.g. ``pull --out`` naming a directory)."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path


class RunError(ChipNetZooError, RuntimeError):
    """A training/pruning run that cannot start or continue (missing weights, bad run folder)."""


class WeightsMismatchError(MaskMismatchError, RunError):
    """Weights whose tensor names or shapes do not fit the model they are loaded into (``source``: where
    they came from; ``missing``, ``unexpected``, ``shapes``: the tensors at fault)."""

    def __init__(self, message: str, *, source: str, missing: list[str] | None = None,
                 unexpected: list[str] | None = None, shapes: list[str] | None = None, arch: str | None = None):
        super().__init__(message, arch=arch)
        self.source = source
        self.missing, self.unexpected, self.shapes = list(missing or []), list(unexpected or []), list(shapes or [])


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
