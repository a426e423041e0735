"""VGG-11 (Simonyan & Zisserman, 2015) in its CIFAR form: conv3x3 stacks, global pool, one linear head."""

from __future__ import annotations

import torch
from torch import nn

from fedsimenv.learning.models.norm import norm2d
from fedsimenv.learning.models.registry import MODELS

#: Channels of each conv; "M" is a 2x2 max-pool.
VGG11_LAYOUT: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@MODELS.register("vgg11")
class VGG11(nn.Module):
    """VGG-11 with norm after every conv.

    A max-pool is skipped once the feature map is 1x1, so the model also runs on 8x8 digits.

    Args:
        input_shape: (channels, height, width) of one sample.
        num_classes: Output classes.
        norm: Normalisation kind (see :func:`norm2d`).
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, norm: str = "batch") -> None:
        super().__init__()
        in_channels, height, _ = input_shape
        layers: list[nn.Module] = []
        for item in VGG11_LAYOUT:
            if item == "M":
                if height >= 2:
                    layers.append(nn.MaxPool2d(2))
                    height //= 2
                continue
            assert isinstance(item, int)
            layers += [
                nn.Conv2d(in_channels, item, 3, padding=1, bias=norm == "none"),
                norm2d(norm, item),
                nn.ReLU(),
            ]
            in_channels = item
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out
