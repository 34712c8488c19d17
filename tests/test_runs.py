"""Runs end to end on real offline data (tiny subsets, CPU): the CLI chain train -> prune -> finetune ->
eval, checkpoints and resume after SIGKILL, bad input, and the engine's building blocks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import chipnet_zoo as cz
from chipnet_zoo.checkpoint import CheckpointDir, flatten_state, rng_state, set_rng_state, unflatten_state
from chipnet_zoo.cli import main
from chipnet_zoo.evaluation import measure_latency
from chipnet_zoo.optim import EpochSchedule
from chipnet_zoo.recipes import load_recipe, phase_config
from chipnet_zoo.runs import load_run_model

REPO = Path(__file__).resolve().parents[1]
# 16x16 digits keep every step cheap; 192 training images, 1-2 epochs per phase
SMALL = ["--dataset", "mnist5k", "--max-samples", "192", "--image-size", "16", "--recipe", "tiny", "--no-progress"]
METRIC_KEYS = {"val_accuracy", "test_accuracy", "ratios", "params", "macs", "epochs_done"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads that fight other processes
    for the cores make these tiny ops 20-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli_json(capsys, *argv: str) -> dict:
    """Run the CLI in-process with --json; stdout must hold exactly one JSON document."""
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the chain -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """train -> prune -> finetune on 192 mnist5k digits (resnet8), once for the module."""
    root = tmp_path_factory.mktemp("chain")
    t, p, f = root / "train", root / "prune", root / "finetune"
    assert main(["train", "--arch", "resnet8", *SMALL, "--epochs", "2", "--out", str(t)]) == 0
    assert main(["prune", "--from", str(t), "--budget", "flops:0.5", "--out", str(p), "--no-progress"]) == 0
    assert main(["finetune", "--from", str(p), "--out", str(f), "--epochs", "1", "--no-progress"]) == 0
    return {"train": t, "prune": p, "finetune": f}


def test_chain_run_folders_and_metrics(chain):
    for kind, run in chain.items():
        config = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert config["kind"] == kind and config["arch"] == "resnet8"
        assert config["num_classes"] == 10 and config["in_chans"] == 1 and config["input_size"] == [1, 16, 16]
        assert config["dataset"]["split_info"]["sizes"]["train"] == 192
        assert {"torch", "accelerate", "chipnet-zoo", "python"} <= set(config["versions"])
        assert METRIC_KEYS <= set(metrics), kind
        assert set(metrics["ratios"]) == {"channels", "volume", "params", "flops"}
        assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["test_accuracy"] <= 1.0
        assert metrics["finished"] is True
        assert len(read_log(run)) == metrics["epochs_done"]
        assert is_png(run / "curves.png")
        assert not (run / "checkpoint").exists()  # removed once the run finished
    assert json.loads((chain["train"] / "metrics.json").read_text())["ratios"] == {
        "channels": 1.0, "volume": 1.0, "params": 1.0, "flops": 1.0}
    # the prune run's log holds the pruning-phase record of each epoch
    log = read_log(chain["prune"])
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"soft_ratio", "hard_ratio", "hard_val_accuracy", "soft_val_accuracy", "beta", "gamma"} <= set(log[0])
    # chaining kept the train run's data split
    split = [json.loads((chain[k] / "config.json").read_text())["dataset"]["split_info"]["sha256"] for k in chain]
    assert split[0] == split[1] == split[2]


def test_chain_mask_meets_budget_and_model_is_smaller(chain):
    mask = cz.Mask.load(chain["prune"] / "mask.safetensors")
    assert mask.ratios["flops"] <= 0.5 and mask.arch == "resnet8"
    meta = mask.metadata
    assert meta["dataset"] == "mnist5k" and meta["method"] == "chipnet" and meta["input_size"] == [1, 16, 16]
    assert meta["num_classes"] == 10 and meta["budget_type"] == "flops" and meta["budget"] == 0.5
    assert {"val_accuracy", "test_accuracy", "hard_val_accuracy", "best_epoch"} <= set(meta["metrics"])
    assert {"lr", "budget_weight", "crispness_weight", "recipe", "seed"} <= set(meta["hparams"])
    assert is_png(chain["prune"] / "kept_channels.png")
    assert (chain["prune"] / "pruned_weights.safetensors").is_file()

    dense = json.loads((chain["train"] / "metrics.json").read_text())
    pruned = json.loads((chain["prune"] / "metrics.json").read_text())
    tuned = json.loads((chain["finetune"] / "metrics.json").read_text())
    assert tuned["params"] < dense["params"] and tuned["macs"] < dense["macs"]
    assert tuned["macs"] <= 0.5 * dense["macs"]
    assert tuned["ratios"] == pytest.approx(mask.ratios)
    # masked == slimmed: the slim model's val accuracy equals the hard-mask accuracy of the best epoch
    assert pruned["val_accuracy"] == pytest.approx(pruned["hard_val_accuracy_best_epoch"], abs=1e-9)


def test_load_run_model_one_call(chain):
    x = torch.randn(4, 1, 16, 16)
    for kind, run in chain.items():
        model = load_run_model(run)
        assert not model.training
        assert model(x).shape == (4, 10), kind
    dense, small = load_run_model(chain["train"]), load_run_model(chain["finetune"])
    n = sum(p.numel() for p in small.parameters())
    assert n < sum(p.numel() for p in dense.parameters())
    assert n == json.loads((chain["finetune"] / "metrics.json").read_text())["params"]


def test_eval_reports_accuracy_ratios_cost_latency(chain, capsys, tmp_path):
    m = cli_json(capsys, "eval", "--from", str(chain["finetune"]), "--latency-repeats", "2")
    assert METRIC_KEYS <= set(m)
    tuned = json.loads((chain["finetune"] / "metrics.json").read_text())
    assert m["test_accuracy"] == pytest.approx(tuned["test_accuracy"])
    assert m["params"] == tuned["params"] and m["macs"] == tuned["macs"]
    assert m["ratios"] == pytest.approx(cz.Mask.load(chain["prune"] / "mask.safetensors").ratios)
    lat = m["latency_cpu"]
    assert lat["batch_64_ms"] > 0 and lat["batch_1_ms"] > 0 and lat["batch_1_ms"] < lat["batch_64_ms"]
    assert json.loads((chain["finetune"] / "eval.json").read_text())["params"] == m["params"]
    dense = cli_json(capsys, "eval", "--from", str(chain["train"]), "--latency-repeats", "2",
                     "--out", str(tmp_path / "ev"))
    assert dense["ratios"] == {"channels": 1.0, "volume": 1.0, "params": 1.0, "flops": 1.0}
    assert dense["params"] > m["params"]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["macs"] == dense["macs"]


def test_finetune_from_mask_file_on_another_dataset(chain, capsys, tmp_path):
    """--mask FILE without weights: the slimmed model is trained from scratch on animal-mnist."""
    m = cli_json(capsys, "finetune", "--mask", str(chain["prune"] / "mask.safetensors"), "--dataset", "animal-mnist",
                 "--max-samples", "128", "--image-size", "16", "--recipe", "tiny", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "ft"))
    assert m["epochs_done"] == 1 and m["macs"] == json.loads((chain["finetune"] / "metrics.json").read_text())["macs"]
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["dataset"]["name"] == "animal-mnist" and config["weights_file"] is None
    assert load_run_model(tmp_path / "ft")(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_train_samples_on_the_command_line_reaches_the_run_and_its_children(chain, capsys, tmp_path):
    """--train-samples caps the run's training split, keeps val/test whole, and a --from run inherits it."""
    split = lambda run: json.loads((run / "config.json").read_text())["dataset"]["split_info"]  # noqa: E731
    cli_json(capsys, "prune", "--from", str(chain["train"]), "--train-samples", "40", "--budget", "flops:0.5",
             "--epochs", "1", "--no-progress", "--out", str(tmp_path / "prune"))
    assert split(tmp_path / "prune")["sizes"] == {**split(chain["train"])["sizes"], "train": 40}
    assert split(tmp_path / "prune")["train_samples"] == 40 and "train_samples" not in split(chain["train"])
    cli_json(capsys, "finetune", "--from", str(tmp_path / "prune"), "--epochs", "1", "--no-progress",
             "--out", str(tmp_path / "ft"))  # no --train-samples: the --from run's
    assert split(tmp_path / "ft")["sizes"]["train"] == 40 and split(tmp_path / "ft")["train_samples"] == 40


