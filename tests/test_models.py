"""The architecture registry: names, attributes, shapes, parameter counts, torchvision models."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from chipnet_zoo.errors import UnknownModelError
from chipnet_zoo.models import _registry as registry
from chipnet_zoo.models import create_model, is_model, list_models, register_model
from chipnet_zoo.models.tv import _adapt_weight

CIFAR_NAMES = [n for n in list_models() if not n.startswith(("tv/", "timm/"))]
# 52M / 36M params: the 1-channel model runs for real at 12x12, the RGB one on the meta device (shapes only).
HEAVY = {"wrn-26-12", "wrn-28-10"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tests run many tiny ops; on a busy 2-core box, 2 OpenMP threads make them up to 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_cifar_family_listed():
    assert CIFAR_NAMES == [
        "mobilenetv2-cifar",
        "preresnet11",
        "preresnet164",
        "resnet8",
        "resnet20",
        "resnet32",
        "resnet56",
        "resnet110",
        "wrn-16-4",
        "wrn-26-12",
        "wrn-28-10",
    ]


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_forward_shapes_and_attributes(name):
    torch.manual_seed(0)
    gray_size, rgb_device = (12, "meta") if name in HEAVY else (28, "cpu")
    gray = create_model(name, num_classes=7, in_chans=1)
    assert (gray.arch_name, gray.num_classes, gray.in_chans) == (name, 7, 1)
    assert gray.default_input_size == (1, 32, 32)
    head = gray.get_submodule(gray.classifier_name)
    assert isinstance(head, nn.Linear) and head.out_features == 7
    assert gray.classifier_name == ("linear" if name == "mobilenetv2-cifar" else "fc")
    stem = next(m for m in gray.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == 1
    with torch.device(rgb_device):
        rgb = create_model(name, num_classes=7)
    assert rgb.default_input_size == (3, 32, 32)
    for mode in ("train", "eval"):
        gray.train(mode == "train")
        rgb.train(mode == "train")
        with torch.no_grad():
            out = gray(torch.randn(1, 1, gray_size, gray_size))
            assert out.shape == (1, 7) and torch.isfinite(out).all()
            out = rgb(torch.randn(2, 3, 32, 32, device=rgb_device))
            assert out.shape == (2, 7) and (rgb_device == "meta" or torch.isfinite(out).all())


@pytest.mark.parametrize("name", ["resnet20", "preresnet11", "mobilenetv2-cifar"])
def test_cifar_init(name):
    torch.manual_seed(0)
    model = create_model(name)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)
    # Kaiming normal, fan_out mode: std = sqrt(2 / (out_channels * k * k)).
    conv = max((m for m in model.modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.weight.numel())
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


def test_param_counts():
    # He et al.'s CIFAR ResNets use zero-padding shortcuts ("option A"): 269,722 params for resnet20
    # ("0.27M") and 853,018 for resnet56. Our option-B projections add a 1x1 conv + BN at stages 2 and 3:
    # 16*32 + 2*32 = 576 and 32*64 + 2*64 = 2,176, i.e. 2,752 more.
    assert n_params(create_model("resnet20")) == 269_722 + 576 + 2_176 == 272_474
    assert n_params(create_model("resnet56")) == 853_018 + 576 + 2_176 == 855_770
    # Each extra class adds one fc row (64 weights + 1 bias).
    assert n_params(create_model("resnet20", num_classes=100)) == 272_474 + 90 * 65
    # Published counts of the reference implementations (10 classes):
    assert n_params(create_model("preresnet164")) == 1_703_258  # network-slimming / bearpaw "1.70M"
    assert n_params(create_model("mobilenetv2-cifar")) == 2_296_922  # kuangliu/pytorch-cifar
    assert n_params(create_model("wrn-16-4")) == 2_749_786  # Zagoruyko & Komodakis "2.7M"


def test_resnet_structure():
    model = create_model("resnet56")
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [9, 9, 9]
    assert model.layer1[0].shortcut is None  # 16 -> 16: identity
    proj = model.layer2[0].shortcut
    assert isinstance(proj[0], nn.Conv2d) and proj[0].kernel_size == (1, 1) and proj[0].stride == (2, 2)
    assert isinstance(proj[1], nn.BatchNorm2d)


def test_preresnet164_structure():
    model = create_model("preresnet164")
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [18, 18, 18]
    block = model.layer2[0]
    assert (block.bn1.num_features, block.conv1.out_channels, block.conv3.out_channels) == (64, 32, 128)
    assert len(block.downsample) == 1 and block.downsample[0].stride == (2, 2)  # bare 1x1 conv
    assert model.layer2[1].downsample is None
    assert model.bn.num_features == 256 and model.fc.in_features == 256


def test_mobilenetv2_structure():
    model = create_model("mobilenetv2-cifar")
    assert model.conv1.stride == (1, 1) and model.conv1.out_channels == 32
    assert len(model.layers) == 17 and model.conv2.out_channels == 1280
    assert [b.stride for b in model.layers][:4] == [1, 1, 1, 2]  # stage 2 at stride 1 (CIFAR)
    first = model.layers[0]
    assert first.conv1.out_channels == 32 and first.shortcut is not None  # expansion 1, 32 -> 16
    dw = model.layers[1].conv2
    assert dw.groups == dw.in_channels == 16 * 6


@pytest.mark.parametrize(
    "name, canonical, blocks, widths, stage1_proj",
    [
        ("wrn-16-4", "wrn-16-4", 2, (64, 128, 256), True),
        ("wrn-28-10", "wrn-28-10", 4, (160, 320, 640), True),
        ("wrn-26-12", "wrn-26-12", 4, (192, 384, 768), True),  # ChipNet: ResNetCifar(BasicBlock, [4]*3, 12)
        ("wrn-40-4", "wrn-40-4", 6, (64, 128, 256), True),
        ("WRN-008-1", "wrn-8-1", 1, (16, 32, 64), False),
        (" wrn-10-2 ", "wrn-10-2", 1, (32, 64, 128), True),
    ],
)
def test_wrn_parsing(name, canonical, blocks, widths, stage1_proj):
    assert is_model(name)
    with torch.device("meta"):  # structure only
        model = create_model(name)
    assert model.arch_name == canonical
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [blocks] * 3
    assert tuple(getattr(model, f"layer{i}")[-1].conv2.out_channels for i in (1, 2, 3)) == widths
    assert (model.layer1[0].shortcut is not None) == stage1_proj
    assert all(getattr(model, f"layer{i}")[0].shortcut is not None for i in (2, 3))


@pytest.mark.parametrize(
    "name, match",
    [("wrn-15-4", "depth 15"), ("wrn-18-4", "depth 18"), ("wrn-2-1", "depth 2"), ("wrn-16-0", "width 0")],
)
def test_wrn_bad_values(name, match):
    assert not is_model(name)
    with pytest.raises(ValueError, match=match) as info:
        create_model(name)
    assert not isinstance(info.value, UnknownModelError)


def test_unknown_name_suggests():
    with pytest.raises(UnknownModelError) as info:
        create_model("resnet50")
    msg = str(info.value)
    assert "tv/resnet50" in msg and "resnet56" in msg and "list_models()" in msg
    with pytest.raises(UnknownModelError, match="wrn-<depth>-<width>") as info:
        create_model("wrn-16")
    assert "wrn-16-4" in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownModelError, match="tv/mobilenet_v2"):
        create_model("tv/mobilenetv2")
    with pytest.raises(UnknownModelError):  # not a classification model
        create_model("tv/fasterrcnn_resnet50_fpn")
    with pytest.raises(UnknownModelError):
        create_model(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"num_classes": -3},
        {"in_chans": 0},
        {"num_classes": 2.5},
        {"in_chans": "3"},
        {"num_classes": True},
    ],
)
def test_bad_sizes(kwargs):
    with pytest.raises(ValueError, match="num_classes|in_chans"):
        create_model("resnet8", **kwargs)


def test_canonical_name_and_kwargs():
    model = create_model("  ResNet8 ")
    assert model.arch_name == "resnet8"
    with pytest.raises(TypeError):
        create_model("resnet8", width=3)  # unknown builder kwargs are not swallowed


def test_register_model():
    with pytest.raises(ValueError, match="already registered"):
        register_model(lambda **kw: nn.Linear(1, 1), name="resnet20")
    with pytest.raises(ValueError, match="namespace"):
        register_model(lambda **kw: nn.Linear(1, 1), name="tv/mine")

    def tiny_test_net(*, num_classes, in_chans, hidden):
        return nn.Sequential(
            nn.Conv2d(in_chans, hidden, 3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(hidden, num_classes),
        )

    register_model(tiny_test_net, input_hw=(8, 8), hidden=4)
    try:
        assert "tiny_test_net" in list_models("tiny*")
        model = create_model("tiny_test_net", num_classes=3, in_chans=2)
        assert model.classifier_name == "3" and model.default_input_size == (2, 8, 8)  # found generically
        assert model(torch.randn(1, 2, 8, 8)).shape == (1, 3)
    finally:
        registry._MODELS.pop("tiny_test_net")


def test_list_models_filter():
    assert list_models("resnet*") == ["resnet8", "resnet20", "resnet32", "resnet56", "resnet110"]
    assert list_models("wrn-*") == ["wrn-16-4", "wrn-26-12", "wrn-28-10"]
    assert list_models("*preresnet*") == ["preresnet11", "preresnet164"]
    assert list_models("TV/ResNet1*") == ["tv/resnet18", "tv/resnet101", "tv/resnet152"]
    assert list_models("nothing-like-this*") == []
    assert list_models(None) == list_models() == list_models("*")


def test_tv_names():
    import torchvision.models as tvm

    names = list_models("tv/*")
    assert names == sorted(names, key=registry._natural_key)
    assert {n[3:] for n in names} == set(tvm.list_models(module=tvm))
    assert len(names) > 60
    for classic in (
        "resnet18",
        "resnet50",
        "mobilenet_v2",
        "densenet121",
        "vgg16_bn",
        "efficientnet_b0",
        "squeezenet1_0",
        "inception_v3",
        "googlenet",
        "vit_b_16",
        "convnext_tiny",
        "regnet_y_400mf",
    ):
        assert f"tv/{classic}" in names
    for other in (
        "fasterrcnn",
        "deeplab",
        "fcn_",
        "raft",
        "r3d",
        "quantized",
        "ssd",
        "mvit",
        "s3d",
        "keypoint",
    ):
        assert not any(other in n for n in names), other


@pytest.mark.parametrize(
    "name", ["resnet18", "mobilenet_v2", "densenet121", "squeezenet1_0", "efficientnet_b0"]
)
def test_tv_forward_gray(name):
    torch.manual_seed(0)
    model = create_model(f"tv/{name}", num_classes=5, in_chans=1)
    assert (model.arch_name, model.num_classes, model.in_chans) == (f"tv/{name}", 5, 1)
    assert model.default_input_size == (1, 224, 224)
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == 1
    head = model.get_submodule(model.classifier_name)
    if name.startswith("squeezenet"):
        assert (
            model.classifier_name == "classifier.1" and isinstance(head, nn.Conv2d) and head.out_channels == 5
        )
    else:
        assert isinstance(head, nn.Linear) and head.out_features == 5
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_tv_rgb_keeps_stem_and_other_in_chans():
    model = create_model("tv/resnet18", num_classes=4)
    assert model.conv1.in_channels == 3 and model.classifier_name == "fc"
    model = create_model("tv/resnet18", num_classes=4, in_chans=5)
    conv = model.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        5,
        64,
        (7, 7),
        (2, 2),
        (3, 3),
    )
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 5, 48, 48)).shape == (1, 4)


def test_adapt_weight():
    w = torch.randn(8, 3, 3, 3)
    assert torch.equal(_adapt_weight(w, 1), w.sum(1, keepdim=True))
    six = _adapt_weight(w, 6)
    assert torch.allclose(six, torch.cat([w, w], 1) * 0.5)
    assert _adapt_weight(w, 4).shape == (8, 4, 3, 3)


# A small member of every torchvision family. The cheap ones are built for real on the CPU; the ones
# with costly random init (transformers, VGG, wide ResNets) on the meta device, which runs the same
# construction, stem replacement and classifier search without allocating or initialising weights.
TV_FAMILY_REPS = {
    "cpu": [
        "alexnet",
        "googlenet",
        "mnasnet0_5",
        "mobilenet_v3_small",
        "regnet_x_400mf",
        "regnet_y_400mf",
        "resnext50_32x4d",
        "shufflenet_v2_x0_5",
        "squeezenet1_1",
    ],
    "meta": [
        "convnext_tiny",
        "efficientnet_v2_s",
        "inception_v3",
        "maxvit_t",
        "swin_t",
        "swin_v2_t",
        "vgg11_bn",
        "vit_b_32",
        "wide_resnet50_2",
    ],
}


def _check_built(name: str, device: str) -> None:
    with torch.device(device):
        model = create_model(name, num_classes=3, in_chans=2)
    head = model.get_submodule(model.classifier_name)
    assert getattr(head, "out_features", getattr(head, "out_channels", None)) == 3, name
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == 2 and stem.weight.device.type == device, name
    assert model.arch_name == name and model.default_input_size == (2, 224, 224)


@pytest.mark.parametrize("device, name", [(d, n) for d, names in TV_FAMILY_REPS.items() for n in names])
def test_tv_family_constructs(device, name):
    _check_built(f"tv/{name}", device)


@pytest.mark.slow
def test_every_tv_model_constructs():
    """Every tv/* name builds (~45-60 s on 2 cores): on the meta device, except RegNets, whose builder needs real tensors."""
    for name in list_models("tv/*"):
        _check_built(name, "cpu" if "regnet" in name else "meta")

