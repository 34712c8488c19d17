"""The architecture registry: ``@register_model``, ``create_model`` and ``list_models`` (timm-style).

Three kinds of names resolve, in this order:

1. exact names registered with :func:`register_model` (``resnet56``, ``preresnet164`` ...);
2. lazy namespaces (``tv/<name>``, ``timm/<name>``), whose names and builders are only looked up when first needed;
3. patterns (``wrn-<depth>-<width>``), parsed by a regular expression; their examples are listed.

Every created model carries ``arch_name``, ``num_classes``, ``in_chans``, ``default_input_size``
``(C, H, W)`` and ``classifier_name`` (the final layer whose output is never pruned).
"""

from __future__ import annotations

import difflib
import fnmatch
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..errors import UnknownModelError, UnsupportedModelError

ModelFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class _Entry:
    """How to build one architecture: ``fn(num_classes=, in_chans=, **args, **kwargs)``."""

    fn: ModelFn
    input_hw: tuple[int, int]
    classifier: str | None  # None: find it generically after construction
    args: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    parse: Callable[[re.Match[str]], tuple[str, dict]]  # -> (canonical name, builder args)
    fn: ModelFn
    examples: tuple[str, ...]
    input_hw: tuple[int, int]
    classifier: str | None
    prefix: str  # names starting with it get ``hint`` in the unknown-name message
    hint: str


@dataclass(frozen=True)
class _Namespace:
    prefix: str
    names: Callable[[], list[str]]  # names without the prefix; may import heavy modules
    fn: Callable[..., nn.Module]  # fn(name, num_classes=, in_chans=, **kwargs)
    input_hw: tuple[int, int]
    missing_hint: str = ""  # shown for unknown names when ``names()`` is empty (an optional extra)


_MODELS: dict[str, _Entry] = {}
_PATTERNS: list[_Pattern] = []
_NAMESPACES: dict[str, _Namespace] = {}
_NAMESPACE_CACHE: dict[str, frozenset[str]] = {}


def register_model(
    fn: ModelFn | None = None,
    *,
    name: str | None = None,
    input_hw: tuple[int, int] = (32, 32),
    classifier: str | None = None,
    **args: object,
) -> ModelFn | Callable[[ModelFn], ModelFn]:
    """Register a model builder under ``name`` (default: the function's name).

    Usable bare (``@register_model``) or with options
    (``@register_model(name="mobilenetv2-cifar", classifier="linear")``). Extra keyword ``args`` are bound
    and passed to ``fn`` on every build, so one builder can back several names.

    Raises:
        ValueError: the name is already registered.
    """

    def decorator(f: ModelFn) -> ModelFn:
        key = (name or f.__name__).strip().lower()
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        if any(key.startswith(p) for p in _NAMESPACES):
            raise ValueError(f"model {key!r} collides with a registered namespace")
        _MODELS[key] = _Entry(f, tuple(input_hw), classifier, tuple(sorted(args.items())))
        return f

    return decorator(fn) if fn is not None else decorator


def register_model_pattern(
    regex: str,
    parse: Callable[[re.Match[str]], tuple[str, dict]],
    fn: ModelFn,
    *,
    examples: tuple[str, ...],
    prefix: str,
    hint: str,
    input_hw: tuple[int, int] = (32, 32),
    classifier: str | None = None,
) -> None:
    """Register a family of names matched by ``regex`` (full match); ``parse`` maps a match to the
    canonical name and the builder's arguments (and raises ``ValueError`` for invalid values)."""
    _PATTERNS.append(
        _Pattern(re.compile(regex), parse, fn, tuple(examples), tuple(input_hw), classifier, prefix, hint)
    )


def register_namespace(
    prefix: str,
    names: Callable[[], list[str]],
    fn: Callable[..., nn.Module],
    *,
    input_hw: tuple[int, int],
    missing_hint: str = "",
) -> None:
    """Register a lazily listed family ``<prefix><name>`` (e.g. ``tv/resnet50``); a builder may set
    ``model.default_input_hw`` to override ``input_hw`` per model. ``missing_hint`` explains an empty
    family (e.g. how to install its optional dependency)."""
    if prefix in _NAMESPACES:
        raise ValueError(f"namespace {prefix!r} is already registered")
    _NAMESPACES[prefix] = _Namespace(prefix, names, fn, tuple(input_hw), missing_hint)


def _namespace_names(ns: _Namespace) -> frozenset[str]:
    if ns.prefix not in _NAMESPACE_CACHE:
        _NAMESPACE_CACHE[ns.prefix] = frozenset(ns.names())
    return _NAMESPACE_CACHE[ns.prefix]


