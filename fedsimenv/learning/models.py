"""Models, written here (no torchvision), and deterministic initialisation from an injected generator."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fedsimenv.registry import Registry

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")


@MODELS.register("small-cnn")
class SmallCNN(nn.Module):
    """conv3x3(16) - ReLU - conv3x3(32) - ReLU - maxpool2 - linear(num_classes).

    Args:
        input_shape: (channels, height, width) of one sample.
        num_classes: Output classes.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
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
    """flatten - linear(128) - ReLU - linear(num_classes)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


@torch.no_grad()
def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise conv/linear layers as PyTorch's defaults do, but from ``generator``.

    PyTorch's own ``reset_parameters`` draws from the global RNG; this keeps library code free of it.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Build registered model ``name`` on ``device`` and initialise it from ``generator``.

    The module is constructed on the meta device first: constructing it for real would run PyTorch's
    default initialisation, which draws from (and advances) the global RNG.
    """
    with torch.device("meta"):
        model = MODELS.get(name)(input_shape, num_classes)
    # Initialise on the CPU, where the (CPU) generator lives, then move: same weights on any device.
    model = model.to_empty(device="cpu")
    init_parameters(model, generator)
    return model.to(device)
