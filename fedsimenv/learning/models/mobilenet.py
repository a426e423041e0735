"""MobileNetV2 (Sandler et al., 2018) for small images: stride 1 in the stem and first downsampling
stage (the usual CIFAR adaptation), inverted residual blocks with depthwise convs and ReLU6."""

from __future__ import annotations

import torch
from torch import nn

from fedsimenv.learning.models.norm import norm2d
from fedsimenv.learning.models.registry import MODELS

#: (expansion t, output channels c, repeats n, first stride s), CIFAR strides.
MOBILENETV2_LAYOUT: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_norm_act(
    in_channels: int, out_channels: int, kernel: int, stride: int, groups: int, norm: str, act: bool
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=norm == "none"),
        norm2d(norm, out_channels),
    ]
    if act:
        layers.append(nn.ReLU6())
    return layers


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise - 1x1 linear projection; identity shortcut when shapes agree."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, norm: str) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_norm_act(in_channels, hidden, 1, 1, 1, norm, act=True)
        layers += _conv_norm_act(hidden, hidden, 3, stride, hidden, norm, act=True)
        layers += _conv_norm_act(hidden, out_channels, 1, 1, 1, norm, act=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return x + out if self.residual else out


@MODELS.register("mobilenetv2")
class MobileNetV2(nn.Module):
    """MobileNetV2, width multiplier 1 (~2.2 M parameters for 10 classes).

    Args:
        input_shape: (channels, height, width) of one sample.
        num_classes: Output classes.
        norm: Normalisation kind (see :func:`norm2d`).
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, norm: str = "batch") -> None:
        super().__init__()
        layers: list[nn.Module] = _conv_norm_act(input_shape[0], 32, 3, 1, 1, norm, act=True)
        in_channels = 32
        for expansion, channels, repeats, stride in MOBILENETV2_LAYOUT:
            for i in range(repeats):
                layers.append(
                    InvertedResidual(in_channels, channels, stride if i == 0 else 1, expansion, norm)
                )
                in_channels = channels
        layers += _conv_norm_act(in_channels, 1280, 1, 1, 1, norm, act=True)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out
