"""Issue #14, registry side: typed metadata shared by masks and entries (on-disk forms unchanged), errors
that carry their fields, one atomic writer, one default-registry-then-zoo rule, one strict weights loader,
one architecture check, the zoo's lock file, the CLI's help and the card's links. Real files throughout
(the shipped zoo's masks, safetensors, local registries in tmp_path)."""

from __future__ import annotations

import ast
import inspect
import json
import os
from pathlib import Path

import pytest
import torch

import chipnet_zoo
from chipnet_zoo import constants, errors
from chipnet_zoo._atomic import atomic_write
from chipnet_zoo.budget import Budget
from chipnet_zoo.errors import (
    EntryExistsError,
    EntryNotFoundError,
    IndexFormatError,
    IntegrityError,
    InvalidKeyError,
    MaskFormatError,
    MaskMismatchError,
    ReadOnlyRegistryError,
    RunError,
    WeightsMismatchError,
    WeightsNotFoundError,
)
from chipnet_zoo.mask import Mask
from chipnet_zoo.metadata import MaskMetadata
from chipnet_zoo.registry import BUILTIN_ZOO, INDEX_FILE, MaskRegistry, RegistryEntry, dump_index, parse_index

ZOO_KEY = "resnet8/mnist5k/flops-0.25"


@pytest.fixture(scope="module")
def zoo_mask() -> Mask:
    return MaskRegistry.builtin().pull(ZOO_KEY)


# --- typed metadata ---------------------------------------------------------------------------------
def test_shipped_zoo_reads_with_typed_metadata_and_writes_back_the_same_bytes():
    zoo = MaskRegistry.builtin()
    raw = (BUILTIN_ZOO / INDEX_FILE).read_bytes()
    assert dump_index(parse_index(raw, "zoo")) == raw  # index rows: same keys, same values, same bytes
    entries = zoo.list()
    assert entries
    for entry in entries:
        data = zoo.pull_bytes(entry.key)
        mask = Mask.from_bytes(data)
        assert isinstance(mask.meta, MaskMetadata) and isinstance(entry.meta, MaskMetadata)
        assert isinstance(entry.budget, Budget) and mask.meta.budget == entry.budget == mask.budget
        assert (mask.meta.arch, mask.meta.dataset, mask.meta.num_classes, mask.meta.input_size, mask.meta.ratios) == (
            entry.arch, entry.dataset, entry.num_classes, entry.input_size, entry.ratios)
        assert MaskMetadata.from_dict(mask.metadata).to_dict() == mask.metadata  # the flat on-disk form
        assert Mask(mask.keep, mask.scores, mask.meta).to_bytes() == data  # typed -> the same file


def test_metadata_keeps_unknown_keys_and_reads_the_budget_pair():
    meta = MaskMetadata.from_dict({"arch": "resnet8", "budget_type": "params", "budget": 0.5, "future_key": [1]})
    assert meta.budget == Budget("params", 0.5) and meta.extra == {"future_key": [1]} and meta.in_chans == 3
    assert meta.to_dict() == {"arch": "resnet8", "budget_type": "params", "budget": 0.5, "future_key": [1]}
    assert MaskMetadata.from_dict({"arch": "resnet8"}).budget is None


def test_entry_and_mask_share_the_metadata(zoo_mask, tmp_path):
    entry = MaskRegistry(tmp_path / "reg").push(zoo_mask, metrics={"test_accuracy": 0.5})
    pulled = MaskRegistry(tmp_path / "reg").pull(entry.key)
    for name in ("arch", "dataset", "budget", "num_classes", "input_size", "ratios", "metrics", "method", "created",
                 "format_version"):
        assert getattr(entry.meta, name) == getattr(pulled.meta, name), name
    assert entry.meta.structure == () and pulled.meta.structure  # the index holds no structure
    assert RegistryEntry.from_dict(entry.to_dict()).to_dict() == entry.to_dict()


