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

    def __init__(self, kind: str, target: float, smallest: float, round_to: int = 1, min_keep: float = 0.0):
        self.kind, self.target, self.smallest = kind, target, smallest
        keeps = "at least one channel" if round_to == 1 else f"at least {round_to} channels (round_to)"
        if min_keep:
            keeps += f" and at least {min_keep:g} of its channels (min_keep)"
        super().__init__(
            f"{kind} budget {target:g} is unreachable: the smallest achievable {kind} ratio for this "
            f"model is {smallest:.6g} (every channel group keeps {keeps})"
        )


# --- models and masks ----------------------------------------------------------------------------
class UnknownModelError(ChipNetZooError, ValueError):
    """An architecture name that is not registered."""


class UnsupportedModelError(ChipNetZooError, ValueError):
    """A model that chipnet-zoo cannot prune exactly (e.g. channel shuffle, grouped convs)."""


class MaskMismatchError(ChipNetZooError, ValueError):
    """A mask applied to a model whose channel groups do not match it."""


class MaskFormatError(ChipNetZooError, ValueError):
    """A mask file that is corrupt, truncated, or of an unknown format version."""


# --- data ----------------------------------------------------------------------------------------
class DatasetError(ChipNetZooError, ValueError):
    """A dataset that cannot be found or has no usable image/label columns."""


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


class RunError(ChipNetZooError, RuntimeError):
    """A training/pruning run that cannot start or continue (missing weights, bad run folder)."""
