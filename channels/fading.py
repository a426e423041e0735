"""Small-scale fading models: linear power gains with unit mean."""

from __future__ import annotations

import numpy as np

from channels.base import FADING_MODELS, FadingModel
from channels.units import FloatArray


@FADING_MODELS.register("none")
class NoFading(FadingModel):
    """A static channel: power gain 1 for every device."""

    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        return np.ones(num_devices, dtype=np.float64)


@FADING_MODELS.register("rayleigh")
class RayleighFading(FadingModel):
    """Rayleigh fading: the envelope |h| is Rayleigh, so the power |h|^2 is Exponential(1)."""

    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        return rng.exponential(1.0, size=num_devices)
