"""The mask registry, local folder and Hub (against the loopback fake Hub from conftest)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chipnet_zoo import constants
from chipnet_zoo.errors import (
    BudgetExceededError,
    EntryExistsError,
    EntryNotFoundError,
    IntegrityError,
    InvalidKeyError,
    InvalidLocationError,
    InvalidRepoIdError,
    MaskFormatError,
    MetadataMissingError,
    RegistryError,
    RegistryNotFoundError,
)
from chipnet_zoo.mask import Mask
from chipnet_zoo.registry import MaskRegistry, canonical_key, decode_name, encode_name, make_key, parse_key

pytestmark = pytest.mark.hub
TOKEN = os.environ["HF_TOKEN"]


@functools.cache
def _graph_and_cost(arch: str):
    from chipnet_zoo.cost import CostModel
    from chipnet_zoo.groups import build_channel_graph
    from chipnet_zoo.models import create_model

    graph = build_channel_graph(create_model(arch, num_classes=10, in_chans=3), torch.zeros(1, 3, 32, 32))
    return graph, CostModel(graph)


def make_mask(budget: float = 0.25, arch: str = "resnet8", dataset: str | None = "cifar10", seed: int = 0,
              acc: float = 0.8) -> Mask:
    """A mask in the real file format with random scores, thresholded at ``budget`` on the real architecture
    (its stated ratios are the true ones, as a push checks)."""
    from chipnet_zoo.budget import Budget
    from chipnet_zoo.threshold import threshold_scores

    graph, cost = _graph_and_cost(arch)
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(graph.num_channels, generator=g)
    keep = threshold_scores(scores, cost, Budget("flops", budget))
    meta = {"arch": arch, "budget_type": "flops", "budget": budget, "method": "chipnet",
            "ratios": cost.hard_ratios(keep), "metrics": {"hard_val_accuracy": acc}, "num_classes": 10,
            "input_size": [3, 32, 32]}
    if dataset:
        meta["dataset"] = dataset
    return Mask({gr.name: keep[gr.indices] for gr in graph.groups},
                {gr.name: scores[gr.indices] for gr in graph.groups}, meta)


def stored_file(root: Path, rel: str) -> Path:
    """The one file a local registry stores for ``rel`` (content-addressed: ``<stem>.<sha256>.safetensors``)."""
    p = Path(rel)
    (found,) = (root / p.parent).glob(f"{p.stem}.*{p.suffix}")
    return found


def write_mask(path: Path, **kwargs) -> tuple[Path, bytes]:
    data = make_mask(**kwargs).to_bytes()
    path.write_bytes(data)
    return path, data


@pytest.fixture(params=["local", "hub"])
def location(request, tmp_path, hub_repo, fresh_hf_cache) -> str:
    return str(tmp_path / "zoo") if request.param == "local" else f"hf://{hub_repo}"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chipnet_zoo", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


# --- keys and names -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch, dataset, budget, key", [
    ("resnet56", "cifar100", "flops:0.1", "resnet56/cifar100/flops-0.1"),
    ("resnet20", "cifar10", "params:0.0625", "resnet20/cifar10/params-0.0625"),
    ("tv/resnet50", "uoft-cs/cifar10", "volume:0.25", "tv--resnet50/uoft-cs--cifar10/volume-0.25"),
    ("wrn_16.8", "mnist5k", "channels:1", "wrn_16.8/mnist5k/channels-1"),
])
def test_key_round_trip(arch, dataset, budget, key):
    assert make_key(arch=arch, dataset=dataset, budget=budget) == key
    a, d, b = parse_key(key)
    assert (a, d, str(b)) == (arch, dataset, budget)
    assert decode_name(encode_name(arch)) == arch


def test_canonical_key_spellings():
    assert canonical_key("resnet8/cifar10/flops-0.250") == "resnet8/cifar10/flops-0.25"
    assert canonical_key("tv/resnet50/cifar10/flops-0.25") == "tv--resnet50/cifar10/flops-0.25"
    assert canonical_key("resnet8/cifar10/macs-0.5") == "resnet8/cifar10/flops-0.5"


@pytest.mark.parametrize("key", [
    "../resnet8/flops-0.1", "resnet8/../flops-0.1", "/abs/cifar10/flops-0.1", "resnet8\\x/cifar10/flops-0.1",
    "resnet8/cifar10", "resnet8/cifar10/flops-2", "resnet8/cifar10/size-0.1", "resnet8/cifar10/flops-",
    "res net/cifar10/flops-0.1", "a---b/cifar10/flops-0.1", "a-/cifar10/flops-0.1", ".hidden/cifar10/flops-0.1", "C:/x/flops-0.1",
    "resnet8//flops-0.1", "", "x" * 300,
])
def test_bad_keys_refused(key, tmp_path):
    with pytest.raises(InvalidKeyError):
        parse_key(key)
    with pytest.raises(InvalidKeyError):
        MaskRegistry(tmp_path).pull(key)


@pytest.mark.parametrize("location", [
    "hf://acme", "hf://../x", "hf://acme/../x", "hf://a/b/c", "hf://acme/my repo", "hf://acme/x--y",
    "hf://acme/x@../main", "hf:///x", "s3://bucket/x", "hf://-acme/x",
])
def test_bad_locations_refused(location):
    with pytest.raises(InvalidLocationError) as info:  # not an InvalidKeyError: that is for keys only
        MaskRegistry(location)
    assert not isinstance(info.value, InvalidKeyError) and isinstance(info.value, ValueError)
    assert info.value.location.startswith(location.split("/")[0])
    if location.startswith("hf://") and "@" not in location:
        assert isinstance(info.value, InvalidRepoIdError) and info.value.repo_id


# --- round trips in both backends -----------------------------------------------------------------
def test_push_list_pull_round_trip(location, tmp_path):
    reg = MaskRegistry(location)
    path, data = write_mask(tmp_path / "m.safetensors", budget=0.25)
    entry = reg.push(path)
    assert entry.key == "resnet8/cifar10/flops-0.25"
    assert entry.path == "masks/resnet8/cifar10/flops-0.25.safetensors" and entry.size == len(data)
    reg.push(make_mask(0.1, seed=1))
    reg.push(make_mask(0.5, arch="tv/resnet50", dataset="cifar100", seed=2))
    fresh = MaskRegistry(location)  # a new instance sees the same index
    assert [e.key for e in fresh.list()] == ["resnet8/cifar10/flops-0.1", "resnet8/cifar10/flops-0.25",
                                             "tv--resnet50/cifar100/flops-0.5"]
    assert [e.key for e in fresh.list(arch="tv/resnet50")] == ["tv--resnet50/cifar100/flops-0.5"]
    assert len(fresh.list(dataset="cifar10", budget_type="flops")) == 2
    assert fresh.list(budget_type="params") == []
    listed = fresh.entry("resnet8/cifar10/flops-0.25")
    assert listed.ratios == Mask.from_bytes(data).true_ratios() and listed.ratios["flops"] <= 0.25
    assert listed.metrics == {"hard_val_accuracy": 0.8}
    assert fresh.pull_bytes("resnet8/cifar10/flops-0.25") == data  # identical bytes
    assert fresh.pull(arch="resnet8", dataset="cifar10", budget="flops:0.25") == Mask.from_bytes(data)
    assert fresh.pull("tv/resnet50/cifar100/flops-0.5").arch == "tv/resnet50"
    out = fresh.pull_file("resnet8/cifar10/flops-0.25", tmp_path / "out" / "m.safetensors")
    assert out.read_bytes() == data
    with pytest.raises(EntryNotFoundError, match=r"budgets available for resnet8 on cifar10: flops-0.1, flops-0.25"):
        fresh.pull("resnet8/cifar10/flops-0.3")
    with pytest.raises(EntryNotFoundError, match="datasets: cifar100"):
        fresh.pull("tv--resnet50/cifar10/flops-0.5")


def test_push_overrides_and_conflicts(location):
    reg = MaskRegistry(location)
    with pytest.raises(MetadataMissingError, match="pass dataset=") as info:
        reg.push(make_mask(dataset=None))
    assert info.value.field == "dataset" and isinstance(info.value, ValueError)
    entry = reg.push(make_mask(dataset=None, budget=0.3), dataset="mnist5k", budget="flops:0.4")
    assert entry.key == "resnet8/mnist5k/flops-0.4"
    pulled = reg.pull(entry.key)
    assert pulled.metadata["dataset"] == "mnist5k" and pulled.metadata["budget"] == 0.4
    with pytest.raises(BudgetExceededError, match="exceeds budget"):
        reg.push(make_mask(budget=0.3), budget="flops:0.1")
    same = reg.pull_bytes(entry.key)
    assert reg.push(same).sha256 == entry.sha256  # re-pushing identical bytes is a no-op
    assert reg.push(Mask.from_bytes(same)).sha256 == entry.sha256  # so is re-pushing the same Mask
    other = make_mask(dataset="mnist5k", budget=0.4, seed=7)
    with pytest.raises(EntryExistsError, match="overwrite=True"):
        reg.push(other)
    assert reg.push(other, overwrite=True).sha256 != entry.sha256
    assert reg.pull(entry.key) == other


# --- Hub specifics --------------------------------------------------------------------------------
def test_hub_layout_card_and_single_commit(fake_hub, hub_repo, fresh_hf_cache):
    from huggingface_hub import ModelCard

    reg = MaskRegistry(f"hf://{hub_repo}")
    reg.push(make_mask(0.25, acc=0.81))
    commits = fake_hub.stats["commits"]
    reg.push(make_mask(0.1, arch="tv/resnet50", dataset="cifar100", seed=3, acc=0.7))
    assert fake_hub.stats["commits"] == commits + 1  # one push = one commit
    files = fake_hub.files(hub_repo)
    assert {"index.json", "README.md", "masks/resnet8/cifar10/flops-0.25.safetensors",
            "masks/tv--resnet50/cifar100/flops-0.1.safetensors", "plots/resnet8/cifar10/flops-0.25.png",
            "plots/tv--resnet50/cifar100/flops-0.1.png"} <= set(files)
    assert files["plots/resnet8/cifar10/flops-0.25.png"].startswith(b"\x89PNG\r\n\x1a\n")
    index = json.loads(files["index.json"])
    assert [e["key"] for e in index["entries"]] == ["resnet8/cifar10/flops-0.25", "tv--resnet50/cifar100/flops-0.1"]
    readme = files["README.md"].decode()
    assert readme == reg.render_card()
    assert f"\n# chipnet-zoo masks: {hub_repo}\n" in readme and "github.com" not in readme  # links only what exists
    card = ModelCard(readme)
    data = card.data.to_dict()
    assert data["library_name"] == "chipnet-zoo"
    assert {"pruning", "chipnet", "structured-pruning"} <= set(data["tags"])
    assert set(data["datasets"]) == {"uoft-cs/cifar10", "uoft-cs/cifar100"}
    results = [m for r in data["model-index"][0]["results"] for m in r["metrics"]]
    assert sorted((m["config"], m["value"]) for m in results) == [
        ("resnet8/cifar10/flops-0.25", 0.81), ("tv--resnet50/cifar100/flops-0.1", 0.7)]
    for key in ("resnet8/cifar10/flops-0.25", "tv--resnet50/cifar100/flops-0.1"):
        assert f"| `{key}` |" in readme and f"(plots/{key}.png)" in readme
    assert "mask = cz.MaskRegistry(" in readme
    assert TOKEN not in readme and TOKEN not in files["index.json"].decode()


def test_hub_pull_fresh_cache_then_offline(fake_hub, hub_repo, fresh_hf_cache, monkeypatch, tmp_path):
    from huggingface_hub import constants as hf_constants

    path, data = write_mask(tmp_path / "m.safetensors", budget=0.25)
    MaskRegistry(f"hf://{hub_repo}").push(path)
    MaskRegistry(f"hf://{hub_repo}").push(make_mask(0.5, seed=4))
    reg = MaskRegistry(f"hf://{hub_repo}")
    assert reg.pull_bytes("resnet8/cifar10/flops-0.25") == data  # downloaded into the empty cache
    assert any(Path(fresh_hf_cache).rglob("flops-0.25.safetensors"))

    n_requests = len(fake_hub.requests)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    offline = MaskRegistry(f"hf://{hub_repo}")
    assert [e.key for e in offline.list()] == ["resnet8/cifar10/flops-0.25", "resnet8/cifar10/flops-0.5"]
    assert offline.pull_bytes("resnet8/cifar10/flops-0.25") == data
    assert len(fake_hub.requests) == n_requests  # no network at all
    with pytest.raises(EntryNotFoundError, match="not in the local cache"):
        offline.pull("resnet8/cifar10/flops-0.5")  # listed, never downloaded
    with pytest.raises(RegistryError, match="HF_HUB_OFFLINE"):
        offline.push(make_mask(0.2, seed=5))
    with pytest.raises(RegistryNotFoundError, match="not in the local cache"):
        MaskRegistry(f"hf://{fake_hub.unique_repo_id()}").list()

    # the same from a separate process that only has the env var
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "cli.safetensors"
    res = run_cli("pull", "resnet8/cifar10/flops-0.25", "--registry", f"hf://{hub_repo}", "--out", str(out),
                  env={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == data


def test_hub_lfs_upload_and_download(fake_hub, hub_repo, fresh_hf_cache, monkeypatch, tmp_path):
    from huggingface_hub import constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    path, data = write_mask(tmp_path / "m.safetensors", budget=0.25)
    uploads = fake_hub.stats["lfs_uploads"]
    with fake_hub.lfs("*.safetensors"):
        MaskRegistry(f"hf://{hub_repo}").push(path)
        assert fake_hub.blob(hub_repo, "masks/resnet8/cifar10/flops-0.25.safetensors").lfs
        assert not fake_hub.blob(hub_repo, "index.json").lfs
        assert fake_hub.stats["lfs_uploads"] == uploads + 1
        assert MaskRegistry(f"hf://{hub_repo}").pull_bytes("resnet8/cifar10/flops-0.25") == data


def test_hub_conflict_is_retried_without_losing_entries(fake_hub, hub_repo, fresh_hf_cache):
    reg_a, reg_b = MaskRegistry(f"hf://{hub_repo}"), MaskRegistry(f"hf://{hub_repo}")
    reg_a.push(make_mask(0.5, seed=1))
    conflicts = fake_hub.stats["commit_conflicts"]
    # B commits while A's commit is in flight: A's parent commit is stale -> 412 -> A re-reads and retries
    fake_hub.before_commit = lambda: reg_b.push(make_mask(0.1, seed=2))
    reg_a.push(make_mask(0.25, seed=3))
    assert fake_hub.stats["commit_conflicts"] == conflicts + 1
    keys = [e.key for e in MaskRegistry(f"hf://{hub_repo}").list()]
    assert keys == ["resnet8/cifar10/flops-0.1", "resnet8/cifar10/flops-0.25", "resnet8/cifar10/flops-0.5"]
    assert "resnet8/cifar10/flops-0.1" in fake_hub.files(hub_repo)["README.md"].decode()


def test_hub_tampered_file_refused_and_evicted(fake_hub, hub_repo, fresh_hf_cache, tmp_path):
    path, data = write_mask(tmp_path / "m.safetensors", budget=0.25)
    MaskRegistry(f"hf://{hub_repo}").push(path)
    rel = "masks/resnet8/cifar10/flops-0.25.safetensors"
    fake_hub.tamper(hub_repo, rel, data[:-4] + b"\x00\x00\x80\x3f")  # same size, other bytes
    reg = MaskRegistry(f"hf://{hub_repo}")
    with pytest.raises(IntegrityError, match="does not match the index") as info:
        reg.pull("resnet8/cifar10/flops-0.25")
    assert TOKEN not in str(info.value)
    cached = [p for p in Path(fresh_hf_cache).rglob("*") if p.is_file() and "flops-0.25" in str(p)]
    assert cached == [] and not any(p.is_symlink() for p in Path(fresh_hf_cache).rglob("*flops-0.25*"))
    fake_hub.tamper(hub_repo, rel, data)  # restored on the server: the next pull succeeds
    assert reg.pull_bytes("resnet8/cifar10/flops-0.25") == data
    # bytes changed inside the local cache are refused too (and evicted, then re-downloaded)
    blob = next(p for p in Path(fresh_hf_cache).rglob("*") if p.is_file() and p.read_bytes() == data)
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        MaskRegistry(f"hf://{hub_repo}").pull("resnet8/cifar10/flops-0.25")
    assert MaskRegistry(f"hf://{hub_repo}").pull_bytes("resnet8/cifar10/flops-0.25") == data


def test_hub_missing_repo_revision_and_corrupt_index(fake_hub, hub_repo, fresh_hf_cache):
    missing = fake_hub.unique_repo_id()
    with pytest.raises(RegistryNotFoundError, match="not found") as info:
        MaskRegistry(f"hf://{missing}").list()
    assert (info.value.repo_id, info.value.registry, info.value.revision) == (missing, f"hf://{missing}", "main")
    reg = MaskRegistry(f"hf://{hub_repo}")
    reg.push(make_mask(0.25))
    with pytest.raises(RegistryNotFoundError, match="revision 'nope' not found") as info:
        MaskRegistry(f"hf://{hub_repo}@nope").pull("resnet8/cifar10/flops-0.25")
    assert (info.value.repo_id, info.value.revision) == (hub_repo, "nope")
    with pytest.raises(EntryNotFoundError, match="none for resnet20") as info:
        reg.pull("resnet20/cifar10/flops-0.25")
    assert (info.value.key, info.value.registry) == ("resnet20/cifar10/flops-0.25", f"hf://{hub_repo}")
    fake_hub.put_file(hub_repo, "index.json", b"{not json")
    with pytest.raises(IntegrityError, match="corrupt registry index .*not valid JSON"):
        reg.list()
    bad = {"format": "chipnet-zoo-registry", "version": 1, "entries": [{
        "key": "resnet8/cifar10/flops-0.25", "arch": "resnet8", "dataset": "cifar10", "budget_type": "flops",
        "budget": 0.25, "path": "../../../etc/passwd", "sha256": "0" * 64, "size": 1}]}
    fake_hub.put_file(hub_repo, "index.json", json.dumps(bad).encode())
    with pytest.raises(IntegrityError, match="is not 'masks/resnet8/cifar10/flops-0.25.safetensors'"):
        reg.pull("resnet8/cifar10/flops-0.25")


def test_hub_pinned_revision_is_read_only(fake_hub, hub_repo, fresh_hf_cache):
    reg = MaskRegistry(f"hf://{hub_repo}", token="hf_explicit_secret_token")
    reg.push(make_mask(0.25))
    pinned = fake_hub.head(hub_repo)
    reg.push(make_mask(0.5, seed=1))
    old = MaskRegistry(f"hf://{hub_repo}@{pinned}")
    assert [e.key for e in old.list()] == ["resnet8/cifar10/flops-0.25"]
    assert old.pull("resnet8/cifar10/flops-0.25") == reg.pull("resnet8/cifar10/flops-0.25")
    with pytest.raises(RegistryError, match="revision is a commit"):
        old.push(make_mask(0.1, seed=2))
    assert "hf_explicit_secret_token" not in repr(reg) + repr(reg._backend) + reg.render_card()


# --- local specifics ------------------------------------------------------------------------------
def test_local_tamper_corrupt_and_missing(tmp_path, monkeypatch):
    root = tmp_path / "zoo"
    with pytest.raises(RegistryNotFoundError, match="does not exist"):
        MaskRegistry(root).list()
    monkeypatch.setattr(constants, "CHIPNET_ZOO_REGISTRY", str(tmp_path / "default"))
    assert MaskRegistry().list() == []  # the default registry may not exist yet
    assert MaskRegistry().push(make_mask(0.25)).key == "resnet8/cifar10/flops-0.25"
    assert stored_file(tmp_path / "default", "masks/resnet8/cifar10/flops-0.25.safetensors").is_file()

    reg = MaskRegistry(root)
    path, data = write_mask(tmp_path / "m.safetensors", budget=0.25)
    reg.push(path)
    assert sorted(p.name for p in root.iterdir()) == [".index.json.lock", "index.json", "masks"]
    stored = stored_file(root, "masks/resnet8/cifar10/flops-0.25.safetensors")
    stored.write_bytes(data.replace(b"chipnet", b"chipnot", 1))
    out = tmp_path / "out.safetensors"
    with pytest.raises(IntegrityError, match="does not match the index"):
        reg.pull_file("resnet8/cifar10/flops-0.25", out)
    assert not out.exists()
    stored.unlink()
    with pytest.raises(EntryNotFoundError, match="file is missing"):
        reg.pull("resnet8/cifar10/flops-0.25")
    (root / "index.json").write_text('{"format": "chipnet-zoo-registry", "version": 1, "entries": [{"key": 3}]}')
    with pytest.raises(IntegrityError, match="corrupt registry index"):
        reg.list()
    (root / "index.json").write_text("[]")
    with pytest.raises(IntegrityError, match="corrupt registry index"):
        reg.list()
    assert not list(root.rglob("*.tmp"))  # atomic writes leave no temp files


# --- concurrency: 8 processes pushing different keys ------------------------------------------------
# One interpreter imports everything once, then forks 8 processes that wait on a barrier and push at the
# same moment (8 fresh interpreters would spend ~35 s CPU importing torch on a 2-core machine).
_PUSH_WORKERS = """
import multiprocessing as mp, sys
import matplotlib.figure, matplotlib.backends.backend_agg  # noqa: preload for the forked children
import chipnet_zoo.mask, chipnet_zoo.registry.local, chipnet_zoo.weights, chipnet_zoo.mask_plot  # noqa
from chipnet_zoo.registry import MaskRegistry
location, paths = sys.argv[1], sys.argv[2:]
if location.startswith("hf://"):
    import chipnet_zoo.registry.hub  # noqa
