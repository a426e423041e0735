"""The composite channel: path loss x log-normal shadowing x small-scale fading."""

from __future__ import annotations

import numpy as np

from channels.base import FadingModel, PathLossModel
from channels.units import FloatArray, db_to_linear


class ChannelModel:
    """Linear channel power gain ``g = 10^(-(PL(d) + X_sigma)/10) * |h|^2`` per device.

    Shadowing ``X_sigma ~ N(0, sigma^2)`` dB is drawn once per device when the world is built
    (:meth:`sample_shadowing_db`); fading is redrawn every block (:meth:`sample_gain`). In the walking
    skeleton one fading block spans one round (block fading with coherence time >= round length).

    Args:
        path_loss: Distance-dependent path loss.
        fading: Small-scale fading.
        shadowing_std_db: Standard deviation of log-normal shadowing in dB (0 disables it).
    """

    def __init__(self, path_loss: PathLossModel, fading: FadingModel, shadowing_std_db: float) -> None:
        if shadowing_std_db < 0:
            raise ValueError(f"shadowing_std_db must be >= 0, got {shadowing_std_db}")
        self.path_loss = path_loss
        self.fading = fading
        self.shadowing_std_db = shadowing_std_db

    def sample_shadowing_db(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        """One shadowing value (dB) per device."""
        if self.shadowing_std_db == 0:
            return np.zeros(num_devices)
        return rng.normal(0.0, self.shadowing_std_db, size=num_devices)

    def large_scale_gain(self, distance_m: FloatArray, shadowing_db: FloatArray) -> FloatArray:
        """Linear gain from path loss and shadowing only."""
        return db_to_linear(-(self.path_loss.path_loss_db(distance_m) + shadowing_db))

    def sample_gain(
        self, distance_m: FloatArray, shadowing_db: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        """Linear power gain per device for one fading block."""
        fading = self.fading.sample_power_gain(len(distance_m), rng)
        return self.large_scale_gain(distance_m, shadowing_db) * fading
