"""ResNets for small images: ResNet-20/56 (He et al., 2016, CIFAR variant) and ResNet-18/34 with a
CIFAR-style stem (3x3 stride-1 conv, no max-pool), as in most FL pruning papers.

Shortcuts that change shape are 1x1 conv + norm ("option B"); the parameter-free zero-padding
shortcut ("option A") of the original CIFAR ResNets is not used because channel pruning through a
dependency graph needs every residual add to be between prunable layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedsimenv.learning.models.norm import norm2d
from fedsimenv.learning.models.registry import MODELS


class BasicBlock(nn.Module):
    """conv3x3 - norm - ReLU - conv3x3 - norm, plus the (projected) input, then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"  # a norm layer's shift makes a conv bias redundant
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = norm2d(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=bias)
        self.norm2 = norm2d(norm, channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=bias), norm2d(norm, channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A stack of :class:`BasicBlock` stages after a 3x3 stem, global average pool, linear head.

    Args:
        input_shape: (channels, height, width) of one sample.
        num_classes: Output classes.
        widths: Channels of each stage (the first stage keeps the stem's width).
        depths: Blocks per stage.
        norm: Normalisation kind (see :func:`norm2d`).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=norm == "none"),
            norm2d(norm, widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        in_channels = widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, norm))
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.pool(self.blocks(self.stem(x))))
        return out


@MODELS.register("resnet20")
def resnet20(input_shape: tuple[int, int, int], num_classes: int, norm: str = "batch") -> ResNet:
    """ResNet-20 for CIFAR: 3 stages x 3 blocks, 16/32/64 channels (~0.27 M parameters)."""
    return ResNet(input_shape, num_classes, (16, 32, 64), (3, 3, 3), norm)


@MODELS.register("resnet56")
def resnet56(input_shape: tuple[int, int, int], num_classes: int, norm: str = "batch") -> ResNet:
    """ResNet-56 for CIFAR: 3 stages x 9 blocks, 16/32/64 channels (~0.85 M parameters)."""
    return ResNet(input_shape, num_classes, (16, 32, 64), (9, 9, 9), norm)


@MODELS.register("resnet18")
def resnet18(input_shape: tuple[int, int, int], num_classes: int, norm: str = "batch") -> ResNet:
    """ResNet-18 with a CIFAR stem: stages of 2 blocks, 64/128/256/512 channels (~11 M parameters)."""
    return ResNet(input_shape, num_classes, (64, 128, 256, 512), (2, 2, 2, 2), norm)


@MODELS.register("resnet34")
def resnet34(input_shape: tuple[int, int, int], num_classes: int, norm: str = "batch") -> ResNet:
    """ResNet-34 with a CIFAR stem: 3/4/6/3 blocks, 64/128/256/512 channels (~21 M parameters)."""
    return ResNet(input_shape, num_classes, (64, 128, 256, 512), (3, 4, 6, 3), norm)
