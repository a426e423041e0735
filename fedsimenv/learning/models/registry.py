"""The model registry (its own module so model files can register without import cycles)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedsimenv.registry import Registry

#: ``factory(input_shape, num_classes, norm=...)`` -> module.
ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")
