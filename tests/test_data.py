"""Datasets: offline named sets, local formats (imagefolder, parquet, save_to_disk), Hub ids via the fake Hub."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from chipnet_zoo.data import load_data, make_loaders, read_pickled_ndarray
from chipnet_zoo.data.hf import to_chw
from chipnet_zoo.data.named import load_animal_mnist, load_mnist5k
from chipnet_zoo.errors import DatasetError

NAMES = ["plane", "car", "bird", "cat"]


def _split_rows(b):
    return {r: set(getattr(b, r).rows.tolist()) for r in ("train", "val", "test")}


def _cifar_like(n: int, seed: int = 0, size: int = 32, label_col: str = "label"):
    """A tiny CIFAR-shaped ``datasets.Dataset`` (img: Image, label: ClassLabel) whose images encode the label."""
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(seed)
    labels = [i % len(NAMES) for i in range(n)]
    imgs = []
    for y in labels:
        a = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        a[..., y % 3] += 120  # a class-dependent colour cast
        imgs.append(PILImage.fromarray(a))
    feats = Features({"img": Image(), label_col: ClassLabel(names=NAMES)})
    return Dataset.from_dict({"img": imgs, label_col: labels}, features=feats)


def _parquet_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.to_parquet(buf)
    return buf.getvalue()


# --- offline named datasets ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist5k", "animal-mnist"])
def test_offline_named_dataset(name):
    b = load_data(name, seed=0)
    raw = load_mnist5k() if name == "mnist5k" else load_animal_mnist()
    n = len(raw.labels)
    assert (b.num_classes, b.in_chans, b.input_size) == (10, 1, (1, 28, 28))
    assert len(b.class_names) == 10
    sizes = b.split_info["sizes"]
    assert sizes == {"train": round(0.7 * n), "val": round(0.1 * n), "test": round(0.2 * n)}
    rows = _split_rows(b)
    assert not (rows["train"] & rows["val"]) and not (rows["train"] & rows["test"]) and not (rows["val"] & rows["test"])
    assert len(rows["train"] | rows["val"] | rows["test"]) == n
    # stratified: balanced classes stay balanced in every split
    assert np.bincount(b.train.labels.numpy(), minlength=10).tolist() == [sizes["train"] // 10] * 10
    # items are the source rows with their true labels
    for split in (b.train, b.test):
        assert torch.equal(split.labels, torch.from_numpy(raw.labels[split.rows]))
        assert torch.equal(split.images, torch.from_numpy(raw.images[split.rows]))
    x, y = b.test[0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and isinstance(y, int)
    # the normalisation is computed on train: eval-transformed train images are ~zero-mean, unit-std
    xs = torch.stack([b.train.with_transform(b.eval_transform)[i][0] for i in range(0, sizes["train"], 7)])
    assert abs(float(xs.mean())) < 0.05 and abs(float(xs.std()) - 1) < 0.05
    # digits / silhouettes: crop with padding, never flipped
    assert b.augmentation == {"enabled": True, "random_crop_padding": 2, "hflip": False}
    assert "hflip=False" in repr(b.train_transform)
    torch.manual_seed(0)
    for i in range(5):  # each augmented item is the eval item shifted by at most 2 px (zero fill), never flipped
        img, aug = b.train.images[i], b.train[i][0]
        padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
        crops = [b.eval_transform(padded[:, dy:dy + 28, dx:dx + 28]) for dy in range(5) for dx in range(5)]
        assert any(torch.equal(aug, c) for c in crops)
    # fixed split: same seed -> same rows, another seed -> other rows; the record pins it
    assert _split_rows(load_data(name, seed=0)) == rows
    other = _split_rows(load_data(name, seed=1))
    assert other["val"] != rows["val"] and other["test"] != rows["test"]
    info = b.split_info
    assert info["seed"] == 0 and info["carved_from_train"] == ["val", "test"]
    assert info["indices"]["val"] == sorted(rows["val"])
    assert info["sha256"]["val"] == hashlib.sha256(np.array(sorted(rows["val"]), "<i8").tobytes()).hexdigest()


def test_max_samples_and_loaders():
    b = load_data("animal-mnist", seed=3, max_samples=200)
    assert b.split_info["sizes"] == {"train": 200, "val": 29, "test": 57}  # 1000/7000 and 2000/7000 of 200
    assert b.split_info["sizes_before_max_samples"] == {"train": 7000, "val": 1000, "test": 2000}
    assert np.bincount(b.train.labels.numpy()).tolist() == [20] * 10
    assert len(_split_rows(b)["train"] & _split_rows(b)["test"]) == 0
    loaders = make_loaders(b, batch_size=64, seed=5)
    xb, yb = next(iter(loaders.train))
    assert xb.shape == (64, 1, 28, 28) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert sum(len(y) for _, y in loaders.test) == 57 and sum(len(y) for _, y in loaders.val) == 29
    # the train order follows the seed
    order = lambda s: torch.cat([y for _, y in make_loaders(b, 64, seed=s).train])  # noqa: E731
    torch.manual_seed(0)
    a = order(5)
    assert torch.equal(a, order(5)) and not torch.equal(a, order(6))
    assert sorted(a.tolist()) == sorted(b.train.labels.tolist())
    # a last batch of one sample is dropped (BatchNorm cannot train on it)
    assert len(make_loaders(b, batch_size=199).train) == 1
    # the record is JSON and reloads the same split
    record = json.loads(json.dumps(b.describe()))
    again = load_data(**record["load_kwargs"])
    assert _split_rows(again) == _split_rows(b) and again.mean == b.mean and record["input_size"] == [1, 28, 28]
    # augment=False: the train items are the eval items
    plain = load_data("animal-mnist", seed=3, max_samples=200, augment=False)
    assert torch.equal(plain.train[0][0], plain.train.with_transform(plain.eval_transform)[0][0])


def test_train_samples_caps_train_alone_and_keeps_val_and_test_whole():
    full = load_data("animal-mnist", seed=3, max_samples=1000)
    poor = load_data("animal-mnist", seed=3, max_samples=1000, train_samples=200)
    assert poor.split_info["sizes"] == {"train": 200, "val": full.split_info["sizes"]["val"],
                                        "test": full.split_info["sizes"]["test"]}
    assert poor.split_info["train_samples"] == 200 and "train_samples" not in full.split_info
    rows, full_rows = _split_rows(poor), _split_rows(full)
    assert rows["val"] == full_rows["val"] and rows["test"] == full_rows["test"]  # the same images to measure on
    assert rows["train"] < full_rows["train"]  # a stratified subset of the full run's training images
    assert np.bincount(poor.train.labels.numpy()).tolist() == [20] * 10
    assert json.loads(json.dumps(poor.describe()))["load_kwargs"]["train_samples"] == 200
    assert _split_rows(load_data(**poor.load_kwargs)) == rows  # the record reloads the same split
    assert "train_samples" not in full.load_kwargs  # earlier runs' records keep their form
    assert load_data("animal-mnist", seed=3, max_samples=1000, train_samples=5000).split_info["sizes"]["train"] == 1000
    with pytest.raises(ValueError, match="train_samples must be >= 1"):
        load_data("animal-mnist", train_samples=0)


def test_normalize255_matches_torchvision():
    from torchvision.transforms import v2

    from chipnet_zoo.data import Normalize255

    x = torch.randint(0, 256, (3, 9, 7), dtype=torch.uint8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    ref = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])(x)
    assert torch.allclose(Normalize255(mean, std)(x), ref, atol=1e-5)


@pytest.mark.parametrize("shape,pad,hflip,image", [((1, 28, 28), 2, False, None), ((3, 32, 32), 4, True, None),
                                                   ((3, 9, 7), 3, True, None), ((2, 5, 6), 0, True, None),
                                                   ((1, 4, 4), 6, False, None), ((3, 8, 6), 1, True, (11, 6)),
                                                   ((1, 6, 6), 2, False, (4, 5))])
def test_pad_crop_flip_is_torchvision_draw_for_draw(shape, pad, hflip, image):
    """The fast augmentation returns what torchvision v2's RandomCrop(padding) + RandomHorizontalFlip return,
    from the same random state, and leaves the generator where they leave it (so runs stay reproducible)."""
    from torchvision.transforms import v2

    from chipnet_zoo.data import Normalize255, build_transforms

    mean, std = (0.4,) * shape[0], (0.3,) * shape[0]
    ours, _ = build_transforms(shape, mean, std, augment=True, hflip=hflip, pad=pad)
    aug = ([v2.RandomCrop(list(shape[1:]), padding=pad)] if pad else []) + ([v2.RandomHorizontalFlip()] if hflip else [])
    ref = v2.Compose([*aug, Normalize255(mean, std)])
    # images of the input size, or of another size (cropped to the input size from the padded image)
    images = torch.randint(0, 256, (40, shape[0], *(image or shape[1:])), dtype=torch.uint8)
    for seed in range(3):
        torch.manual_seed(seed)
        a = torch.stack([ours(x) for x in images])
        after_ours = torch.rand(1)
        torch.manual_seed(seed)
        b = torch.stack([ref(x) for x in images])
        assert torch.equal(a, b) and torch.equal(after_ours, torch.rand(1))
    assert len({tuple(ours(images[0]).flatten().tolist()) for _ in range(30)}) > 1 or (pad == 0 and not hflip)
    if 1 + 2 * pad < min(shape[1:]):  # an image too small to crop, even padded: an error, as torchvision raises
        with pytest.raises(ValueError, match="larger than the padded image"):
            ours(torch.zeros(shape[0], 1, 1, dtype=torch.uint8))


def test_pickled_arrays_are_parsed_never_executed(tmp_path):
    evil = tmp_path / "evil.gz"
    marker = tmp_path / "pwned"
    with gzip.open(evil, "wb") as f:  # protocol-0 pickle calling os.system
        f.write(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(DatasetError):
        read_pickled_ndarray(evil)
    assert not marker.exists()


# --- local formats ---------------------------------------------------------------------------------
def test_imagefolder_rgb_odd_sizes(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for c, cls in enumerate(["ant", "bee", "cow"]):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            h, w = (20, 24) if i < 6 else tuple(rng.integers(9, 40, 2))
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            img = PILImage.fromarray(a)
            if i == 7:
                img = img.convert("L")  # a stray grayscale image in a colour set
            if i == 8:
                img = img.convert("RGBA")
            if i == 9:
                img = img.convert("P")
            img.save(root / cls / f"{c}_{i}.png")
    b = load_data(root, seed=0)
    assert b.num_classes == 3 and b.class_names == ["ant", "bee", "cow"]
    assert b.in_chans == 3 and b.input_size == (3, 20, 24)  # the most common size
    assert sum(b.split_info["sizes"].values()) == 30 and b.source["kind"] == "imagefolder"
    assert b.augmentation["hflip"] is True  # natural (colour) images flip by default
    for ds in (b.train, b.val, b.test):
        x, y = ds[0]
        assert x.shape == (3, 20, 24) and x.dtype == torch.float32 and 0 <= y < 3
    assert load_data(root, seed=0, image_size=16).input_size == (3, 16, 16)

    gray = tmp_path / "gray"
    for cls in ("a", "b"):
        (gray / cls).mkdir(parents=True)
        for i in range(6):
            PILImage.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(gray / cls / f"{i}.png")
    g = load_data(gray)
    assert (g.num_classes, g.in_chans, g.input_size) == (2, 1, (1, 12, 12))


def test_parquet_file_glob_and_hub_layout(tmp_path):
    train, test = _cifar_like(80, seed=1), _cifar_like(20, seed=2)
    train.to_parquet(str(tmp_path / "train.parquet"))
    test.to_parquet(str(tmp_path / "test.parquet"))
    one = load_data(tmp_path / "train.parquet", seed=0)
    assert (one.num_classes, one.in_chans, one.input_size) == (4, 3, (3, 32, 32))
    assert one.class_names == NAMES and one.split_info["sizes"] == {"train": 56, "val": 8, "test": 16}

    both = load_data(str(tmp_path / "*.parquet"), seed=0)
    assert both.split_info["source_splits"] == {"train": "train", "val": "train", "test": "test"}
    assert both.split_info["sizes"] == {"train": 72, "val": 8, "test": 20}
    # the test items are the test file's rows, decoded faithfully
    x = both.test.images[5].permute(1, 2, 0).numpy()
    assert np.array_equal(x, np.asarray(test[int(both.test.rows[5])]["img"]))
    assert int(both.test.labels[5]) == test[int(both.test.rows[5])]["label"]

    hub_layout = tmp_path / "repo"
    (hub_layout / "plain_text").mkdir(parents=True)
    train.to_parquet(str(hub_layout / "plain_text" / "train-00000-of-00001.parquet"))
    test.to_parquet(str(hub_layout / "plain_text" / "test-00000-of-00001.parquet"))
    d = load_data(hub_layout, seed=0, max_samples=40)
    assert d.num_classes == 4 and d.split_info["sizes"] == {"train": 40, "val": 4, "test": 11}  # 8 and 20 x 40/72

    # plain int labels and string labels (no ClassLabel) work too
    from datasets import Dataset

    imgs = [train[i]["img"] for i in range(24)]
    Dataset.from_dict({"image": imgs, "target": [i % 3 for i in range(24)]}).to_parquet(str(tmp_path / "i.parquet"))
    assert load_data(tmp_path / "i.parquet").num_classes == 3
    words = ["dog", "cat", "emu"]
    Dataset.from_dict({"image": imgs, "labels": [words[i % 3] for i in range(24)]}).to_parquet(
        str(tmp_path / "s.parquet"))
    s = load_data(tmp_path / "s.parquet")
    assert s.class_names == ["cat", "dog", "emu"] and s.num_classes == 3


def test_save_to_disk_dict_and_dataset(tmp_path):
    from datasets import DatasetDict

    dd = DatasetDict({"train": _cifar_like(60), "validation": _cifar_like(12, 1), "test": _cifar_like(16, 2)})
    dd.save_to_disk(str(tmp_path / "dd"))
    b = load_data(tmp_path / "dd")
    assert b.num_classes == 4 and b.in_chans == 3 and b.source["kind"] == "save_to_disk"
    assert b.split_info["source_splits"] == {"train": "train", "val": "validation", "test": "test"}
    assert b.split_info["sizes"] == {"train": 60, "val": 12, "test": 16}
    _cifar_like(40).save_to_disk(str(tmp_path / "one"))
    assert load_data(tmp_path / "one").split_info["sizes"] == {"train": 28, "val": 4, "test": 8}


def test_lazy_decoding_matches_in_memory(tmp_path):
    _cifar_like(40).save_to_disk(str(tmp_path / "ds"))
    eager = load_data(tmp_path / "ds", seed=2, augment=False)
    lazy = load_data(tmp_path / "ds", seed=2, augment=False, in_memory=False)
    assert type(lazy.train).__name__ == "LazyImageDataset" and lazy.mean == eager.mean
    for i in range(len(eager.val)):
        assert torch.equal(lazy.val[i][0], eager.val[i][0]) and lazy.val[i][1] == eager.val[i][1]
    xb, _ = next(iter(make_loaders(lazy, 8, num_workers=0).train))
    assert xb.shape == (8, 3, 32, 32)


def test_pixel_array_column_and_odd_modes(tmp_path):
    from datasets import Dataset

    rng = np.random.default_rng(0)
    flat = rng.random((30, 784)).astype(np.float32)  # floats in [0, 1], flattened 28x28
    Dataset.from_dict({"pixel_values": flat.tolist(), "label": [i % 3 for i in range(30)]}).save_to_disk(
        str(tmp_path / "arr"))
    b = load_data(tmp_path / "arr", augment=False)
    assert (b.num_classes, b.in_chans, b.input_size) == (3, 1, (1, 28, 28))
    row = int(b.train.rows[0])
    assert np.array_equal(b.train.images[0, 0].numpy(), np.rint(flat[row].reshape(28, 28) * 255).astype(np.uint8))

    a16 = PILImage.fromarray(np.full((4, 5), 65535, dtype=np.uint16))
    assert to_chw(a16, 1, None).tolist() == np.full((1, 4, 5), 255).tolist()
    la = PILImage.fromarray(np.dstack([np.full((3, 3), 200, np.uint8), np.full((3, 3), 0, np.uint8)]), "LA")
    assert to_chw(la, 3, None).max() == 0  # fully transparent -> composited onto black
    assert to_chw(PILImage.new("1", (6, 2), 1), 1, (4, 4)).shape == (1, 4, 4)
    assert to_chw(PILImage.new("CMYK", (3, 3)), 3, None).shape == (3, 3, 3)


# --- errors ----------------------------------------------------------------------------------------
def test_missing_columns_name_the_columns(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"foo": [1, 2, 3], "caption": ["a", "b", "c"]}).save_to_disk(str(tmp_path / "noimg"))
    with pytest.raises(DatasetError, match=r"no usable image column.*foo.*caption"):
        load_data(tmp_path / "noimg")
    ds = _cifar_like(8).remove_columns("label")
    ds.save_to_disk(str(tmp_path / "nolabel"))
    with pytest.raises(DatasetError, match=r"no usable label column.*img"):
        load_data(tmp_path / "nolabel")
    _cifar_like(8).save_to_disk(str(tmp_path / "ok"))
    with pytest.raises(DatasetError, match=r"no label column 'fine_label'.*img.*label"):
        load_data(tmp_path / "ok", label_column="fine_label")
    with pytest.raises(DatasetError, match=r"column 'label' .* is not an image"):
        load_data(tmp_path / "ok", image_column="label")


@pytest.mark.hub
def test_unknown_names_say_what_was_tried(tmp_path, fake_hub):
    with pytest.raises(DatasetError, match=r"tried.*local path.*Hub.*Named datasets: animal-mnist, cifar10"):
        load_data("acme/no-such-dataset-anywhere")
    with pytest.raises(DatasetError, match=r"does not exist.*Named datasets"):
        load_data(str(tmp_path / "missing_dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no parquet files, no images"):
        load_data(tmp_path / "empty")
    with pytest.raises(ValueError):
        load_data("mnist5k", val_fraction=0.0)



# --- Hub ids through the loopback fake Hub ----------------------------------------------------------
@pytest.mark.hub
def test_hub_dataset_id_via_fake_hub(fake_hub, hub_repo):
    train, test = _cifar_like(50, seed=3), _cifar_like(20, seed=4)
    fake_hub.put_file(hub_repo, "data/train-00000-of-00001.parquet", _parquet_bytes(train), repo_type="dataset")
    fake_hub.put_file(hub_repo, "data/test-00000-of-00001.parquet", _parquet_bytes(test), repo_type="dataset")
    b = load_data(hub_repo, seed=0)
    assert b.source == {"kind": "hub", "repo_id": hub_repo, "config": None, "splits": ["train", "test"],
                        "image_column": "img", "label_column": "label"}
    assert (b.num_classes, b.in_chans, b.input_size, b.class_names) == (4, 3, (3, 32, 32), NAMES)
    assert b.split_info["sizes"] == {"train": 45, "val": 5, "test": 20}
    assert torch.equal(b.test.labels, torch.tensor(test["label"])[torch.from_numpy(b.test.rows)])
    xb, yb = next(iter(make_loaders(b, 16).train))
    assert xb.shape == (16, 3, 32, 32) and yb.dtype == torch.int64


@pytest.mark.hub
def test_named_hub_datasets_via_fake_hub(fake_hub):
    """cifar100 and tiny-imagenet resolve to their Hub ids, configs, columns and splits."""
    from datasets import ClassLabel, Dataset, Features, Image

    def tiny(n, n_classes, size, seed, gray_every=0):
        rng = np.random.default_rng(seed)
        imgs = [PILImage.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
        if gray_every:
            imgs = [im.convert("L") if i % gray_every == 0 else im for i, im in enumerate(imgs)]
        return imgs, [i % n_classes for i in range(n)]

    imgs, labels = tiny(30, 5, 32, 0)
    c100 = Dataset.from_dict(
        {"img": imgs, "fine_label": labels, "coarse_label": [y % 2 for y in labels]},
        features=Features({"img": Image(), "fine_label": ClassLabel(num_classes=100),
                           "coarse_label": ClassLabel(num_classes=20)}))
    for split in ("train", "test"):
        fake_hub.put_file("uoft-cs/cifar100", f"cifar100/{split}-00000-of-00001.parquet", _parquet_bytes(c100),
                          repo_type="dataset")
    # the real repo declares its config in the card's YAML, as here
    card = ("---\nconfigs:\n- config_name: cifar100\n  data_files:\n  - split: train\n    path: cifar100/train-*\n"
            "  - split: test\n    path: cifar100/test-*\n  default: true\n---\n# CIFAR-100 (fake)\n")
    fake_hub.put_file("uoft-cs/cifar100", "README.md", card.encode(), repo_type="dataset")
    b = load_data("cifar100", seed=0)
    assert b.name == "cifar100" and b.num_classes == 100 and b.source["label_column"] == "fine_label"
    assert b.source["config"] == "cifar100" and b.split_info["sizes"] == {"train": 27, "val": 3, "test": 30}
    assert b.augmentation == {"enabled": True, "random_crop_padding": 4, "hflip": True}

    # cifar10 without a card: config 'plain_text' is missing, so the repo's default config is used
    fake_hub.put_file("uoft-cs/cifar10", "plain_text/train-00000-of-00001.parquet", _parquet_bytes(_cifar_like(40)),
                      repo_type="dataset")
    c10 = load_data("cifar10", seed=0)
    assert c10.num_classes == 4 and c10.source["config"] is None and c10.source["image_column"] == "img"

    imgs, labels = tiny(24, 4, 64, 1, gray_every=5)
    tin = Dataset.from_dict({"image": imgs, "label": labels},
                            features=Features({"image": Image(), "label": ClassLabel(num_classes=200)}))
    for split in ("train", "valid"):
        fake_hub.put_file("zh-plus/tiny-imagenet", f"data/{split}-00000-of-00001.parquet", _parquet_bytes(tin),
                          repo_type="dataset")
    t = load_data("tiny-imagenet", seed=0)
    assert (t.num_classes, t.in_chans, t.input_size) == (200, 3, (3, 64, 64))
    assert t.split_info["source_splits"] == {"train": "train", "val": "train", "test": "valid"}
