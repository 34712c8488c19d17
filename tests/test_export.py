"""Deployable exports (chipnet_zoo/export.py, ``chipnet-zoo export``, ``eval --onnx-latency``): real slimmed
models, the real exporters, each file run back in its own runtime (onnxruntime, torch.jit, torch.export)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo.cli import main
from chipnet_zoo.export import ExportError, companion_paths, export_from, export_model

try:
    import onnxruntime as ort
except ImportError:  # the ONNX tests are skipped; TorchScript and pt2 still run
    ort = None
HAVE_ONNX = ort is not None and all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx / onnxscript / onnxruntime not installed "
                                                      "(pip install 'chipnet-zoo[export]')")

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning"),  # TorchScript: deprecated upstream
              pytest.mark.usefixtures("one_torch_thread")]
ATOL = 1e-4
KEY = "resnet8/mnist5k/flops-0.25"  # in the built-in zoo, with slim weights
SMALL = ["--dataset", "mnist5k", "--max-samples", "192", "--image-size", "16", "--recipe", "tiny", "--no-progress"]




def pruned(arch: str, budget: float = 0.3, size: int = 32) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """(dense, slim) of ``arch`` pruned to a FLOPs budget, and an example input."""
    torch.manual_seed(0)
    dense = cz.create_model(arch, num_classes=10).eval()
    x = torch.randn(2, 3, size, size)
    mask = cz.ChipNetPruner(dense, cz.Budget("flops", budget), example_input=x).mask()
    return dense, mask.slim(dense, x).eval(), x


@pytest.fixture(scope="module")
def resnet8():
    return pruned("resnet8")


def run_file(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """The exported file run in its own runtime, independently of chipnet_zoo.export."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        if fmt == "torchscript":
            return torch.jit.load(str(path))(x)
        return torch.export.load(str(path)).module()(x)


def n_weights(path: Path, fmt: str) -> int:
    """Numbers stored in the file's weights (slim files store fewer than the dense model has)."""
    if fmt == "onnx":
        import onnx

        return sum(int(torch.tensor(list(t.dims)).prod()) for t in onnx.load(str(path)).graph.initializer
                   if len(t.dims) == 4)
    module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    return sum(p.numel() for p in module.parameters() if p.dim() == 4)


def conv_weights(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.dim() == 4)


@pytest.mark.parametrize("fmt,exporter", [pytest.param("onnx", "dynamo", marks=[needs_onnx, pytest.mark.slow]),
                                          pytest.param("onnx", "legacy", marks=needs_onnx),
                                          ("torchscript", "dynamo"), ("pt2", "dynamo")])
def test_export_matches_the_slim_model(resnet8, tmp_path, fmt, exporter):
    dense, slim, x = resnet8
    path = tmp_path / f"model.{fmt}"
    diff = export_model(slim, x[:1], path, format=fmt, exporter=exporter)
    assert diff is not None and diff <= ATOL
    for batch in (1, 7):  # dynamic batch axis
        xb = torch.randn(batch, *x.shape[1:])
        with torch.no_grad():
            ref = slim(xb)
        got = run_file(path, fmt, xb)
        assert got.shape == ref.shape == (batch, 10)
        err = float((got - ref).abs().max())
        assert err <= ATOL, (fmt, exporter, batch, err)
        print(f"{fmt}/{exporter} batch {batch}: max |diff| {err:.2e}")
    assert n_weights(path, fmt) == conv_weights(slim) < conv_weights(dense)  # the file holds the slim model
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp files left behind
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert not isinstance(session.get_inputs()[0].shape[0], int)  # symbolic batch dimension