# --- resume --------------------------------------------------------------------------------------
def _cli_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "chipnet_zoo", *argv]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    args = ["train", "--arch", "resnet8", *SMALL, "--max-samples", "128", "--epochs", "3"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_cli_cmd(*args, "--out", str(killed)), env=_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = killed / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    assert 1 <= json.loads(state.read_text())["epoch"] < 3

    resumed = subprocess.run(_cli_cmd("train", "--out", str(killed), "--resume", "--json"), env=_env(),
                             cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from the epoch-" in resumed.stderr
    assert json.loads(resumed.stdout)["epochs_done"] == 3
    subprocess.run(_cli_cmd(*args, "--out", str(clean)), env=_env(), cwd=tmp_path, check=True,
                   capture_output=True)
    a, b = read_log(killed), read_log(clean)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2, 3]
    # same weights, optimizer, schedule and RNG after the restart: the same run, bit for bit on CPU
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["val_accuracy"] for r in a] == [r["val_accuracy"] for r in b]
    assert not (killed / "checkpoint").exists()

    # a finished run is reported, not redone
    before = (killed / "log.jsonl").read_text(), (killed / "weights.safetensors").stat().st_mtime_ns
    again = subprocess.run(_cli_cmd("train", "--out", str(killed), "--resume"), env=_env(), cwd=tmp_path,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "already finished" in again.stderr
    assert ((killed / "log.jsonl").read_text(), (killed / "weights.safetensors").stat().st_mtime_ns) == before


def test_prune_interrupted_after_first_checkpoint_resumes_identically(chain, tmp_path, capsys, monkeypatch):
    """The pruning phase stopped right after its epoch-1 checkpoint resumes (pruner state, optimizer, RNG)
    and ends exactly like an uninterrupted run."""
    common = ["prune", "--from", str(chain["train"]), "--budget", "channels:0.5", "--epochs", "2", "--no-progress"]
    ref = cli_json(capsys, *common, "--out", str(tmp_path / "ref"))

    original = CheckpointDir.commit

    def commit_then_stop(self, epoch, state, world_size=1):
        original(self, epoch, state, world_size)
        raise KeyboardInterrupt  # stands in for a kill right after the checkpoint

    monkeypatch.setattr(CheckpointDir, "commit", commit_then_stop)
    out = tmp_path / "cut"
    assert main([*common, "--out", str(out)]) == 130
    monkeypatch.setattr(CheckpointDir, "commit", original)
    assert CheckpointDir(out / "checkpoint").load()[0] == 1 and not (out / "metrics.json").exists()
    assert main([*common, "--out", str(out)]) == 1  # without --resume: refused, nothing overwritten
    assert "pass --resume" in capsys.readouterr().err
    resumed = cli_json(capsys, *common, "--out", str(out), "--resume")
    assert resumed["epochs_done"] == ref["epochs_done"] == 2
    a, b = read_log(out), read_log(tmp_path / "ref")
    assert [r["epoch"] for r in a] == [1, 2]
    for key in ("loss", "soft_ratio", "hard_ratio", "hard_val_accuracy"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    assert (out / "mask.safetensors").read_bytes() != b""
    assert cz.Mask.load(out / "mask.safetensors").keep_vector().tolist() == \
        cz.Mask.load(tmp_path / "ref" / "mask.safetensors").keep_vector().tolist()


# --- bad input -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet20_mask(tmp_path_factory) -> Path:
    model = cz.create_model("resnet20", num_classes=10, in_chans=1)
    path = tmp_path_factory.mktemp("m") / "r20.safetensors"
    cz.ChipNetPruner(model, "flops:0.5", example_input=torch.zeros(1, 1, 16, 16)).mask().save(path)
    return path


@pytest.mark.parametrize("case", ["arch", "dataset", "budget", "budget-kind", "weights", "mask-arch", "from"])
def test_bad_input_is_a_clear_error(case, capsys, tmp_path, chain, resnet20_mask):
    out = ["--out", str(tmp_path / "run")]
    argv, expected = {
        "arch": (["train", "--arch", "resnet9000", *SMALL], "unknown model 'resnet9000'"),
        "dataset": (["train", "--arch", "resnet8", "--dataset", "no-such-dataset-xyz"], "unknown dataset"),
        "budget": (["prune", "--from", str(chain["train"]), "--budget", "flops=0.5"], "kind:value"),
        "budget-kind": (["prune", "--from", str(chain["train"]), "--budget", "speed:0.5"], "unknown budget kind"),
        "weights": (["prune", "--arch", "resnet8", *SMALL, "--budget", "flops:0.5", "--weights",
                     str(tmp_path / "missing.safetensors")], "weights file not found"),
        "mask-arch": (["finetune", "--arch", "resnet8", *SMALL, "--mask", str(resnet20_mask)],
                      "mask is for architecture 'resnet20'"),
        "from": (["finetune", "--from", str(chain["train"])], "is a 'train' run; expected a prune run"),
    }[case]
    capsys.readouterr()
    assert main([*argv, *out]) == 1
    captured = capsys.readouterr()
    assert expected in captured.err and captured.out == ""
    assert not (tmp_path / "run" / "config.json").exists()


def test_mask_that_does_not_fit_the_model(capsys, tmp_path, chain):
    """A mask whose arch name matches but whose structure does not (other width) names the first group."""
    mask = cz.Mask.load(chain["prune"] / "mask.safetensors")
    structure = [[n, s * 2] for n, s in mask.structure]
    keep = {n: torch.cat([v, v]) for n, v in mask.keep.items()}
    scores = {n: torch.cat([v, v]) for n, v in mask.scores.items()}
    bad = cz.Mask(keep, scores, {**mask.metadata, "structure": structure})
    bad.save(tmp_path / "bad.safetensors")
    assert main(["finetune", "--mask", str(tmp_path / "bad.safetensors"), *SMALL, "--out", str(tmp_path / "r")]) == 1
    assert "does not fit" in capsys.readouterr().err


def test_weights_of_another_shape_are_refused(capsys, tmp_path, chain):
    assert main(["prune", "--arch", "resnet20", *SMALL, "--budget", "flops:0.5", "--weights",
                 str(chain["train"] / "weights.safetensors"), "--out", str(tmp_path / "r")]) == 1
    assert "do not fit resnet20" in capsys.readouterr().err


def test_prune_round_to(capsys, tmp_path, chain):
    out = tmp_path / "r8"
    metrics = cli_json(capsys, "prune", "--from", str(chain["train"]), "--budget", "channels:0.5", "--round-to", "8",
                       "--epochs", "1", "--out", str(out))
    assert metrics["ratios"]["channels"] <= 0.5
    mask = cz.Mask.load(out / "mask.safetensors")
    assert mask.metadata["hparams"]["round_to"] == 8
    assert all(int(k.sum()) % 8 == 0 or int(k.sum()) == k.numel() for k in mask.keep.values())
    assert json.loads((out / "config.json").read_text())["resolved"]["recipe"]["phase"]["round_to"] == 8
    assert main(["prune", "--from", str(chain["train"]), "--budget", "channels:0.5", "--round-to", "0",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 1
    assert "round_to must be a positive integer" in capsys.readouterr().err
    # auto: per group, widths measured on this machine (a table at the run's example batch), recorded in the mask
    out = tmp_path / "auto"
    metrics = cli_json(capsys, "prune", "--from", str(chain["train"]), "--budget", "flops:0.5", "--round-to", "auto",
                       "--epochs", "1", "--out", str(out))
    mask = cz.Mask.load(out / "mask.safetensors")
    assert mask.metadata["hparams"]["round_to"] == "auto" and metrics["ratios"]["flops"] <= 0.5
    widths = mask.metadata["hparams"]["round_to_groups"]
    assert all(int(k.sum()) in w for k, w in zip(mask.keep.values(), widths))
    assert json.loads((out / "config.json").read_text())["resolved"]["recipe"]["phase"]["round_to"] == "auto"
    assert main(["prune", "--from", str(chain["train"]), "--budget", "flops:0.5", "--round-to", "fast",
                 "--out", str(tmp_path / "bad2"), "--no-progress"]) == 1
    assert "or 'auto'" in capsys.readouterr().err


def test_a_run_folder_in_use_is_refused_or_waited_for(capsys, tmp_path, chain):
    """Two processes on one run folder would overwrite each other's checkpoints: the CLI refuses the
    second; the experiment runner (``wait=True``) waits for the first to finish."""
    import threading

    from chipnet_zoo.runs import run_lock

    out = tmp_path / "busy"
    with run_lock(out):  # another "process" is running there
        assert main(["prune", "--from", str(chain["train"]), "--budget", "flops:0.5", "--out", str(out),
                     "--no-progress"]) == 1
    assert "is in use by another process" in capsys.readouterr().err
    assert not (out / "config.json").exists()
    events: list[str] = []
    held = threading.Event()

    def first() -> None:
        with run_lock(out):
            held.set()
            time.sleep(0.3)
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    with run_lock(out, wait=True):
        events.append("second ran")
    thread.join()
    assert events == ["first done", "second ran"]


# --- building blocks -----------------------------------------------------------------------------
def test_checkpoint_state_round_trip_and_atomic_commit(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 5, 5)).sum().backward()
    opt.step()
    state = {"epoch": 3, "optimizer": opt.state_dict(), "model": model.state_dict(), "nan": float("nan"),
             "history": [{"epoch": 1, "loss": 0.5}], "best": None, "pair": (1, "a")}
    tree, tensors = flatten_state(state)
    json.dumps(tree)  # JSON-able
    back = unflatten_state(json.loads(json.dumps(tree)), tensors)
    assert back["pair"] == (1, "a") and back["best"] is None and back["history"] == state["history"]
    assert set(back["optimizer"]["state"]) == {0, 1, 2, 3}  # integer keys survive
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])

    ck = CheckpointDir(tmp_path / "ck")
    ck.path.mkdir()
    for epoch in (1, 2):
        ck.save_rng(epoch, 0)
        ck.commit(epoch, {"model": model.state_dict(), "epoch": epoch})
    assert sorted(p.name for p in ck.path.iterdir()) == ["rng-0002-rank0.safetensors", "state-0002.safetensors",
                                                         "state.json"]
    epoch, loaded = ck.load()
    assert epoch == 2 and torch.equal(loaded["model"]["0.weight"], model.state_dict()["0.weight"])
    ck.remove()
    assert not ck.path.exists()


def test_rng_state_restores_every_generator():
    gen = torch.Generator().manual_seed(5)
    saved = rng_state({"loader": gen})
    first = (torch.rand(3), np.random.rand(), random.random(), torch.randperm(10, generator=gen))
    set_rng_state(saved, {"loader": gen})
    again = (torch.rand(3), np.random.rand(), random.random(), torch.randperm(10, generator=gen))
    assert torch.equal(first[0], again[0]) and first[1] == again[1] and first[2] == again[2]
    assert torch.equal(first[3], again[3])


def test_recipes_carry_the_paper_defaults():
    paper = load_recipe("paper")
    train, prune, tune = (phase_config(paper, p) for p in ("train", "prune", "finetune"))
    assert (train["optimizer"], train["lr"], train["momentum"], train["weight_decay"]) == ("sgd", 0.05, 0.9, 1e-3)
    assert (train["schedule"], train["step_size"], train["lr_gamma"]) == ("step", 30, 0.5)
    assert (train["batch_size"], train["epochs"]) == (128, 200)
    assert (prune["optimizer"], prune["lr"], prune["weight_decay"], prune["batch_size"], prune["epochs"]) == (
        "adamw", 1e-3, 1e-3, 32, 20)
    assert (prune["budget_weight"], prune["crispness_weight"]) == (30.0, 10.0)
    assert (tune["lr"], tune["epochs"], tune["batch_size"]) == (0.05, 300, 128)
    r164 = phase_config(load_recipe("paper-r164"), "finetune")
    assert (r164["lr"], r164["schedule"], r164["batch_size"], r164["epochs"]) == (0.1, "multistep", 64, 160)
    assert phase_config(paper, "train", epochs=3, lr=None)["epochs"] == 3
    for name in ("cpu", "tiny"):
        recipe = load_recipe(name)
        assert all(phase_config(recipe, p)["epochs"] <= 20 for p in ("train", "prune", "finetune"))


def test_recipe_errors(tmp_path):
    from chipnet_zoo.errors import RunError

    with pytest.raises(RunError, match="unknown recipe"):
        load_recipe("no-such-recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(RunError, match="unknown keys.*learning_rate"):
        phase_config(load_recipe(bad), "train")
    bad.write_text("prune:\n  optimizer: sgd\n")
    with pytest.raises(RunError, match="AdamW at a constant learning rate"):
        phase_config(load_recipe(bad), "prune")
    assert phase_config({"name": "empty"}, "prune")["optimizer"] == "adamw"
    bad.write_text("prune:\n  harden: 1.5\n")
    with pytest.raises(RunError, match=r"harden must be a fraction in \[0, 1\]"):
        phase_config(load_recipe(bad), "prune")
    bad.write_text("prune:\n  harden: 0\n")
    assert phase_config(load_recipe(bad), "prune")["harden"] == 0.0  # 0 = the authors' purely soft phase


def test_epoch_schedules():
    assert [EpochSchedule("step", 100, step_size=30, lr_gamma=0.5)(e) for e in (0, 29, 30, 60)] == [1, 1, 0.5, 0.25]
    multi = EpochSchedule("multistep", 20, lr_gamma=0.1, milestones=[0.5, 0.75])
    assert [multi(e) for e in (9, 10, 14, 15)] == pytest.approx([1, 0.1, 0.1, 0.01])
    assert EpochSchedule("cosine", 10)(10) == pytest.approx(0.0) and EpochSchedule("constant", 5)(4) == 1.0


def test_measure_latency():
    model = cz.create_model("resnet8", num_classes=10, in_chans=1)
    lat = measure_latency(model, (1, 16, 16), (8, 1), repeats=3, warmup=1)
    assert lat["batch_8_ms"] > 0 and lat["batch_1_ms"] > 0 and lat["batch_8_samples_per_s"] > 0


def test_kept_channels_plot_lists_groups_in_network_order():
    from chipnet_zoo.baselines import baseline_mask
    from chipnet_zoo.mask_plot import kept_channels_png, network_order

    model = cz.create_model("resnet8", num_classes=10, in_chans=1)
    mask = baseline_mask(model, "flops:0.25", "l1", example_input=torch.zeros(1, 1, 28, 28))
    order = network_order(mask)
    position = {n: i for i, (n, _) in enumerate(model.named_modules())}
    assert sorted(order) == sorted(n for n, _ in mask.structure)
    assert [position[n] for n in order] == sorted(position[n] for n in order)
    assert order[0] == "conv1" and [n for n, _ in mask.structure] != order  # the graph's order is not the network's
    png = kept_channels_png(mask)
    assert png.startswith(b"\x89PNG") and png == kept_channels_png(mask)  # deterministic bytes
