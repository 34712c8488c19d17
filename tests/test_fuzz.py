"""Property-based tests: any bytes given to ``Mask.from_bytes`` or the index parser give a valid object or
the project's own error - never another exception, never a hang (a per-example deadline)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save
from test_registry import make_mask
from test_reliability import _index, _raw_mask

from chipnet_zoo.errors import ChipNetZooError
from chipnet_zoo.mask import Mask
from chipnet_zoo.registry import RegistryEntry, parse_index

FUZZ = settings(max_examples=120, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)
MASK = make_mask(0.25)
VALID = MASK.to_bytes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16)


def load_or_own_error(data: bytes) -> Mask | None:
    """``Mask.from_bytes(data)``; a project error is fine, any other exception fails the test."""
    try:
        mask = Mask.from_bytes(data)
    except ChipNetZooError:
        return None
    assert mask.structure and list(mask.keep) == [n for n, _ in mask.structure]
    for name, size in mask.structure:
        keep, score = mask.keep[name], mask.scores[name]
        assert keep.dtype == torch.bool and keep.shape == (size,) and bool(keep.any())
        assert score.dtype == torch.float32 and score.shape == (size,) and bool(torch.isfinite(score).all())
    assert all(math.isfinite(v) and 0 < v <= 1 for v in mask.ratios.values())
    assert Mask.from_bytes(mask.to_bytes()) == mask  # what loads, saves and loads again
    return mask


def parse_or_own_error(data: bytes) -> dict[str, RegistryEntry] | None:
    try:
        entries = parse_index(data, "fuzz/index.json")
    except ChipNetZooError:
        return None
    doc = json.loads(data)  # what was accepted had the right JSON types, not just convertible ones
    assert type(doc["version"]) is int and doc["version"] == 1
    for raw in doc["entries"]:
        e = entries[raw["key"]]
        assert type(raw["size"]) is int and raw["size"] >= 0 and e.size == raw["size"]
        assert type(raw["budget"]) in (int, float) and math.isfinite(raw["budget"])
        assert all(type(v) in (int, float) and 0 < v <= 1 for v in (raw.get("ratios") or {}).values())
        assert raw.get("num_classes") is None or type(raw["num_classes"]) is int
    return entries


# --- mask files ----------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=2048))
def test_mask_from_arbitrary_bytes(data):
    load_or_own_error(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(VALID)), st.binary(max_size=16))
def test_mask_from_mutated_bytes(flips, cut, insert):
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    load_or_own_error(bytes(data))
    load_or_own_error(VALID[:cut] + insert + VALID[cut:])
    load_or_own_error(VALID[:cut])


@FUZZ
@given(st.sampled_from(["structure", "ratios", "budget", "budget_type", "num_classes", "input_size", "metrics",
                        "hparams", "arch", "format_version", "dataset"]), json_values)
def test_mask_with_fuzzed_metadata(field, value):
    load_or_own_error(_raw_mask(MASK, **{field: json.dumps(value)}))


_DTYPES = [torch.bool, torch.int8, torch.int64, torch.float16, torch.bfloat16, torch.float32, torch.float64]


@FUZZ
@given(st.data())
def test_mask_with_fuzzed_tensors(data):
    keep, scores = {}, {}
    for name, size in MASK.structure:
        for target, source in ((keep, MASK.keep[name]), (scores, MASK.scores[name])):
            mode = data.draw(st.sampled_from(["same"] * 5 + ["cast", "values", "2-D"]))
            t = source
            if mode == "cast":
                t = source.to(data.draw(st.sampled_from(_DTYPES)))
            elif mode == "values":
                t = torch.tensor(data.draw(st.lists(st.floats(allow_nan=True, width=32), max_size=size + 1)),
                                 dtype=torch.float32).to(data.draw(st.sampled_from(_DTYPES)))
            elif mode == "2-D":
                t = source.reshape(1, -1)
            target[name] = t
    if load_or_own_error(_raw_mask(MASK, keep=keep, scores=scores)) is not None:  # accepted: nothing was cast
        assert all(t.dtype == torch.bool and t.dim() == 1 for t in keep.values())
        assert all(t.is_floating_point() and t.dim() == 1 and bool(torch.isfinite(t.float()).all())
                   for t in scores.values())


def test_fuzz_helpers_accept_the_valid_mask():
    assert load_or_own_error(VALID) == MASK
    assert parse_or_own_error(_index())  # a valid index parses: the properties are not vacuous


# --- the index -------------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=2048))
def test_index_from_arbitrary_bytes(data):
    parse_or_own_error(data)


@FUZZ
@given(st.sampled_from(["key", "arch", "dataset", "budget_type", "budget", "path", "sha256", "size", "ratios",
                        "metrics", "num_classes", "input_size", "weights", "format", "version", "entries"]),
       json_values)
def test_index_with_a_fuzzed_field(field, value):
    parse_or_own_error(_index(**{field: value}))


@FUZZ
@given(json_values)
def test_index_from_arbitrary_json(doc):
    parse_or_own_error(json.dumps(doc).encode())
    parse_or_own_error(json.dumps({"format": "chipnet-zoo-registry", "version": 1, "entries": [doc]}).encode())


@pytest.mark.parametrize("depth", [10, 1000, 200_000])
def test_deep_nesting_never_recurses(depth):
    deep = b"[" * depth + b"]" * depth
    assert parse_or_own_error(deep) is None
    raw = save({"mask/a": torch.ones(1, dtype=torch.bool), "score/a": torch.ones(1)},
               metadata={"chipnet_zoo.format_version": "1.0", "chipnet_zoo.arch": "x",
                         "chipnet_zoo.structure": deep.decode()})
    assert load_or_own_error(raw) is None


# --- secrets ---------------------------------------------------------------------------------------------
_TOKEN_CHARS = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=6, max_size=40)


@FUZZ
@given(_TOKEN_CHARS, _TOKEN_CHARS, st.text(max_size=40), st.text(max_size=40))
def test_scrub_never_leaves_a_registered_token_or_password(token, password, before, after):
    from chipnet_zoo import _secrets
    from chipnet_zoo._secrets import register_secret, register_url, scrub

    known = set(_secrets._KNOWN)  # random secrets must not scrub words from later tests' messages
    try:
        register_secret(token)
        register_url(f"https://user:{password}@hub.example")
        for message in (before + token + after, f"{before}https://user:{password}@host/{after}",
                        f"{before}Bearer {token}\n{after}"):
            out = scrub(message)
            assert token not in out and password not in out
    finally:
        _secrets._KNOWN.clear()
        _secrets._KNOWN.update(known)