def test_schema_checks_stay_in_force(zoo_mask):
    with pytest.raises(MaskFormatError) as info:
        Mask(zoo_mask.keep, zoo_mask.scores, {**zoo_mask.metadata, "budget_type": "size"})
    assert info.value.field == "budget_type"
    with pytest.raises(MaskFormatError) as info:
        Mask(zoo_mask.keep, zoo_mask.scores, {**zoo_mask.metadata, "input_size": [3, 32]})
    assert info.value.field == "input_size"
    row = json.loads((BUILTIN_ZOO / INDEX_FILE).read_text())["entries"][0]
    for field, value in (("budget", "0.5"), ("budget_type", "flops2"), ("num_classes", 0), ("arch", "resnet20")):
        with pytest.raises(IndexFormatError) as info:
            RegistryEntry.from_dict({**row, field: value})
        assert info.value.field == field


# --- errors carry fields --------------------------------------------------------------------------------
def test_every_error_is_also_a_builtin():
    bases = (errors.ChipNetZooError, errors.RegistryError)  # the two base classes, as before
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, errors.ChipNetZooError) and cls not in bases:
            builtins = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException,
                                                                                          object)]
            assert builtins, f"{name} is not also a builtin exception"


def test_not_found_and_exists_errors_name_key_and_registry(zoo_mask, tmp_path):
    reg = MaskRegistry(tmp_path / "reg")
    reg.push(zoo_mask)
    with pytest.raises(EntryNotFoundError) as info:
        reg.pull("resnet8/mnist5k/flops-0.3")
    assert (info.value.key, info.value.registry) == ("resnet8/mnist5k/flops-0.3", str(tmp_path / "reg"))
    assert "no mask 'resnet8/mnist5k/flops-0.3' in" in str(info.value) and isinstance(info.value, FileNotFoundError)
    with pytest.raises(WeightsNotFoundError) as info:
        reg.pull_model(ZOO_KEY)
    assert info.value.key == ZOO_KEY and "has no weights" in str(info.value)
    other = zoo_mask.with_metadata(metrics={"note": 1})
    with pytest.raises(EntryExistsError) as info:
        reg.push(other)
    assert info.value.key == ZOO_KEY and info.value.registry == reg.location and isinstance(info.value, FileExistsError)
    with pytest.raises(InvalidKeyError) as info:
        reg.pull("resnet8/../flops-0.1")
    assert info.value.key == ".."


def test_integrity_error_names_the_file_and_both_hashes(zoo_mask, tmp_path):
    reg = MaskRegistry(tmp_path / "reg")
    entry = reg.push(zoo_mask)
    (stored,) = (tmp_path / "reg" / "masks").rglob("*.safetensors")
    data = stored.read_bytes()
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, other content
    with pytest.raises(IntegrityError) as info:
        reg.pull(entry.key)
    assert info.value.path == str(stored) and info.value.expected == entry.sha256
    assert info.value.actual and info.value.actual != entry.sha256


# --- the built-in zoo: read-only, no lock file, one fallback rule ---------------------------------------
def test_builtin_zoo_is_read_only_and_reading_it_creates_no_lock(zoo_mask, tmp_path, monkeypatch):
    lock = BUILTIN_ZOO / ".index.json.lock"
    assert not lock.exists()
    zoo = MaskRegistry.builtin()
    zoo.list()
    zoo.pull(ZOO_KEY)
    with pytest.raises(ReadOnlyRegistryError, match="read-only") as info:
        zoo.push(zoo_mask, overwrite=True)
    assert info.value.registry == str(BUILTIN_ZOO) and isinstance(info.value, PermissionError)
    assert not lock.exists()
    ignored = (Path(chipnet_zoo.__file__).parent.parent / ".gitignore").read_text().split()
    assert ".index.json.lock" in ignored


