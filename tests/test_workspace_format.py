"""The on-disk format of run folders and experiment workspaces is pinned: a workspace written by an
earlier version (these literals are copied from one) must still resume, report and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chipnet_zoo.budget import Budget
from chipnet_zoo.experiments import ExperimentConfig, Workspace, read_results, write_reports
from chipnet_zoo.experiments.config import Cell
from chipnet_zoo.experiments.results import record
from chipnet_zoo.runs import RunOptions, RunRequest
from chipnet_zoo.runs.options import resume_differences

_PHASE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.001,
          "schedule": "constant", "step_size": 30, "lr_gamma": 0.5, "milestones": [0.5, 0.75], "batch_size": 64,
          "epochs": 1, "select": "best", "budget_weight": 30.0, "crispness_weight": 100.0, "psi_travel": None,
          "harden": None, "round_to": 1, "min_keep": None, "floor": None, "budget_grad_power": None}
_DATA = {"name_or_path": "mnist5k", "image_column": None, "label_column": None, "max_samples": 96,
         "image_size": None, "seed": 0}


def legacy_resolved(root: Path) -> dict[str, dict]:
    """``config.json["resolved"]`` of the dense, prune and chipnet-direct runs of a legacy workspace."""
    runs = root / "runs"
    return {
        "train": {"kind": "train", "arch": "resnet8", "budget": None, "seed": 0, "data_kwargs": dict(_DATA),
                  "recipe": {"name": "tiny", "source": "tiny", "phase": dict(_PHASE)}, "weights_file": None,
                  "mask_file": None, "source": None, "workers": 0},
        "prune": {"kind": "prune", "arch": "resnet8", "budget": "flops:0.25", "seed": 0,
                  "data_kwargs": {**_DATA, "val_fraction": 0.1, "test_fraction": 0.2, "augment": True, "hflip": None,
                                  "pad": None, "config": None},
                  "recipe": {"name": "tiny", "source": "tiny",
                             "phase": {**_PHASE, "optimizer": "adamw", "lr": 0.001, "batch_size": 32}},
                  "weights_file": str(runs / "dense-mnist5k-s0" / "weights.safetensors"), "mask_file": None,
                  "source": {"run": str(runs / "dense-mnist5k-s0"), "kind": "train"}, "workers": 0},
        "finetune": {"kind": "finetune", "arch": "resnet8", "budget": "flops:0.25", "seed": 0,
                     "data_kwargs": dict(_DATA), "recipe": {"name": "tiny", "source": "tiny",
                                                            "phase": {**_PHASE, "lr": 0.02}},
                     "weights_file": str(runs / "dense-mnist5k-s0" / "weights.safetensors"),
                     "mask_file": str(runs / "prune-mnist5k-flops-0.25-s0" / "mask.safetensors"), "source": None,
                     "workers": 0},
    }


LEGACY_ROW = {"cell": "->mnist5k|chipnet-direct|flops:0.25|s0", "teacher": "-", "student": "mnist5k",
              "arch": "resnet8", "method": "chipnet-direct", "budget_type": "flops", "budget": 0.25, "seed": 0,
              "test_accuracy": 0.0741, "val_accuracy": 0.1429,
              "ratios": {"channels": 0.491, "volume": 0.498, "params": 0.245, "flops": 0.249}, "params": 19067,
              "macs": 2329231, "seconds": 3.1, "run_dir": "/x/runs/direct-mnist5k-flops-0.25-s0",
              "finished": 1796136242.69}
#: The top-level keys of a train/prune/finetune run's config.json.
CONFIG_KEYS = {"accelerate", "arch", "budget", "command", "created", "dataset", "in_chans", "input_size", "kind",
               "mask_file", "num_classes", "recipe", "resolved", "seed", "source", "versions", "weights_file"}
#: Keys of a finished train run's metrics.json.
METRICS_KEYS = {"best_epoch", "best_val_accuracy_during_training", "epochs_done", "finished", "kind", "macs",
                "params", "rank_weights_sha256", "ratios", "resumed_from_epoch", "run_dir", "seconds_this_session",
                "test_accuracy", "test_loss", "train_seconds", "val_accuracy", "val_loss", "world_size"}


def _config(out: Path) -> ExperimentConfig:
    return ExperimentConfig.from_dict({
        "name": "compat", "arch": "resnet8", "teachers": ["animal-mnist"], "students": ["mnist5k"],
        "budget_type": "flops", "budgets": [0.25], "methods": ["dense", "chipnet-direct"], "seeds": [0],
        "recipe": "tiny", "epochs": {"train": 1, "prune": 1, "finetune": 1}, "max_samples": 96, "data_seed": 0,
        "out": str(out)})


@pytest.mark.parametrize("kind", ["train", "prune", "finetune"])
def test_legacy_resolved_options_round_trip(tmp_path, kind):
    raw = legacy_resolved(tmp_path)[kind]
    options = RunOptions.from_dict(json.loads(json.dumps(raw)))
    assert options.to_dict() == raw
    assert options.budget == (Budget("flops", 0.25) if kind != "train" else None)


def test_workspace_requests_resume_legacy_runs(tmp_path):
    """What the experiment asks of each shared run is what a legacy run recorded: it is reused, not refused."""
    legacy = legacy_resolved(tmp_path)
    ws = Workspace(_config(tmp_path), tmp_path)
    runs = tmp_path / "runs"
    dense, prune = runs / "dense-mnist5k-s0", runs / "prune-mnist5k-flops-0.25-s0"
    requests = {
        "train": ws.request("train", dense, "mnist5k", 0),
        "prune": ws.request("prune", prune, "mnist5k", 0, from_run=str(dense), budget=Budget.parse("flops:0.25")),
        "finetune": ws.request("finetune", runs / "direct-mnist5k-flops-0.25-s0", "mnist5k", 0,
                               mask=str(prune / "mask.safetensors"), weights=str(dense / "weights.safetensors")),
    }
    for kind, request in requests.items():
        assert resume_differences(request, legacy[kind]) == {}, kind
    other = ws.request("train", dense, "mnist5k", 1)
    assert resume_differences(other, legacy["train"]) == {"seed": (0, 1)}  # the comparison is not vacuous
    budget = RunRequest("prune", budget="flops:0.125")  # parsed once, where the request is made
    assert budget.budget == Budget("flops", 0.125)
    assert resume_differences(budget, legacy["prune"]) == {"budget": ("flops:0.25", "flops:0.125")}


def test_results_rows_keep_their_format_and_legacy_rows_report(tmp_path):
    cfg = _config(tmp_path)
    cell = Cell("-", "mnist5k", "chipnet-direct", Budget("flops", 0.25), 0)
    assert cell.id == LEGACY_ROW["cell"]
    row = record(cell, cfg, {"test_accuracy": 0.5, "ratios": {}, "run_dir": "x"}, 1.0)
    assert set(row) == set(LEGACY_ROW)
    (tmp_path / "results.jsonl").write_text(json.dumps(LEGACY_ROW) + "\n" + '{"cell": "cut by a ki')
    assert read_results(tmp_path) == [LEGACY_ROW]
    summary = write_reports(tmp_path, cfg)
    assert summary["done"] == 1 and summary["total"] == 2
    assert "| chipnet-direct | 7.4 ± 0.0 (n=1) |" in summary["table"]


def test_the_experiment_config_json_loads_as_a_config_again(tmp_path):
    from chipnet_zoo.experiments.runner import run_experiment

    cfg = _config(tmp_path)
    summary = run_experiment(cfg, out=tmp_path, max_cells=0, command=["experiment", "x.yaml"])
    assert summary["done"] == 0
    assert ExperimentConfig.load(tmp_path / "config.json") == cfg


def test_a_run_folder_keeps_its_files_and_keys(tmp_path):
    """A real (tiny) dense run through the workspace: file names, config and metrics keys, the command."""
    ws = Workspace(_config(tmp_path), tmp_path, command=["experiment", "compat.yaml", "--lane", "0/2"])
    run = ws.dense("mnist5k", 0)
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.json", "log.jsonl", "weights.safetensors",
                                               "curves.png"}
    assert not (run / "checkpoint").exists()
    config = json.loads((run / "config.json").read_text())
    assert set(config) == CONFIG_KEYS
    assert set(config["resolved"]) == set(legacy_resolved(tmp_path)["train"])
    assert config["resolved"]["recipe"]["phase"] == _PHASE
    assert config["command"] == ["chipnet-zoo", "experiment", "compat.yaml", "--lane", "0/2"]
    assert set(json.loads((run / "metrics.json").read_text())) == METRICS_KEYS
