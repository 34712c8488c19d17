"""DDP on CPU: two gloo processes under ``torchrun`` run dense training and then the ChipNet pruning
phase through the CLI; both ranks end with the same weights and the same mask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import chipnet_zoo as cz
from chipnet_zoo.runs.prune import mask_digest

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "mnist5k", "--max-samples", "192", "--image-size", "16", "--recipe", "tiny", "--no-progress"]


def torchrun(tmp_path: Path, *argv: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "chipnet_zoo", *argv, "--json"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # only rank 0 prints


@pytest.mark.slow
def test_two_gloo_processes_train_then_prune_to_the_same_mask(tmp_path):
    train, prune = tmp_path / "train", tmp_path / "prune"
    dense = torchrun(tmp_path, "train", "--arch", "resnet8", *SMALL, "--epochs", "1", "--out", str(train))
    config = json.loads((train / "config.json").read_text())
    assert config["accelerate"]["num_processes"] == 2 and "MULTI_CPU" in config["accelerate"]["distributed_type"]
    assert dense["world_size"] == 2 and dense["epochs_done"] == 1
    # DDP averaged the gradients: both ranks hold bitwise-identical parameters
    assert len(dense["rank_weights_sha256"]) == 2 and len(set(dense["rank_weights_sha256"])) == 1

    m = torchrun(tmp_path, "prune", "--from", str(train), "--budget", "flops:0.5", "--epochs", "2", "--out", str(prune))
    assert m["world_size"] == 2 and m["epochs_done"] == 2
    digests = m["rank_mask_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1] and m["ranks_agreed"] is True
    mask = cz.Mask.load(prune / "mask.safetensors")
    assert mask_digest(mask) == digests[0]  # the saved mask is the one both ranks learned
    assert mask.ratios["flops"] <= 0.5 and mask.metadata["hparams"]["world_size"] == 2
    assert [json.loads(line)["epoch"] for line in (prune / "log.jsonl").read_text().splitlines()] == [1, 2]
