"""Issue 11: every bad input refused with the project's own error, nothing lost, no secret printed.
Each test names the item it reproduces; docs/reliability.md maps the promises to these tests."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save
from test_registry import TOKEN, make_mask, stored_file

from chipnet_zoo import constants
from chipnet_zoo.errors import (
    BudgetExceededError,
    ChipNetZooError,
    EntryNotFoundError,
    HubServerError,
    IndexFormatError,
    MaskContentError,
    MaskFormatError,
    OutputPathError,
    ResumeMismatchError,
    UnknownDatasetError,
)
from chipnet_zoo.mask import Mask
from chipnet_zoo.registry import MaskRegistry, parse_index

REPO = Path(__file__).resolve().parents[1]
KEY = "resnet8/cifar10/flops-0.25"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from chipnet_zoo.cli import main

    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def _raw_mask(mask: Mask, keep: dict | None = None, scores: dict | None = None, **meta: str) -> bytes:
    """Safetensors bytes with ``mask``'s metadata (JSON-encoded values replaced by ``meta``) and tensors
    replaced by ``keep`` / ``scores`` - a file as a careless or hostile writer could make it."""
    tensors = {f"mask/{n}": v for n, v in (keep if keep is not None else mask.keep).items()}
    tensors.update({f"score/{n}": v for n, v in (scores if scores is not None else mask.scores).items()})
    encoded = mask._encoded_metadata()
    encoded.update({constants.METADATA_NAMESPACE + k: v for k, v in meta.items()})
    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=encoded)


# --- item 1: an overwrite is atomic; kill -9 at any instant leaves every key pullable ----------------
_OVERWRITER = r"""
import sys
from chipnet_zoo.registry import MaskRegistry
root, *files = sys.argv[1:]
blobs = [open(f, "rb").read() for f in files]
reg = MaskRegistry(root)
reg.push(blobs[0], overwrite=True)  # warm up: imports and the architecture's cost model
print("ready", flush=True)
i = 0
while True:
    reg.push(blobs[i % len(blobs)], overwrite=True)
    i += 1
