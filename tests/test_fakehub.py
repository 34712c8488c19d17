"""The loopback fake Hub itself: the huggingface_hub and datasets client calls other tests rely on."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hub


def test_fake_hub_model_repo_api(fake_hub, hub_repo, fresh_hf_cache):
    import huggingface_hub
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError

    assert huggingface_hub.constants.ENDPOINT == fake_hub.endpoint  # HF_ENDPOINT was set before import
    api = HfApi(endpoint=fake_hub.endpoint)
    url = api.create_repo(hub_repo, exist_ok=True)
    assert url.repo_id == hub_repo and api.create_repo(hub_repo, exist_ok=True).repo_id == hub_repo
    first = api.resolve_revision(hub_repo).resolved
    info = api.create_commit(hub_repo, [CommitOperationAdd("a/b.txt", b"one"),
                                        CommitOperationAdd("README.md", b"---\ntags: [x]\n---\nhi\n")],
                             commit_message="c1", parent_commit=first)
    api.create_commit(hub_repo, [CommitOperationAdd("a/b.txt", b"two")], commit_message="c2")
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(hub_repo, [CommitOperationAdd("c.txt", b"x")], commit_message="c3", parent_commit=info.oid)
    assert stale.value.response.status_code == 412
    assert sorted(api.list_repo_files(hub_repo)) == [".gitattributes", "README.md", "a/b.txt"]
    assert [x.path for x in api.list_repo_tree(hub_repo)] == [".gitattributes", "README.md", "a"]
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(hub_repo, path_in_repo="missing"))
    with open(hf_hub_download(hub_repo, "a/b.txt", revision=info.oid)) as f:  # a pinned old revision
        assert f.read() == "one"
    with open(hf_hub_download(hub_repo, "a/b.txt")) as f:
        assert f.read() == "two"
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(hub_repo, "nope.txt")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(fake_hub.unique_repo_id())
    with pytest.raises(ValueError, match="Invalid metadata"):  # validate-yaml refuses invalid YAML
        api.create_commit(hub_repo, [CommitOperationAdd("README.md", b"---\n: : [\n---\n")], commit_message="bad")


def test_fake_hub_serves_dataset_repos(fake_hub, fresh_hf_cache, monkeypatch, tmp_path):
    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Image, load_dataset
    from huggingface_hub import constants as hf_constants
    from PIL import Image as PILImage

    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    repo = fake_hub.unique_repo_id("acme", "tiny-cifar")
    images = [PILImage.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)) for i in range(4)]
    ds = Dataset.from_dict({"img": images, "label": [0, 1, 0, 1]},
                           features=Features({"img": Image(), "label": ClassLabel(names=["cat", "dog"])}))
    with fake_hub.lfs("*.parquet"):  # datasets.push_to_hub expects parquet shards to go through LFS
        ds.push_to_hub(repo)
    assert any(p.endswith(".parquet") for p in fake_hub.files(repo, repo_type="dataset"))
    loaded = load_dataset(repo, split="train", cache_dir=str(tmp_path / "ds"))
    assert loaded.features["label"].names == ["cat", "dog"]
    assert loaded["label"] == [0, 1, 0, 1]
    assert np.asarray(loaded[3]["img"]).mean() == 120
