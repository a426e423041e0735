"""Models, written here (no torchvision), and deterministic initialisation from an injected generator.

Registered names: ``mlp``, ``small-cnn``, ``resnet20``, ``resnet56``, ``resnet18``, ``resnet34``,
``vgg11``, ``mobilenetv2``. Each takes ``(input_shape, num_classes, norm=...)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsimenv.learning.models import mobilenet, resnet, vgg  # noqa: F401 - registers the models
from fedsimenv.learning.models.norm import NORM_KINDS, NormKind, norm2d
from fedsimenv.learning.models.registry import MODELS, ModelFactory
from fedsimenv.learning.models.simple import MLP, SmallCNN

__all__ = [
    "MLP",
    "MODELS",
    "NORM_KINDS",
    "ModelFactory",
    "NormKind",
    "SmallCNN",
    "build_model",
    "classifier_of",
    "init_parameters",
    "norm2d",
]

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


@torch.no_grad()
def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every layer as PyTorch's defaults do, but drawing only from ``generator``.

    PyTorch's own ``reset_parameters`` draws from the global RNG; this keeps library code free of it.
    Norm layers get their (deterministic) defaults: scale 1, shift 0, fresh running statistics.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif isinstance(module, _NORM_TYPES):
            module.reset_parameters()  # ones/zeros (and running stats): no random draws


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    norm: str | None = None,
) -> nn.Module:
    """Build registered model ``name`` on ``device`` and initialise it from ``generator``.

    The module is constructed on the meta device first: constructing it for real would run PyTorch's
    default initialisation, which draws from (and advances) the global RNG.

    Args:
        name: Registry name.
        input_shape: (channels, height, width) of one sample.
        num_classes: Output classes.
        generator: Source of the initial weights.
        device: Where the model lives.
        norm: Normalisation kind; None keeps the model's default (none for mlp/small-cnn, batch else).
    """
    kwargs = {} if norm is None else {"norm": norm}
    with torch.device("meta"):
        model = MODELS.get(name)(input_shape, num_classes, **kwargs)
    # Initialise on the CPU, where the (CPU) generator lives, then move: same weights on any device.
    model = model.to_empty(device="cpu")
    init_parameters(model, generator)
    return model.to(device)


def classifier_of(model: nn.Module) -> nn.Module:
    """The output layer (never pruned structurally: its outputs are the classes)."""
    last: nn.Module | None = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no linear output layer")
    return last
