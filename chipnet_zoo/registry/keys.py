"""Registry keys and the paths they map to (the bottom layer of the registry: no I/O).

A key is ``<arch>/<dataset>/<budget_type>-<budget>``, the budget written with ``format(v, "g")``
(``resnet56/cifar100/flops-0.1``). Every path segment is ``[A-Za-z0-9._-]``, starts with a letter, digit
or ``_``, and holds no ``..`` or ``--``. A ``/`` inside an architecture or dataset name (torchvision's
``tv/resnet50``, a Hub dataset id ``uoft-cs/cifar10``) is written ``--`` in keys and paths
(``tv--resnet50/cifar10/flops-0.25``); the encoding is reversible because ``--`` is not allowed in a
segment. ``tv/resnet50/cifar10/flops-0.25`` is accepted too (extra leading segments belong to the
architecture).
"""

from __future__ import annotations

import re

from ..budget import BUDGET_KINDS, Budget
from ..errors import InvalidKeyError

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
MAX_KEY_LENGTH = 200


def _check_segment(segment: str, what: str) -> str:
    if (not isinstance(segment, str) or not _SEGMENT.fullmatch(segment) or ".." in segment
            or "--" in segment or segment.endswith("-")):
        raise InvalidKeyError(
            f"invalid {what} {segment!r}: use letters, digits, '.', '_' and '-' (starting with a letter, digit "
            "or '_', no '..' or '--', no trailing '-')", key=segment)
    return segment


def encode_name(name: str, what: str = "name") -> str:
    """Encode an architecture or dataset name as one path segment: ``tv/resnet50`` -> ``tv--resnet50``."""
    if not isinstance(name, str) or not name:
        raise InvalidKeyError(f"{what} must be a non-empty string, got {name!r}", key=name)
    if "\\" in name or name.startswith("/") or name.endswith("/"):
        raise InvalidKeyError(f"invalid {what} {name!r}: no backslashes, leading or trailing '/'", key=name)
    return "--".join(_check_segment(part, what) for part in name.split("/"))


def decode_name(segment: str, what: str = "name") -> str:
    """Inverse of :func:`encode_name`: ``tv--resnet50`` -> ``tv/resnet50``."""
    return "/".join(_check_segment(part, what) for part in segment.split("--"))


def make_key(*, arch: str, dataset: str, budget: Budget | str) -> str:
    """The canonical key of ``arch`` on ``dataset`` at ``budget`` (a ``Budget`` or ``"kind:value"``).

    Example:
        >>> make_key(arch="tv/resnet50", dataset="cifar10", budget="flops:0.25")
        'tv--resnet50/cifar10/flops-0.25'
        >>> make_key(arch="resnet8", dataset="cifar10", budget=Budget("params", 0.5))
        'resnet8/cifar10/params-0.5'
    """
    b = Budget.parse(budget)
    return f"{encode_name(arch, 'architecture')}/{encode_name(dataset, 'dataset')}/{b.slug}"


def parse_key(key: str) -> tuple[str, str, Budget]:
    """``"tv--resnet50/cifar10/flops-0.25"`` -> ``("tv/resnet50", "cifar10", Budget("flops", 0.25))``.

    Raises:
        InvalidKeyError: a malformed or unsafe key (absolute, ``..``, backslashes, bad characters).
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"a registry key must be a string of 1..{MAX_KEY_LENGTH} characters, got {key!r}",
                              key=key)
    if "\\" in key or key.startswith("/") or ":" in key.split("/")[0]:
        raise InvalidKeyError(f"invalid registry key {key!r}: no absolute paths or backslashes", key=key)
    parts = key.split("/")
    if len(parts) < 3:
        raise InvalidKeyError(f"invalid registry key {key!r}: expected '<arch>/<dataset>/<budget_type>-<budget>'",
                              key=key)
    slug = _check_segment(parts[-1], "budget")
    kind, _, value = slug.partition("-")
    if not kind or not value:
        raise InvalidKeyError(f"invalid budget {slug!r} in key {key!r}: expected e.g. 'flops-0.1' "
                              f"(kinds: {', '.join(BUDGET_KINDS)})", key=key)
    try:
        budget = Budget(kind, float(value))
    except (ValueError, TypeError) as exc:
        raise InvalidKeyError(f"invalid budget {slug!r} in key {key!r}: {exc}", key=key) from None
    arch = "/".join(decode_name(p, "architecture") for p in parts[:-2])
    return arch, decode_name(parts[-2], "dataset"), budget


def canonical_key(key: str) -> str:
    """The canonical spelling of ``key`` (``tv/resnet50/c10/flops-0.250`` -> ``tv--resnet50/c10/flops-0.25``)."""
    arch, dataset, budget = parse_key(key)
    return make_key(arch=arch, dataset=dataset, budget=budget)


def key_from(*, key: str | None = None, arch: str | None = None, dataset: str | None = None,
             budget: Budget | str | None = None) -> str:
    """The canonical key from ``key``, or from ``arch``, ``dataset`` and ``budget`` (``"flops:0.1"`` or
    ``"flops-0.1"``)."""
    if key is None:
        if not (arch and dataset and budget):
            raise InvalidKeyError("pass a key, or arch=, dataset= and budget= (e.g. budget='flops:0.1')")
        return make_key(arch=arch, dataset=dataset, budget=budget.replace("-", ":", 1) if isinstance(budget, str)
                        and ":" not in budget else budget)
    return canonical_key(key)


def mask_path(key: str) -> str:
    """``masks/<key>.safetensors``."""
    return f"masks/{canonical_key(key)}.safetensors"


def weights_path(key: str, kind: str = "slim") -> str:
    """``weights/<key>.safetensors`` (slimmed) or ``weights/<arch>/<dataset>/dense.safetensors``."""
    key = canonical_key(key)
    return f"weights/{key.rsplit('/', 1)[0]}/dense.safetensors" if kind == "dense" else f"weights/{key}.safetensors"


def plot_path(key: str) -> str:
    """``plots/<key>.png`` (Hub registries: kept channels per group)."""
    return f"plots/{canonical_key(key)}.png"
