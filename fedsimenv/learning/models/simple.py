"""Small models for digits-sized tasks: an MLP and a two-layer CNN."""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsimenv.learning.models.norm import norm2d
from fedsimenv.learning.models.registry import MODELS


@MODELS.register("small-cnn")
class SmallCNN(nn.Module):
    """conv3x3(16) - [norm] - ReLU - conv3x3(32) - [norm] - ReLU - maxpool2 - linear(num_classes).

    Args:
        input_shape: (channels, height, width) of one sample.
        num_classes: Output classes.
        norm: Normalisation after each conv (see :func:`norm2d`); none by default.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, norm: str = "none") -> None:
        super().__init__()
        channels, height, width = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, padding=1),
            *([norm2d(norm, 16)] if norm != "none" else []),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            *([norm2d(norm, 32)] if norm != "none" else []),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(32 * (height // 2) * (width // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


@MODELS.register("mlp")
class MLP(nn.Module):
    """flatten - linear(hidden) - [LayerNorm] - ReLU - linear(num_classes).

    Args:
        input_shape: (channels, height, width) of one sample.
        num_classes: Output classes.
        norm: "none" (default) or any other kind, which adds a LayerNorm (there is no spatial axis,
            so batch/layer/group all mean a per-feature norm here; "batch" gives BatchNorm1d).
        hidden: Hidden units.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, norm: str = "none", hidden: int = 128
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(math.prod(input_shape), hidden)]
        if norm == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        elif norm != "none":
            layers.append(nn.LayerNorm(hidden))
        self.net = nn.Sequential(*layers, nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out
