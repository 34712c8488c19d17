"""Pre-activation bottleneck ResNets for CIFAR, as in Network Slimming (Eric-mingjie/network-slimming,
``models/preresnet.py``), which ChipNet's ``r164`` adapts.

Bottleneck (expansion 4): BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1, plus the
shortcut (identity, or a bare 1x1 conv where the shape changes). Stages of 16 / 32 / 64 (x4 out)
at strides 1 / 2 / 2, final BN + ReLU, adaptive average pooling, ``fc``. Depth = 9n + 2.

Differences from network-slimming: no ``channel_selection`` layer (plain BN), BN weights start at 1
(network-slimming uses 0.5 to start its sparsity training), adaptive instead of 8x8 average pooling.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model
from .cifar_resnet import init_weights


class PreBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class PreResNet(nn.Module):
    """Pre-activation bottleneck ResNet of depth ``9n + 2``."""

    def __init__(self, depth: int = 164, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        if depth < 11 or (depth - 2) % 9 != 0:
            raise ValueError(f"PreResNet depth must be 9n + 2 with n >= 1, got {depth}")
        n = (depth - 2) // 9
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        in_planes = 16
        for i, stride in enumerate((1, 2, 2)):
            planes = 16 * 2**i
            layer = []
            for j in range(n):
                layer.append(PreBottleneck(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes * PreBottleneck.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.bn = nn.BatchNorm2d(in_planes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(torch.flatten(self.avgpool(out), 1))


def _preresnet(*, depth: int, num_classes: int, in_chans: int) -> nn.Module:
    return PreResNet(depth, num_classes=num_classes, in_chans=in_chans)


# preresnet11 (n=1) is a tiny pre-activation model for fast tests; preresnet164 is ChipNet's r164.
for _depth in (11, 164):
    register_model(_preresnet, name=f"preresnet{_depth}", classifier="fc", depth=_depth)
