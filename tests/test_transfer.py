"""Mask transfer: a 3-channel, 3-class, 32x32 teacher mask onto mnist5k (1 channel, 10 classes, 28x28)."""

from __future__ import annotations

import json

import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo.baselines import baseline_mask
from chipnet_zoo.cli import main
from chipnet_zoo.errors import MaskMismatchError
from chipnet_zoo.mask import Mask
from chipnet_zoo.mask_transfer import StudentTraining
from chipnet_zoo.runs import load_run_model

SMALL = {"training": StudentTraining(max_samples=120, recipe="tiny", epochs=1), "progress": False}


@pytest.fixture(scope="module")
def teacher_mask(tmp_path_factory) -> Mask:
    torch.manual_seed(0)
    model = cz.create_model("resnet8", num_classes=3, in_chans=3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.05, 1.0)
    return baseline_mask(model, "flops:0.25", "slimming", example_input=torch.randn(1, 3, 32, 32),
                         dataset="rgb-teacher")


def _check_run(out, metrics, budget=0.25):
    assert metrics["ratios"]["flops"] <= budget + 1e-12
    assert budget - metrics["ratios"]["flops"] <= 0.01
    for key in ("val_accuracy", "test_accuracy", "params", "macs", "mask_origin"):
        assert key in metrics
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["transfer"]["student_dataset"] == "mnist5k"
    assert json.loads((out / "config.json").read_text())["transfer"]["protocol"] == metrics["transfer"]["protocol"]
    mask = Mask.load(out / "mask.safetensors")
    assert mask.metadata["method"].startswith("transfer:")
    assert mask.metadata["dataset"] == "mnist5k" and mask.metadata["num_classes"] == 10
    assert mask.metadata["input_size"] == [1, 28, 28]
    assert mask.metadata["hparams"]["teacher"]["dataset"] == "rgb-teacher"
    model = load_run_model(out)  # the slim student runs on student inputs
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]


def test_scratch_from_a_registry_key_and_push(tmp_path, teacher_mask):
    teachers = cz.MaskRegistry(tmp_path / "teachers")
    key = teachers.push(teacher_mask).key
    assert key == "resnet8/rgb-teacher/flops-0.25"
    out = tmp_path / "scratch"
    metrics = cz.transfer(key, "mnist5k", protocol="scratch", registry=teachers, out=out,
                          push_to=tmp_path / "students", **SMALL)
    _check_run(out, metrics)
    assert metrics["mask_origin"] == key
    assert Mask.load(out / "mask.safetensors").metadata["method"] == f"transfer:{key}"
    # the student's mask keeps the teacher's scores (re-thresholded on the student's own costs)
    student = Mask.load(out / "mask.safetensors")
    assert torch.equal(student.score_vector(), teacher_mask.score_vector())
    pushed = cz.MaskRegistry(tmp_path / "students").list()
    assert [e.key for e in pushed] == ["resnet8/mnist5k/flops-0.25"] and pushed[0].weights["kind"] == "slim"
    again = cz.transfer(key, "mnist5k", protocol="scratch", registry=teachers, out=out, **SMALL)  # finished: reported
    assert again["test_accuracy"] == metrics["test_accuracy"]


def test_finetune_protocol_and_other_budget(tmp_path, teacher_mask):
    path = teacher_mask.save(tmp_path / "teacher.safetensors")
    out = tmp_path / "ft"
    metrics = cz.transfer(path, "mnist5k", protocol="finetune", budget="flops:0.125", out=out, progress=False,
                          training=StudentTraining(max_samples=120, recipe="tiny", epochs=1, dense_epochs=1))
    _check_run(out, metrics, budget=0.125)
    assert (out / "dense" / "weights.safetensors").is_file()
    assert metrics["transfer"]["dense"]["run"].endswith("dense")
    assert metrics["mask_origin"] == "teacher.safetensors"


def test_mask_for_another_architecture_is_refused(tmp_path, teacher_mask):
    path = teacher_mask.save(tmp_path / "teacher.safetensors")
    with pytest.raises(MaskMismatchError, match="resnet8"):
        cz.transfer(path, "mnist5k", protocol="scratch", arch="resnet20", out=tmp_path / "x", **SMALL)
    # a mask whose structure does not fit its claimed architecture
    wrong = teacher_mask.with_metadata(arch="resnet20")
    with pytest.raises(MaskMismatchError):
        cz.transfer(wrong, "mnist5k", protocol="scratch", out=tmp_path / "y", **SMALL)
    rc = main(["transfer", "--mask", str(path), "--dataset", "mnist5k", "--arch", "resnet20",
               "--out", str(tmp_path / "z"), "--max-samples", "120"])
    assert rc == 1


def test_cli_transfer(tmp_path, teacher_mask, capsys):
    path = teacher_mask.save(tmp_path / "teacher.safetensors")
    out = tmp_path / "cli"
    rc = main(["transfer", "--mask", str(path), "--dataset", "mnist5k", "--protocol", "scratch", "--epochs", "1",
               "--recipe", "tiny", "--max-samples", "120", "--out", str(out), "--json", "--no-progress"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["transfer"]["protocol"] == "scratch" and (out / "weights.safetensors").is_file()