@needs_onnx
@pytest.mark.slow  # ~6 s
def test_torchvision_resnet18_at_small_input(tmp_path):
    dense, slim, x = pruned("tv/resnet18", budget=0.25)
    for fmt in ("onnx", "pt2"):
        path = tmp_path / f"r18.{fmt}"
        assert export_model(slim, x, path, format=fmt) <= ATOL
        xb = torch.randn(3, *x.shape[1:])
        with torch.no_grad():
            ref = slim(xb)
        assert float((run_file(path, fmt, xb) - ref).abs().max()) <= ATOL
        assert n_weights(path, fmt) == conv_weights(slim) < conv_weights(dense)


def test_a_failed_check_writes_nothing(resnet8, tmp_path):
    _, slim, x = resnet8
    with pytest.raises(ExportError, match="differ"):
        export_model(slim, x, tmp_path / "m.pt", format="torchscript", atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_export_from_registry_key_cli(tmp_path, capsys):
    out = tmp_path / "r8.pt2"
    assert main(["export", "--from", KEY, "--format", "pt2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    mask_path, card_path = companion_paths(out)
    card = json.loads(card_path.read_text())
    reg = cz.MaskRegistry()
    mask = reg.pull(KEY)
    assert cz.Mask.load(mask_path) == mask
    assert card["arch"] == "resnet8" and card["dataset"] == "mnist5k" and card["budget"] == "flops:0.25"
    assert card["ratios"] == pytest.approx(mask.ratios) and card["trained"] is True
    assert card["input_size"] == [1, 28, 28] and card["num_classes"] == 10
    assert card["check"]["max_abs_diff"] <= ATOL and card["versions"]["torch"] == torch.__version__
    model = reg.pull_model(KEY)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert float((run_file(out, "pt2", x) - model(x)).abs().max()) <= ATOL
    assert card["params"] == sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """train -> prune -> finetune (resnet8, 192 digits at 16x16, 1 epoch each)."""
    root = tmp_path_factory.mktemp("runs")
    t, p, f = root / "train", root / "prune", root / "finetune"
    assert main(["train", "--arch", "resnet8", *SMALL, "--epochs", "1", "--out", str(t)]) == 0
    assert main(["prune", "--from", str(t), "--budget", "flops:0.5", "--epochs", "1", "--out", str(p),
                 "--no-progress"]) == 0
    assert main(["finetune", "--from", str(p), "--out", str(f), "--epochs", "1", "--no-progress"]) == 0
    return {"train": t, "prune": p, "finetune": f}


@needs_onnx
def test_export_from_run_folders_onnx(finetuned, tmp_path, capsys):
    from chipnet_zoo.runs import load_run_model

    for kind in ("finetune", "prune"):
        out = tmp_path / f"{kind}.onnx"
        assert main(["export", "--from", str(finetuned[kind]), "--format", "onnx", "--out", str(out), "--json"]) == 0
        card = json.loads(capsys.readouterr().out)
        assert card["source"] == {"kind": "run", "path": str(finetuned[kind]), "run_kind": kind}
        assert card["opset"] == 18 and card["budget"] == "flops:0.5" and card["input_size"] == [1, 16, 16]
        assert card["ratios"]["flops"] <= 0.5
        exported = cz.Mask.load(companion_paths(out)[0])
        assert exported == cz.Mask.load(finetuned[kind] / "mask.safetensors")
        assert exported.kept() == cz.Mask.load(finetuned["prune"] / "mask.safetensors").kept()
        x = torch.randn(5, 1, 16, 16)
        with torch.no_grad():
            ref = load_run_model(finetuned[kind])(x)
        err = float((run_file(out, "onnx", x) - ref).abs().max())
        assert err <= ATOL
    # a train run has no mask: refused
    assert main(["export", "--from", str(finetuned["train"]), "--format", "onnx", "--out",
                 str(tmp_path / "dense.onnx")]) == 1
    assert "expected a prune or finetune run" in capsys.readouterr().err


@needs_onnx
def test_eval_onnx_latency(finetuned, capsys):
    capsys.readouterr()
    assert main(["eval", "--from", str(finetuned["finetune"]), "--latency-repeats", "3", "--onnx-latency",
                 "--json"]) == 0
    captured = capsys.readouterr()
    m = json.loads(captured.out)
    lat, torch_lat = m["latency_onnxruntime"], m["latency_cpu"]
    assert lat["runtime"] == "onnxruntime" and lat["threads"] == torch_lat["threads"] == 1
    assert lat["repeats"] == 3 and lat["batch_64_ms"] > 0 and lat["batch_1_ms"] > 0
    assert "onnxruntime CPU latency" in captured.err
    stored = json.loads((finetuned["finetune"] / "eval.json").read_text())
    assert stored["latency_onnxruntime"] == lat


def test_registry_mask_without_weights(tmp_path, capsys):
    reg = cz.MaskRegistry(tmp_path / "reg")
    reg.push(cz.MaskRegistry().pull(KEY), dataset="mnist5k")
    out = tmp_path / "r8.onnx"
    argv = ["export", "--from", KEY, "--registry", str(tmp_path / "reg"), "--format", "torchscript",
            "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "no weights" in err and "--allow-untrained" in err and not out.exists()
    assert main([*argv, "--allow-untrained", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["trained"] is False and card["source"]["registry"] == reg.location
    assert card["check"]["max_abs_diff"] <= ATOL


def error_line(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("chipnet-zoo export: error: ")
    return err[0]


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    out = str(tmp_path / "m.pt2")
    assert "unknown export format 'tflite'" in error_line(capsys, "export", "--from", KEY, "--format", "tflite",
                                                         "--out", out)
    assert "unknown ONNX exporter" in error_line(capsys, "export", "--from", KEY, "--format", "onnx",
                                                 "--onnx-exporter", "jit", "--out", out)
    assert "neither a run folder nor a registry key" in error_line(
        capsys, "export", "--from", str(tmp_path / "no-such-run"), "--format", "pt2", "--out", out)
    assert "no mask 'resnet8/mnist5k/flops-0.3'" in error_line(
        capsys, "export", "--from", "resnet8/mnist5k/flops-0.3", "--format", "pt2", "--out", out)
    assert "neither a run folder nor a registry key" in error_line(
        capsys, "export", "--from", "runs/not/here", "--format", "pt2", "--out", out)
    assert "is a folder" in error_line(capsys, "export", "--from", KEY, "--format", "pt2", "--out", str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_existing_files_are_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    assert "m.pt exists; pass --overwrite" in error_line(capsys, "export", "--from", KEY, "--format",
                                                         "torchscript", "--out", str(out))
    assert out.read_bytes() == b"keep me"
    card = companion_paths(out)[1]
    out.unlink()
    card.write_text("{}")
    assert "m.card.json exists" in error_line(capsys, "export", "--from", KEY, "--format", "torchscript",
                                              "--out", str(out))
    assert not out.exists()
    assert main(["export", "--from", KEY, "--format", "torchscript", "--out", str(out), "--overwrite"]) == 0
    assert json.loads(card.read_text())["format"] == "torchscript"
    assert torch.jit.load(str(out))(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@needs_onnx
def test_missing_onnxruntime_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: `import onnxruntime` fails
    line = error_line(capsys, "export", "--from", KEY, "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert "onnxruntime not installed" in line and "chipnet-zoo[export]" in line
    with pytest.raises(ExportError, match="onnxruntime not installed"):
        export_from(KEY, format="onnx", out=tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
    # the check is what needs onnxruntime; the export itself does not
    assert main(["export", "--from", KEY, "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--no-verify"]) == 0
    assert json.loads((tmp_path / "m.card.json").read_text())["check"]["verified"] is False


def test_a_failed_companion_write_leaves_no_model_file(tmp_path, monkeypatch):
    from chipnet_zoo.export import export_from
    from chipnet_zoo.mask import Mask

    def disk_full(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Mask, "save", disk_full)
    out = tmp_path / "m.pt2"
    with pytest.raises(OSError, match="No space"):
        export_from(KEY, format="pt2", out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
