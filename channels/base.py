"""Plug-in base classes and registries for channel components.

A channel component is one class with a nested pydantic ``Params`` model and one registry name; the
scenario YAML selects it as ``{model: NAME, params: {...}}`` and its params are validated against
``Params`` when the scenario is loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from channels.units import FloatArray
from fedsimenv.registry import Registry


class NoParams(BaseModel):
    """Parameters of a component that takes none."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PathLossModel(ABC):
    """Deterministic distance-dependent path loss."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @abstractmethod
    def path_loss_db(self, distance_m: FloatArray) -> FloatArray:
        """Path loss in dB (positive = attenuation) at ``distance_m`` metres."""


class FadingModel(ABC):
    """Small-scale fading: i.i.d. power gains with unit mean, one draw per device per block."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @abstractmethod
    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        """Linear power gains |h|^2 (mean 1) for ``num_devices`` devices."""


PATH_LOSS_MODELS: Registry[type[PathLossModel]] = Registry("path-loss model")
FADING_MODELS: Registry[type[FadingModel]] = Registry("fading model")


def validate_params(cls: type[PathLossModel] | type[FadingModel], params: dict[str, Any]) -> BaseModel:
    """Validate a component's params dict against its ``Params`` model."""
    return cls.Params.model_validate(params)
