"""The Mask artifact: file round trip, validation, applying to other models, re-thresholding."""

from __future__ import annotations

import json
import struct

import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo.errors import MaskFormatError, MaskMismatchError, UnreachableBudgetError
from chipnet_zoo.gates import has_gates

X = torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def mask() -> cz.Mask:
    torch.manual_seed(0)
    model = cz.create_model("resnet20", num_classes=10)
    pruner = cz.ChipNetPruner(model, "flops:0.3", example_input=X)
    with torch.no_grad():  # spread the gates so the mask is not trivial
        pruner.gates.psi.copy_(torch.randn_like(pruner.gates.psi))
    return pruner.mask().with_metadata(dataset="cifar10", metrics={"val_accuracy": 0.5})


def _rewrite_metadata(data: bytes, **changes: str) -> bytes:
    """Return the file bytes with metadata entries replaced (header re-encoded)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


def test_round_trip_is_identical(mask, tmp_path):
    path = mask.save(tmp_path / "m.safetensors")
    loaded = cz.Mask.load(path)
    assert loaded == mask
    assert loaded.to_bytes() == path.read_bytes() == mask.to_bytes()
    assert loaded.metadata["dataset"] == "cifar10"
    assert loaded.metadata["arch"] == "resnet20"
    assert loaded.budget == cz.Budget("flops", 0.3)
    assert set(loaded.ratios) == {"channels", "volume", "params", "flops"}
    assert loaded.ratios["flops"] <= 0.3
    assert loaded.metadata["input_size"] == [3, 32, 32]
    assert loaded.metadata["format_version"] == "1.0"


def test_file_holds_documented_tensors_and_metadata(mask, tmp_path):
    from safetensors import safe_open

    path = mask.save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
        first = mask.structure[0][0]
        assert f.get_tensor(f"mask/{first}").dtype == torch.bool
        assert f.get_tensor(f"score/{first}").dtype == torch.float32
    assert keys == {f"mask/{n}" for n, _ in mask.structure} | {f"score/{n}" for n, _ in mask.structure}
    for key in ("format_version", "arch", "structure", "dataset", "num_classes", "input_size", "budget_type",
                "budget", "ratios", "method", "metrics", "hparams", "library_version", "torch_version", "created"):
        assert f"chipnet_zoo.{key}" in meta, key


def test_apply_to_other_class_count_and_slim(mask):
    model = cz.create_model("resnet20", num_classes=3)
    small = mask.slim(model)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    gated = mask.apply(model)
    assert gated is model and has_gates(model)
    model.eval()
    small.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-4)
    # slimming a gated model gives a plain model and leaves the input as it was
    again = mask.slim(model)
    assert not has_gates(again) and has_gates(model)


def test_other_architecture_is_refused_naming_the_group(mask):
    with pytest.raises(MaskMismatchError, match=r"group #\d+ is '.*' with \d+ channels in the mask"):
        mask.apply(cz.create_model("resnet32", num_classes=10))
    with pytest.raises(MaskMismatchError, match="resnet56"):
        mask.slim(cz.create_model("resnet56", num_classes=10))


def test_truncated_and_garbage_files_fail_clearly(mask, tmp_path):
    data = mask.to_bytes()
    for i, bad in enumerate([data[: len(data) // 2], data[:5], b"", b"not a safetensors file at all"]):
        path = tmp_path / f"bad{i}.safetensors"
        path.write_bytes(bad)
        with pytest.raises(MaskFormatError, match="not a valid mask file|corrupt|truncated"):
            cz.Mask.load(path)
    with pytest.raises(FileNotFoundError):
        cz.Mask.load(tmp_path / "missing.safetensors")


def test_unknown_major_version_refused_minor_accepted(mask):
    data = mask.to_bytes()
    with pytest.raises(MaskFormatError, match="format version 2.0 is not supported"):
        cz.Mask.from_bytes(_rewrite_metadata(data, **{"chipnet_zoo.format_version": "2.0"}))
    assert cz.Mask.from_bytes(_rewrite_metadata(data, **{"chipnet_zoo.format_version": "1.7"})).arch == "resnet20"


def test_tampered_metadata_fails_clearly(mask):
    data = mask.to_bytes()
    with pytest.raises(MaskFormatError, match="not valid JSON"):
        cz.Mask.from_bytes(_rewrite_metadata(data, **{"chipnet_zoo.structure": "[[oops"}))
    structure = [[n, s + 1] for n, s in mask.structure]
    with pytest.raises(MaskFormatError, match="expected .* channels"):
        cz.Mask.from_bytes(_rewrite_metadata(data, **{"chipnet_zoo.structure": json.dumps(structure)}))
    with pytest.raises(MaskFormatError, match="not a chipnet-zoo mask"):
        from safetensors.torch import save
        cz.Mask.from_bytes(save({"x": torch.zeros(2)}))


def test_rethreshold_to_other_budget_and_student(mask):
    tighter = mask.rethreshold("flops:0.1")
    assert tighter.ratios["flops"] <= 0.1 and tighter.budget == cz.Budget("flops", 0.1)
    assert tighter.metadata["dataset"] == "cifar10"
    # a 1-channel 28x28 student with 5 classes: costs counted on the student
    student = cz.create_model("resnet20", num_classes=5, in_chans=1)
    m = mask.rethreshold("params:0.2", model=student, example_input=torch.randn(1, 1, 28, 28))
    assert m.ratios["params"] <= 0.2 and m.metadata["input_size"] == [1, 28, 28]
    assert m.slim(student, example_input=torch.randn(1, 1, 28, 28))(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    with pytest.raises(UnreachableBudgetError, match="smallest achievable flops ratio"):
        mask.rethreshold("flops:0.0001")