def test_default_registry_falls_back_to_the_zoo_for_pull_and_list(zoo_mask, tmp_path, monkeypatch):
    from chipnet_zoo.mask_transfer import resolve_mask

    monkeypatch.setattr(constants, "CHIPNET_ZOO_REGISTRY", str(tmp_path / "default"))
    own = zoo_mask.with_metadata(dataset="animal-mnist-copy")
    MaskRegistry().push(own)
    keys = [e.key for e in MaskRegistry().list(include_builtin=True)]
    assert ZOO_KEY in keys and own.meta.dataset in {k.split("/")[1] for k in keys}
    assert [e.key for e in MaskRegistry().list()] == ["resnet8/animal-mnist-copy/flops-0.25"]
    assert MaskRegistry().pull(ZOO_KEY) == zoo_mask
    assert resolve_mask(ZOO_KEY, None)[0] == zoo_mask  # the transfer's default pull: the same rule
    located = MaskRegistry(tmp_path / "default")  # an explicit location never falls back
    with pytest.raises(EntryNotFoundError):
        located.pull(ZOO_KEY)
    assert ZOO_KEY not in [e.key for e in located.list(include_builtin=True)]


# --- one strict loader, one architecture check -------------------------------------------------------
def test_one_strict_weights_loader_for_runs_and_registry():
    from chipnet_zoo import weights
    from chipnet_zoo.models import create_model
    from chipnet_zoo.runs import weights as run_weights

    assert run_weights.load_weights_into is weights.load_weights_into
    model = create_model("resnet8", num_classes=10)
    state = create_model("resnet20", num_classes=10).state_dict()
    with pytest.raises(WeightsMismatchError) as info:
        weights.load_weights_into(model, state, source="other.safetensors")
    assert isinstance(info.value, MaskMismatchError) and isinstance(info.value, RunError)
    assert info.value.source == "other.safetensors" and info.value.unexpected and info.value.arch == "resnet8"
    assert "weights other.safetensors do not fit resnet8" in str(info.value)
    good = create_model("resnet8", num_classes=10)
    assert weights.load_weights_into(model, good.state_dict(), source="good") is model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), good.state_dict().values()))


def test_one_architecture_check(zoo_mask):
    zoo_mask.check_arch("resnet8")
    zoo_mask.check_arch(None)  # nothing to compare with
    with pytest.raises(MaskMismatchError, match="the mask is for architecture 'resnet8', but the student is") as info:
        zoo_mask.check_arch("resnet20", "student")
    assert info.value.arch == "resnet20"


# --- one atomic writer ------------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a" / "f.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"

    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"lost")
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_no_other_writer_renames_files_into_place():
    root = Path(chipnet_zoo.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "_atomic.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr in ("mkstemp", "NamedTemporaryFile")
                    or (node.func.attr in ("replace", "rename") and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "os")):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, f"write files through chipnet_zoo._atomic.atomic_write: {offenders}"


# --- CLI help and the card ------------------------------------------------------------------------------
def test_every_command_has_help_and_a_description():
    import argparse

    from chipnet_zoo.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert {"push", "pull", "list", "card"} <= set(sub.choices)
    for name, command in sub.choices.items():
        assert helps.get(name), f"{name} has no help line in chipnet-zoo --help"
        assert command.description, f"chipnet-zoo {name} --help has no description"
    text = parser.format_help()
    assert all(name in text for name in sub.choices)


def test_local_card_is_titled_by_name_and_links_only_what_exists(zoo_mask, tmp_path):
    from importlib import metadata

    reg = MaskRegistry(tmp_path / "my-zoo")
    reg.push(zoo_mask)
    card = reg.render_card()
    title = next(line for line in card.splitlines() if line.startswith("# "))
    assert title == "# chipnet-zoo masks: my-zoo" and reg.name == "my-zoo"
    assert "github.com" not in card
    try:
        version = metadata.version("chipnet-zoo")
    except metadata.PackageNotFoundError:
        version = chipnet_zoo.__version__
    assert f"chipnet-zoo {version}" in card
