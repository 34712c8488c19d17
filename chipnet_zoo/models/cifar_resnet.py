"""CIFAR ResNets (He et al. 2016) and Wide ResNets, built as the ChipNet authors' ``ResNetCifar``.

Post-activation BasicBlocks (conv-BN-ReLU-conv-BN, add, ReLU) in three stages of widths
16w / 32w / 64w at strides 1 / 2 / 2, a 3x3 16-channel stem, adaptive average pooling and ``fc``.
Where a block changes shape, the shortcut is a 1x1 conv + BN projection ("option B"; He et al.'s
CIFAR models use zero-padding "option A", which leaves some channels unprunable). This adds 2,752
parameters to every CIFAR ResNet (576 + 2,176) compared with option A.

- ``resnet<6n+2>``: width 1, ``n`` blocks per stage (resnet8/20/32/56/110).
- ``wrn-<depth>-<width>``: ``n`` blocks per stage, stages 16·width / 32·width / 64·width; the first
  stage also gets a projection when ``16 != 16·width``. No dropout. ``n = (depth - 4) / 6`` for the
  depths of Zagoruyko & Komodakis (wrn-16-4, wrn-28-10: they count the projections), and
  ``n = (depth - 2) / 6`` for ChipNet's count (wrn-26-12 is ``ResNetCifar(BasicBlock, [4, 4, 4], 12)``).
  The two depth residues mod 6 (4 and 2) never collide; other depths are a ``ValueError``.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model, register_model_pattern


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU), BN weight 1 / bias 0, Linear with PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """Post-activation 3x3-3x3 block with an optional 1x1 conv + BN projection shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class ResNetCifar(nn.Module):
    """Three-stage CIFAR ResNet of BasicBlocks (``blocks`` per stage, stage widths ``16·width·2^i``)."""

    def __init__(self, blocks: int, width: int = 1, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, stride in enumerate((1, 2, 2)):
            planes = 16 * width * 2**i
            layer = []
            for j in range(blocks):
                layer.append(BasicBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(self.avgpool(out), 1))


def _resnet(*, blocks: int, num_classes: int, in_chans: int) -> nn.Module:
    return ResNetCifar(blocks, 1, num_classes=num_classes, in_chans=in_chans)


# resnet8 (n=1) is a tiny model for fast tests; the others are He et al.'s CIFAR depths.
for _depth in (8, 20, 32, 56, 110):
    register_model(_resnet, name=f"resnet{_depth}", classifier="fc", blocks=(_depth - 2) // 6)


def _wrn(*, blocks: int, width: int, num_classes: int, in_chans: int) -> nn.Module:
    return ResNetCifar(blocks, width, num_classes=num_classes, in_chans=in_chans)


def wrn_blocks(depth: int) -> int:
    """Blocks per stage for a WRN depth, under either counting convention (they never collide):
    depth = 6n + 4 (Zagoruyko & Komodakis: wrn-16-4 -> 2, wrn-28-10 -> 4, wrn-40-4 -> 6) or
    depth = 6n + 2 (ChipNet / He et al., who do not count the projections: wrn-26-12 -> 4)."""
    if depth >= 10 and (depth - 4) % 6 == 0:
        return (depth - 4) // 6
    if depth >= 8 and (depth - 2) % 6 == 0:
        return (depth - 2) // 6
    raise ValueError(
        f"invalid WRN depth {depth}: need depth = 6n + 4 (e.g. 16, 22, 28, 40) or 6n + 2 "
        f"(ChipNet's count, e.g. 8, 14, 20, 26) with n >= 1 blocks per stage"
    )


def _parse_wrn(m: re.Match[str]) -> tuple[str, dict]:
    depth, width = int(m.group(1)), int(m.group(2))
    try:
        blocks = wrn_blocks(depth)
    except ValueError as exc:
        raise ValueError(f"{m.group(0)!r}: {exc}") from None
    if width < 1:
        raise ValueError(f"{m.group(0)!r}: invalid WRN width {width}, need an integer >= 1")
    return f"wrn-{depth}-{width}", {"blocks": blocks, "width": width}


register_model_pattern(
    r"wrn-(\d+)-(\d+)",
    _parse_wrn,
    _wrn,
    examples=("wrn-16-4", "wrn-26-12", "wrn-28-10"),
    prefix="wrn",
    hint="Wide ResNets are named wrn-<depth>-<width>, e.g. wrn-16-4, wrn-26-12 or wrn-28-10",
    classifier="fc",
)