ctx = mp.get_context("fork")
barrier = ctx.Barrier(len(paths))

def work(path):
    barrier.wait(timeout=60)
    print(MaskRegistry(location).push(path).key, flush=True)

procs = [ctx.Process(target=work, args=(p,)) for p in paths]
for p in procs:
    p.start()
for p in procs:
    p.join(timeout=120)
sys.exit(max(abs(p.exitcode if p.exitcode is not None else 99) for p in procs))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "hub"])
def test_eight_concurrent_pushes(backend, tmp_path, hub_repo, fresh_hf_cache, fake_hub):
    location = str(tmp_path / "zoo") if backend == "local" else f"hf://{hub_repo}"
    budgets = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
    paths = [write_mask(tmp_path / f"m{i}.safetensors", budget=b, seed=i)[0] for i, b in enumerate(budgets)]
    commits = fake_hub.stats["commits"]
    res = subprocess.run([sys.executable, "-c", _PUSH_WORKERS, location, *map(str, paths)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    expected = sorted(f"resnet8/cifar10/flops-{format(b, 'g')}" for b in budgets)
    assert sorted(res.stdout.split()) == expected
    reg = MaskRegistry(location)
    assert [e.key for e in reg.list()] == expected
    for e, p in zip(sorted(reg.list(), key=lambda e: e.budget), paths):
        assert reg.pull_bytes(e.key) == p.read_bytes()
    if backend == "hub":
        assert fake_hub.stats["commits"] - commits == 1 + 8  # create_repo's commit + one per push
        files = fake_hub.files(hub_repo)
        assert all(f"masks/{k}.safetensors" in files and f"plots/{k}.png" in files for k in expected)
        readme = files["README.md"].decode()
        assert all(f"`{k}`" in readme for k in expected)
    else:
        assert all(stored_file(tmp_path / "zoo", f"masks/{k}.safetensors").is_file() for k in expected)


# --- publishing a local zoo and the CLI -----------------------------------------------------------------
def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the ``chipnet-zoo`` entry point in-process (the same code path as the console script)."""
    from chipnet_zoo.cli import main

    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_publish_local_zoo_to_hub_in_one_commit(fake_hub, hub_repo, fresh_hf_cache, tmp_path, capsys):
    local = MaskRegistry(tmp_path / "zoo")
    for i, b in enumerate((0.1, 0.25, 0.5)):
        local.push(make_mask(b, seed=i))
    rc, out, err = cli(capsys, "push", str(tmp_path / "zoo"), "--registry", f"hf://{hub_repo}", "--private")
    assert rc == 0, err
    assert out.split() == [e.key for e in local.list()]
    repo = fake_hub._repos[("model", hub_repo)]
    assert len(repo.commits) == 2 and repo.private  # create_repo's initial commit + ONE commit with everything
    hub = MaskRegistry(f"hf://{hub_repo}")
    assert [(e.key, e.sha256) for e in hub.list()] == [(e.key, e.sha256) for e in local.list()]
    assert all(f"plots/{e.key}.png" in fake_hub.files(hub_repo) for e in local.list())
    rc, out, err = cli(capsys, "push", str(tmp_path / "zoo"), "--registry", f"hf://{hub_repo}")
    assert rc == 0 and len(repo.commits) == 2  # publishing the same zoo again changes nothing

    rc, out, _ = cli(capsys, "list", "--registry", f"hf://{hub_repo}", "--json")
    assert rc == 0 and [e["key"] for e in json.loads(out)] == [e.key for e in local.list()]
    rc, out, _ = cli(capsys, "list", "--registry", str(tmp_path / "zoo"), "--budget-type", "flops")
    assert rc == 0 and "resnet8/cifar10/flops-0.25" in out and "0.8000" in out
    card = tmp_path / "README.md"
    rc, _, err = cli(capsys, "card", "--registry", str(tmp_path / "zoo"), "--out", str(card))
    assert rc == 0, err
    assert all(f"`{e.key}`" in card.read_text() for e in local.list())
    out_file = tmp_path / "pulled.safetensors"
    rc, _, _ = cli(capsys, "pull", "resnet8/cifar10/flops-0.5", "--registry", f"hf://{hub_repo}", "--out",
                   str(out_file))
    assert rc == 0 and out_file.read_bytes() == local.pull_bytes("resnet8/cifar10/flops-0.5")
    rc, out, err = cli(capsys, "pull", "../etc/flops-0.1", "--registry", f"hf://{hub_repo}", "--out",
                       str(tmp_path / "x"))
    assert rc == 1 and "invalid" in err and TOKEN not in err + out
    rc, out, err = cli(capsys, "list", "--registry", f"hf://{fake_hub.unique_repo_id()}")
    assert rc == 1 and "not found" in err and TOKEN not in err + out
    rc, _, err = cli(capsys, "push", str(tmp_path / "nope.safetensors"), "--registry", str(tmp_path / "zoo"))
    assert rc == 1 and "no mask file or registry folder" in err


# --- weights and pull_model -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet8_case():
    """A non-trivial resnet8 mask, a dense model with non-trivial BN statistics and its slimmed copy."""
    import chipnet_zoo as cz

    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    pruner = cz.ChipNetPruner(cz.create_model("resnet8", num_classes=10, in_chans=3), cz.Budget("flops", 0.5),
                              example_input=x[:1])
    with torch.no_grad():
        pruner.gates.psi.copy_(torch.randn_like(pruner.gates.psi))
    mask = pruner.mask().with_metadata(dataset="cifar10", metrics={"val_accuracy": 0.5})
    dense = cz.create_model("resnet8", num_classes=10, in_chans=3)
    for m in dense.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    dense.eval()
    return mask, dense, mask.slim(dense).eval(), x


@pytest.mark.parametrize("weights_of", ["slim", "dense"])
def test_pull_model_matches_pushed_slim_model(location, weights_of, resnet8_case, tmp_path):
    mask, dense, small, x = resnet8_case
    reg = MaskRegistry(location)
    with pytest.raises(EntryNotFoundError, match="has no weights"):
        reg.push(mask)
        reg.pull_model(arch="resnet8", dataset="cifar10", budget="flops:0.5")
    entry = reg.push(mask, weights=small if weights_of == "slim" else dense, overwrite=True)
    assert entry.weights["kind"] == weights_of
    assert entry.weights["path"] == ("weights/resnet8/cifar10/flops-0.5.safetensors" if weights_of == "slim"
                                     else "weights/resnet8/cifar10/dense.safetensors")
    model = MaskRegistry(location).pull_model(entry.key)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in small.parameters())
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)


def test_push_refuses_weights_that_do_not_fit(resnet8_case, tmp_path):
    import chipnet_zoo as cz
    from chipnet_zoo.errors import MaskMismatchError

    mask, dense, small, _ = resnet8_case
    reg = MaskRegistry(tmp_path / "zoo")
    with pytest.raises(MaskMismatchError, match="shapes are slim"):
        reg.push(mask, weights=small, weights_as="dense")
    with pytest.raises(MaskMismatchError, match="do not fit"):
        reg.push(mask, weights=cz.create_model("resnet20", num_classes=10))
    with pytest.raises(MaskFormatError, match="not a safetensors file"):
        reg.push(mask, weights=b"\x80\x04pickle")
    assert not (tmp_path / "zoo").exists()  # nothing was written


def test_keys_with_exponents_and_machine_tags_parse_and_round_trip():
    from chipnet_zoo.budget import Budget
    from chipnet_zoo.registry.keys import split_key

    tiny = make_key(arch="resnet8", dataset="c10", budget="flops:0.00005")
    assert tiny == "resnet8/c10/flops-5e-05" and parse_key(tiny)[2] == Budget("flops", 5e-05)
    tagged = make_key(arch="tv/resnet18", dataset="c10", budget="latency:5e-05", machine="cpu.amd-epyc.b1.abc123")
    assert tagged == "tv--resnet18/c10/latency-5e-05-cpu.amd-epyc.b1.abc123"
    assert split_key(tagged) == ("tv/resnet18", "c10", Budget("latency", 5e-05), "cpu.amd-epyc.b1.abc123")
    assert canonical_key("tv/resnet18/c10/latency-0.50-cpu.b1.abc123") == "tv--resnet18/c10/latency-0.5-cpu.b1.abc123"
    assert split_key("resnet8/c10/latency-0.5")[3] is None
    for bad in ("resnet8/c10/flops-0.5-cpu.b1.abc123", "resnet8/c10/latency-0.5-CPU", "resnet8/c10/flops-x",
                "resnet8/c10/latency-0.5-cpu..b1"):
        with pytest.raises(InvalidKeyError):
            parse_key(bad)