def _natural_key(s: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def list_models(filter: str | None = None) -> list[str]:  # noqa: A002 (timm's name)
    """All registered architecture names, naturally sorted; ``filter`` is an fnmatch pattern.

    Patterned families are represented by their examples (``wrn-16-4``, ``wrn-26-12``, ``wrn-28-10``).

    Example:
        >>> list_models("resnet*")[:3]
        ['resnet8', 'resnet20', 'resnet32']
    """
    names = set(_MODELS)
    for p in _PATTERNS:
        names.update(p.examples)
    for ns in _NAMESPACES.values():
        names.update(ns.prefix + n for n in _namespace_names(ns))
    if filter:
        pattern = filter.strip().lower()
        names = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
    return sorted(names, key=_natural_key)


def is_model(name: str) -> bool:
    """Whether ``name`` resolves to an architecture (without building it)."""
    try:
        _resolve(name)
    except ValueError:
        return False
    return True


def _unknown(name: str, hint: str = "") -> UnknownModelError:
    close = difflib.get_close_matches(name, list_models(), n=5, cutoff=0.5)
    msg = f"unknown model {name!r}."
    if close:
        msg += " Did you mean: " + ", ".join(close) + "?"
    if hint:
        msg += f" {hint}."
    msg += " Call chipnet_zoo.list_models() (with an optional fnmatch filter, e.g. 'tv/*') to see all names."
    return UnknownModelError(msg)


def _resolve(name: str) -> tuple[str, ModelFn, dict, tuple[int, int], str | None]:
    """Map a name to (canonical name, builder, bound args, input H×W, classifier name or None)."""
    if not isinstance(name, str):
        raise UnknownModelError(f"a model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _MODELS:
        e = _MODELS[key]
        return key, e.fn, dict(e.args), e.input_hw, e.classifier
    for prefix, ns in _NAMESPACES.items():
        if key.startswith(prefix):
            sub = key[len(prefix) :]
            if sub not in _namespace_names(ns):
                raise _unknown(name, "" if _namespace_names(ns) else ns.missing_hint)

            def build(*, _sub: str = sub, _fn: Callable[..., nn.Module] = ns.fn, **kw: object) -> nn.Module:
                return _fn(_sub, **kw)

            return key, build, {}, ns.input_hw, None
    for p in _PATTERNS:
        m = p.regex.fullmatch(key)
        if m:
            canonical, args = p.parse(m)  # ValueError with a clear message for invalid values
            return canonical, p.fn, args, p.input_hw, p.classifier
    hints = [p.hint for p in _PATTERNS if key.startswith(p.prefix)]
    raise _unknown(name, hints[0] if hints else "")


def _positive_int(value: object, what: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be a positive integer, got {value!r}") from None
    if v < 1:
        raise ValueError(f"{what} must be >= 1, got {v}")
    return v


def find_classifier(model: nn.Module, num_classes: int) -> str:
    """Qualified name of the final classifier: the last ``nn.Linear`` with ``num_classes`` outputs, else
    the last ``nn.Conv2d`` with ``num_classes`` outputs (SqueezeNet)."""
    last_linear = last_conv = None
    for qname, m in model.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == num_classes:
            last_linear = qname
        elif isinstance(m, nn.Conv2d) and m.out_channels == num_classes:
            last_conv = qname
    found = last_linear if last_linear is not None else last_conv
    if found is None:
        raise UnsupportedModelError(
            f"{type(model).__name__}: no Linear/Conv2d layer with {num_classes} outputs (the classifier)"
        )
    return found


def create_model(name: str, num_classes: int = 10, in_chans: int = 3, **kwargs: object) -> nn.Module:
    """Build an architecture by name, randomly initialised.

    Args:
        name: a name from :func:`list_models`, or any ``wrn-<depth>-<width>`` with (depth-2) % 6 == 0.
        num_classes: outputs of the classifier (>= 1).
        in_chans: input channels of the stem convolution (>= 1).
        **kwargs: passed to the builder (e.g. torchvision keyword arguments for ``tv/*``).

    Returns:
        The model, with attributes ``arch_name``, ``num_classes``, ``in_chans``, ``default_input_size``
        ``(C, H, W)`` and ``classifier_name``.

    Raises:
        UnknownModelError: the name is not registered (the message suggests close names).
        ValueError: bad ``num_classes`` / ``in_chans``, or an invalid WRN depth/width.

    Example:
        >>> m = create_model("resnet20", num_classes=7, in_chans=1)
        >>> m.arch_name, m.classifier_name, m.default_input_size
        ('resnet20', 'fc', (1, 32, 32))
    """
    num_classes = _positive_int(num_classes, "num_classes")
    in_chans = _positive_int(in_chans, "in_chans")
    canonical, fn, args, input_hw, classifier = _resolve(name)
    model = fn(num_classes=num_classes, in_chans=in_chans, **args, **kwargs)
    if classifier is None:
        classifier = find_classifier(model, num_classes)
    head = model.get_submodule(classifier)
    out = getattr(head, "out_features", getattr(head, "out_channels", None))
    if out != num_classes:  # a builder bug, never a user error
        raise RuntimeError(f"{canonical}: classifier {classifier!r} has {out} outputs, not {num_classes}")
    model.arch_name = canonical
    model.num_classes = num_classes
    model.in_chans = in_chans
    model.default_input_size = (in_chans, *getattr(model, "default_input_hw", input_hw))
    model.classifier_name = classifier
    return model