"""


@pytest.mark.parametrize("rounds", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_item1_overwrite_loop_killed_readers_see_old_or_new(tmp_path, rounds):
    root = tmp_path / "zoo"
    versions: dict[str, set[bytes]] = {}
    files = []
    for budget in (0.25, 0.5):
        for seed in (1, 2):
            data = make_mask(budget, seed=seed).to_bytes()
            path = tmp_path / f"m-{budget}-{seed}.safetensors"
            path.write_bytes(data)
            files.append(str(path))
            versions.setdefault(f"resnet8/cifar10/flops-{budget:g}", set()).add(data)
    reg = MaskRegistry(root)
    for f in files[::2]:
        reg.push(f)
    reads = 0
    rng = random.Random(0)
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, "-c", _OVERWRITER, str(root), *files], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
            deadline = time.monotonic() + 1.0 + rng.random()
            while time.monotonic() < deadline:  # concurrent readers: always a complete old or new entry
                for key, allowed in versions.items():
                    assert MaskRegistry(root).pull_bytes(key) in allowed
                    reads += 1
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        for key, allowed in versions.items():  # the kill left a readable registry
            assert MaskRegistry(root).pull_bytes(key) in allowed
            assert MaskRegistry(root).pull(key).arch == "resnet8"
    assert reads > 20
    # the next push collects what the killed writers left behind: one stored file per key, no temp files
    MaskRegistry(root).push(files[0], overwrite=True)
    assert list(root.rglob("*.tmp")) == []
    stored = sorted(p.name for p in (root / "masks/resnet8/cifar10").iterdir())
    assert len(stored) == 2 and all(name.count(".") == 3 for name in stored), stored


def test_item1_overwrite_keeps_the_old_file_until_the_index_moves(tmp_path):
    root = tmp_path / "zoo"
    reg = MaskRegistry(root)
    old = make_mask(0.25, seed=1)
    new = make_mask(0.25, seed=2)
    entry = reg.push(old)
    old_file = stored_file(root, entry.path)
    assert old_file.name == f"flops-0.25.{entry.sha256}.safetensors"  # content-addressed
    reader_view = reg.entry(KEY)  # a reader that read the index just before the overwrite
    reg.push(new, overwrite=True)
    assert not old_file.exists()  # collected after the index swap
    assert MaskRegistry(root).pull(KEY) == new
    # the stale reader's file is gone: it starts over on the new index instead of failing
    assert reg.pull_bytes(KEY) == new.to_bytes() and reader_view.sha256 != reg.entry(KEY).sha256


def test_item1_legacy_layout_still_reads(tmp_path):
    """Folders written before content addressing (the built-in zoo is one) keep files at their logical path."""
    root = tmp_path / "zoo"
    entry = MaskRegistry(root).push(make_mask(0.25))
    stored = stored_file(root, entry.path)
    stored.rename(root / entry.path)
    assert MaskRegistry(root).pull_bytes(KEY) == (root / entry.path).read_bytes()
    MaskRegistry(root).push(make_mask(0.25, seed=5), overwrite=True)  # replaced: the legacy file is collected
    assert not (root / entry.path).exists() and MaskRegistry(root).pull(KEY) == make_mask(0.25, seed=5)


# --- item 2: mask contents are checked on load and on push ------------------------------------------
def _corrupt_cases() -> dict[str, tuple[str, callable]]:
    def int_mask(m):
        keep = {n: v.to(torch.int64) * 7 for n, v in m.keep.items()}
        return _raw_mask(m, keep=keep), "mask/"

    def flat_2d(m):
        name = next(iter(m.keep))
        keep = dict(m.keep)
        keep[name] = keep[name].reshape(1, -1)
        return _raw_mask(m, keep=keep), f"mask/{name}"

    def nan_scores(m):
        name = next(iter(m.scores))
        scores = dict(m.scores)
        scores[name] = scores[name].clone()
        scores[name][0] = float("nan")
        return _raw_mask(m, scores=scores), f"score/{name}"

    def inf_scores(m):
        scores = {n: v.clone() for n, v in m.scores.items()}
        next(iter(scores.values()))[-1] = float("inf")
        return _raw_mask(m, scores=scores), "score/"

    def bool_scores(m):
        return _raw_mask(m, scores={n: v > 0.5 for n, v in m.scores.items()}), "score/"

    def no_group(m):
        return _raw_mask(m, keep={}, scores={}, structure="[]"), "structure"

    return {"int64 mask": int_mask, "2-D mask": flat_2d, "NaN score": nan_scores, "inf score": inf_scores,
            "bool scores": bool_scores, "no group": no_group}


@pytest.mark.parametrize("case", list(_corrupt_cases()))
def test_item2_mask_tensors_validated_on_load_and_push(case, tmp_path):
    data, field = _corrupt_cases()[case](make_mask(0.25))
    with pytest.raises(MaskFormatError) as info:
        Mask.from_bytes(data)
    assert (info.value.field or "").startswith(field), (info.value.field, str(info.value))
    with pytest.raises(MaskFormatError):
        MaskRegistry(tmp_path / "zoo").push(data)
    assert not (tmp_path / "zoo" / "masks").exists()


def test_item2_push_records_true_ratios_and_refuses_a_false_budget(tmp_path):
    reg = MaskRegistry(tmp_path / "zoo")
    honest = make_mask(0.25)
    true = honest.true_ratios()
    # a mask keeping every channel, labelled flops-0.25 with made-up ratios: refused
    everything = Mask({n: torch.ones_like(v) for n, v in honest.keep.items()}, honest.scores, honest.metadata)
    with pytest.raises(BudgetExceededError, match=r"true flops ratio 1 .*exceeds budget flops:0.25") as info:
        reg.push(everything)
    assert (info.value.key, info.value.kind, info.value.ratio) == (KEY, "flops", 1.0)
    # ratios that lie but within the budget: the true ones are published, never the stated ones
    liar = honest.with_metadata(ratios={"channels": 0.01, "volume": 0.01, "params": 0.01, "flops": 0.01})
    entry = reg.push(liar)
    assert entry.ratios == true
    assert reg.pull(KEY).ratios == true and reg.pull(KEY).keep_vector().equal(honest.keep_vector())


def test_item2_shipped_zoo_states_its_true_ratios(tmp_path):
    """Publishing the built-in zoo (as docs/experiments.md shows) passes the push checks unchanged."""
    zoo = MaskRegistry.builtin()
    for entry in zoo.list():
        mask = zoo.pull(entry.key)
        assert mask.verified() is mask, entry.key
    published = MaskRegistry(tmp_path / "zoo").push_registry(zoo)
    assert [(e.key, e.sha256) for e in published] == [(e.key, e.sha256) for e in zoo.list()]


def test_item2_structure_must_fit_the_architecture(tmp_path):
    reg = MaskRegistry(tmp_path / "zoo")
    with pytest.raises(MaskContentError, match="does not fit its architecture 'resnet20'") as info:
        reg.push(make_mask(0.25).with_metadata(arch="resnet20"))
    assert info.value.field == "structure"
    with pytest.raises(MaskContentError, match="unknown architecture") as info:
        reg.push(make_mask(0.25).with_metadata(arch="nosuchnet"))
    assert info.value.field == "arch"
    assert not (tmp_path / "zoo" / "masks").exists()


# --- item 3: --resume with other options is refused, listing them ---------------------------------
def _unfinished_run(tmp_path: Path) -> Path:
    from chipnet_zoo.runs import Run, RunRequest, resolve

    options = resolve(RunRequest("train", arch="resnet8", dataset="mnist5k", recipe="tiny", max_samples=64,
                                 epochs=2, lr=0.05, seed=3))
    run = Run(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"kind": "train", "resolved": options.to_dict()})
    return run.path


def test_item3_resume_with_changed_options_refused(tmp_path, capsys):
    run = _unfinished_run(tmp_path)
    rc, _, err = cli(capsys, "train", "--out", str(run), "--resume", "--epochs", "5", "--lr", "0.1",
                     "--arch", "resnet20", "--seed", "3", "--dataset", "mnist5k")
    assert rc == 1
    line = err.splitlines()[0]
    assert "cannot resume" in line and "--epochs: the run has 2, asked 5" in line
    assert "--lr: the run has 0.05, asked 0.1" in line and "--arch: the run has 'resnet8'" in line
    assert "--seed" not in line and "--dataset" not in line  # same as the run's: not a difference
    assert not (run / "log.jsonl").exists()  # refused before anything ran

    (run / "metrics.json").write_text(json.dumps({"finished": True, "epochs_done": 2}))
    rc, _, err = cli(capsys, "train", "--out", str(run), "--resume", "--budget", "flops:0.5")
    assert rc == 1 and "--budget: the run has None, asked 'flops:0.5'" in err  # a finished run too


def test_item3_resume_with_the_runs_own_options_is_allowed(tmp_path):
    from chipnet_zoo.runs.options import RunRequest, resume_differences

    cfg = json.loads((_unfinished_run(tmp_path) / "config.json").read_text())["resolved"]
    same = RunRequest("train", out="x", resume=True, arch="resnet8", dataset="mnist5k", recipe="tiny",
                      max_samples=64, epochs=2, lr=0.05, seed=3, device="cpu", workers=2)
    assert resume_differences(same, cfg) == {}
    assert resume_differences(RunRequest("train", resume=True), cfg) == {}
    other = RunRequest("train", resume=True, recipe="cpu", round_to=8, max_samples=65, from_run="elsewhere",
                       train_samples=32)
    assert set(resume_differences(other, cfg)) == {"recipe", "round_to", "max_samples", "from_run", "train_samples"}
    with pytest.raises(ResumeMismatchError) as info:
        from chipnet_zoo.runs import execute

        execute(RunRequest("train", out=str(tmp_path / "run"), resume=True, epochs=3, device="cpu"))
    assert info.value.differences == {"epochs": (2, 3)}


def test_item3_every_run_option_is_compared_or_declared_free():
    """A new RunRequest field must be compared on --resume or declared harmless (RESUME_FREE)."""
    from dataclasses import fields

    from chipnet_zoo.runs.options import RESUME_FREE, RunRequest, _run_values

    compared = set(_run_values({}))
    assert {f.name for f in fields(RunRequest)} == compared | set(RESUME_FREE)
    assert not compared & set(RESUME_FREE)


# --- items 4 and 7: malformed metadata and index: the project's error naming the field --------------
@pytest.mark.parametrize("field, value", [
    ("structure", "5"), ("structure", "null"), ("structure", '[["conv1", -3]]'), ("ratios", "[1, 2]"),
    ("ratios", '"abc"'), ("ratios", '{"flops": "abc"}'), ("ratios", '{"flops": NaN}'), ("num_classes", "true"),
    ("input_size", "[3, 32]"), ("hparams", '{"round_to": 0}'),
    pytest.param("structure", "[" * 100_000 + "]" * 100_000, id="structure-deep"),
    pytest.param("metrics", "[" * 50 + "]" * 50, id="metrics-deep"), ("budget", '"0.25"'),
])
def test_item4_malformed_metadata_names_the_field(field, value):
    data = _raw_mask(make_mask(0.25), **{field: value})
    with pytest.raises(MaskFormatError) as info:
        Mask.from_bytes(data)
    assert info.value.field == field, str(info.value)
    assert field in str(info.value)


def test_item4_transfer_refuses_bad_metadata_before_training(tmp_path):
    import chipnet_zoo as cz
    from chipnet_zoo.mask_transfer import StudentTraining

    path = tmp_path / "bad.safetensors"
    path.write_bytes(_raw_mask(make_mask(0.25), ratios='"abc"'))
    start = time.perf_counter()
    with pytest.raises(MaskFormatError, match="'ratios'"):
        cz.transfer(path, "mnist5k", protocol="scratch", out=tmp_path / "run",
                    training=StudentTraining(max_samples=64, epochs=1), progress=False)
    assert time.perf_counter() - start < 5 and not (tmp_path / "run").exists()


def _index(**changes) -> bytes:
    row = {"key": KEY, "arch": "resnet8", "dataset": "cifar10", "budget_type": "flops", "budget": 0.25,
           "path": f"masks/{KEY}.safetensors", "sha256": "0" * 64, "size": 10, "ratios": {"flops": 0.2}}
    doc = {"format": "chipnet-zoo-registry", "version": 1, "entries": [row]}
    for key, value in changes.items():
        (doc if key in ("format", "version", "entries") else row)[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("changes, field", [
    ({"version": True}, "version"), ({"version": 0}, "version"), ({"version": -5}, "version"),
    ({"version": "1"}, "version"), ({"version": 2}, "version"), ({"size": True}, "size"), ({"size": -1}, "size"),
    ({"budget": "0.25"}, "budget"), ({"budget": True}, "budget"), ({"budget": 0.5}, "budget"),
    ({"ratios": [1, 2]}, "ratios"), ({"ratios": {"flops": "x"}}, "ratios"), ({"num_classes": True}, "num_classes"),
    ({"input_size": "abc"}, "input_size"), ({"metrics": 5}, "metrics"), ({"key": 3}, "key"),
    ({"weights": {"kind": "slim", "path": 5, "sha256": "0" * 64}}, "weights"), ({"format": "other"}, "format"),
    ({"entries": {}}, "entries"), ({"arch": "resnet20"}, "arch"),
])
def test_item7_strict_index_checks(changes, field):
    with pytest.raises(IndexFormatError) as info:
        parse_index(_index(**changes), "index.json")
    assert info.value.field == field and info.value.where == "index.json", str(info.value)


def test_item4_index_depth_and_size_are_bounded(tmp_path, monkeypatch):
    assert parse_index(_index(), "index.json")[KEY].ratios == {"flops": 0.2}
    deep = _index(metrics=json.loads("[" * 30 + "]" * 30)).replace(b"[]", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(IndexFormatError, match="nested deeper"):
        parse_index(deep, "index.json")
    start = time.perf_counter()  # an unterminated string of escaped quotes: no quadratic scan (was a hang)
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        parse_index(b'"' + b'\\"' * 1_000_000, "index.json")
    assert time.perf_counter() - start < 5
    from chipnet_zoo.registry import index

    monkeypatch.setattr(index, "MAX_INDEX_BYTES", 100)
    with pytest.raises(IndexFormatError, match="more than the 100 accepted"):
        parse_index(_index(), "index.json")
    from chipnet_zoo.registry import local as _registry_local

    root = tmp_path / "zoo"
    root.mkdir()
    with open(root / "index.json", "wb") as f:  # a huge (sparse) index is refused before it is read
        f.truncate(_registry_local.MAX_INDEX_BYTES + 1)
    with pytest.raises(IndexFormatError, match="more than the"):
        MaskRegistry(root).list()
    from chipnet_zoo import mask as mask_module

    monkeypatch.setattr(mask_module, "MAX_MASK_BYTES", 1000)
    big = tmp_path / "big.safetensors"
    big.write_bytes(make_mask(0.25).to_bytes())
    with pytest.raises(MaskFormatError, match="more than the 1000 accepted"):
        Mask.load(big)


# --- item 5: one-line errors, nothing left behind ------------------------------------------------------
def test_item5_index_json_that_is_a_directory(tmp_path, capsys):
    root = tmp_path / "zoo"
    (root / "index.json").mkdir(parents=True)
    with pytest.raises(IndexFormatError, match="not a regular file"):
        MaskRegistry(root).list()
    path = tmp_path / "m.safetensors"
    path.write_bytes(make_mask(0.25).to_bytes())
    rc, _, err = cli(capsys, "push", str(path), "--registry", str(root))
    assert rc == 1 and err.splitlines()[0].startswith("chipnet-zoo push: error: corrupt registry index")
    assert "Traceback" not in err and not (root / "masks").exists()


def test_item5_pull_out_existing_directory(tmp_path, capsys):
    root = tmp_path / "zoo"
    MaskRegistry(root).push(make_mask(0.25))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        MaskRegistry(root).pull_file(KEY, out)
    rc, _, err = cli(capsys, "pull", KEY, "--registry", str(root), "--out", str(out))
    assert rc == 1 and "is a folder; give a file path" in err.splitlines()[0] and "Traceback" not in err
    assert list(out.iterdir()) == [] and list(tmp_path.glob(".*.tmp")) == []


_LIMITED_CLI = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                "limit = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
                "from chipnet_zoo.cli import main; sys.exit(main(sys.argv[2:]))")


@pytest.mark.parametrize("fails_on", ["mask file", pytest.param("index", marks=pytest.mark.slow)])
def test_item5_disk_full_is_one_line_and_leaves_nothing(tmp_path, fails_on):
    """A real file-size limit (RLIMIT_FSIZE) makes the kernel refuse writes, as a full disk does."""
    root = tmp_path / "zoo"
    reg = MaskRegistry(root)
    for i, b in enumerate((0.1, 0.15, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5)):
        reg.push(make_mask(b, seed=i))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    new = tmp_path / "new.safetensors"
    new.write_bytes(make_mask(0.25, seed=9).to_bytes())
    index_size = len((root / "index.json").read_bytes())
    assert new.stat().st_size < index_size
    limit = 100 if fails_on == "mask file" else (new.stat().st_size + index_size) // 2
    proc = subprocess.run([sys.executable, "-c", _LIMITED_CLI, str(limit), "push", str(new), "--registry",
                           str(root)], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    first = proc.stderr.splitlines()[0]
    assert first.startswith("chipnet-zoo push: error: cannot write to the registry") and "nothing was published" in first
    assert "Traceback" not in proc.stderr
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before  # no temp file, no orphan mask file, the index untouched
    assert MaskRegistry(root).pull(make_mask(0.1).metadata and "resnet8/cifar10/flops-0.1").arch == "resnet8"


def test_item5_truncated_checkpoint_is_a_clear_error(tmp_path, capsys):
    from chipnet_zoo.checkpoint import CheckpointDir
    from chipnet_zoo.errors import CheckpointError

    ckpt = CheckpointDir(tmp_path / "checkpoint")
    ckpt.path.mkdir()
    ckpt.commit(1, {"w": torch.arange(1000.0)})
    tensors = ckpt.path / "state-0001.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        ckpt.load()
    assert info.value.path == str(tensors) and "\n" not in str(info.value)


# --- item 6: a Hub 5xx says what the server answered ------------------------------------------------
def test_item6_hub_5xx_reports_the_server_answer(fake_hub, hub_repo, fresh_hf_cache):
    import shutil

    reg = MaskRegistry(f"hf://{hub_repo}")
    reg.push(make_mask(0.25))
    shutil.rmtree(fresh_hf_cache)  # with a cached commit huggingface_hub would (rightly) fall back to it
    with fake_hub.failing(500, "/revision/"):
        with pytest.raises(HubServerError) as info:
            MaskRegistry(f"hf://{hub_repo}").list()
    assert info.value.status == 500 and "injected 500" in info.value.answer
    assert "answered 500" in str(info.value) and "unreachable" not in str(info.value)
    assert "HF_HUB_OFFLINE" not in str(info.value)
    with fake_hub.failing(502, "/commit/", method="POST"):
        with pytest.raises(HubServerError, match="answered 502") as info:
            reg.push(make_mask(0.5))
    assert info.value.status == 502


# --- item 8: no token, no URL userinfo in errors or reprs ------------------------------------------------
def test_item8_explicit_token_is_scrubbed_when_the_server_echoes_it(fake_hub, hub_repo, fresh_hf_cache):
    secret = "hf_explicit_token_0123456789abcdef"
    reg = MaskRegistry(f"hf://{hub_repo}", token=secret)
    for where, action in (("/revision/", reg.list), ("/api/repos/create", lambda: reg.push(make_mask(0.25)))):
        with fake_hub.failing(500, where, echo_headers=True):
            with pytest.raises(ChipNetZooError) as info:
                action()
        message = str(info.value)
        assert "authorization" in message.lower()  # the server did echo the request headers...
        assert secret not in message and TOKEN not in message  # ...but no token survives
        fields = " ".join(str(v) for v in vars(info.value).values())  # nor in the error's fields (answer, ...)
        assert info.value.registry == f"hf://{hub_repo}" and secret not in fields and TOKEN not in fields
    assert secret not in repr(reg) + repr(reg._backend)


def test_item8_endpoint_userinfo_is_scrubbed(fake_hub, hub_repo, fresh_hf_cache, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants as hf_constants

    password = "s3cr3t-passw0rd"
    endpoint = fake_hub.endpoint.replace("http://", f"http://alice:{password}@")
    reg = MaskRegistry(f"hf://{hub_repo}", endpoint=endpoint)
    assert password not in repr(reg._backend) and "***@" in repr(reg._backend)
    with fake_hub.failing(500, "/api/repos/create", echo_headers=True):
        with pytest.raises(ChipNetZooError) as info:
            reg.push(make_mask(0.25))
    basic = base64.b64encode(f"alice:{password}".encode()).decode().rstrip("=")
    assert password not in str(info.value) and basic not in str(info.value)
    fields = " ".join(str(v) for v in vars(info.value).values())
    assert password not in fields and basic not in fields
    # the same through HF_ENDPOINT and the command line
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    path = tmp_path / "m.safetensors"
    path.write_bytes(make_mask(0.25).to_bytes())
    with fake_hub.failing(503, "/api/repos/create", echo_headers=True):
        rc, out, err = cli(capsys, "push", str(path), "--registry", f"hf://{fake_hub.unique_repo_id()}")
    assert rc == 1 and "answered 503" in err
    assert password not in err + out and basic not in err + out and TOKEN not in err + out


# --- items 9 and 10: datasets --------------------------------------------------------------------------
def test_item9_local_dataset_under_a_hidden_directory(tmp_path):
    import numpy as np
    from PIL import Image

    from chipnet_zoo.data import load_data

    root = tmp_path / ".cache" / "chipnet" / "my-imagefolder"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "cat" / ".DS_Store").write_bytes(b"junk")  # hidden files inside the dataset are still skipped
    bundle = load_data(str(root))
    assert bundle.source["kind"] == "imagefolder" and bundle.num_classes == 2


def test_item10_mistyped_dataset_fails_fast_with_a_suggestion(fake_hub):
    from chipnet_zoo.data import load_data

    before = len(fake_hub.requests)
    start = time.perf_counter()
    with pytest.raises(UnknownDatasetError, match="did you mean mnist5k") as info:
        load_data("mnist6k")
    assert info.value.suggestions == ["mnist5k"] and info.value.name == "mnist6k"
    with pytest.raises(UnknownDatasetError, match="not a Hub dataset id"):
        load_data("acme/bad name!")
    with pytest.raises(UnknownDatasetError, match="did you mean animal-mnist"):
        load_data("animal-mnst")
    assert len(fake_hub.requests) == before and time.perf_counter() - start < 2  # no network call


# --- items 11 and 12: the demo and the built-in zoo --------------------------------------------------
def test_item11_demo_writes_its_own_registry_ignored_by_git(tmp_path):
    from chipnet_zoo.demo import demo_registry

    reg = demo_registry(tmp_path / "demo")
    assert Path(reg.location) == tmp_path / "demo" / "registry"
    assert demo_registry(tmp_path / "demo", str(tmp_path / "mine")).location == str(tmp_path / "mine")
    if (REPO / ".git").exists():
        for path in ("chipnet-zoo-demo/registry/index.json", "chipnet-zoo-demo-quick/runs/x/config.json"):
            assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0, path


def test_item12_not_found_hints_include_the_builtin_zoo(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "CHIPNET_ZOO_REGISTRY", str(tmp_path / "default"))
    zoo = MaskRegistry.builtin().list()
    budgets = [e.key.rsplit("/", 1)[1] for e in sorted(zoo, key=lambda e: e.budget) if e.dataset == "mnist5k"]
    assert budgets, "the shipped zoo has resnet8/mnist5k masks"
    MaskRegistry().push(make_mask(0.3, dataset="animal-mnist"))  # the user's own registry holds another dataset
    with pytest.raises(EntryNotFoundError) as info:
        MaskRegistry().pull("resnet8/mnist5k/flops-0.5")
    assert f"budgets available for resnet8 on mnist5k: {', '.join(budgets)}" in str(info.value)
    assert "or the built-in zoo" in str(info.value)
    with pytest.raises(EntryNotFoundError) as info:
        MaskRegistry().pull("resnet8/cifar100/flops-0.5")
    assert "flops-0.3" in str(info.value) and f"mnist5k ({', '.join(budgets)})" in str(info.value)


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """mkstemp makes 0600 files; what the package writes must be readable like any file open() creates."""
    import os

    from chipnet_zoo._atomic import atomic_path, atomic_write

    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    assert atomic_write(tmp_path / "a.bin", b"x").stat().st_mode & 0o777 == expected
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"y")
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == expected
