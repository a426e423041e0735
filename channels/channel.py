"""The composite channel: path loss x log-normal shadowing x small-scale fading."""

from __future__ import annotations

import numpy as np

from channels.base import BoolArray, FadingModel, PathLossModel, ShadowingModel
from channels.units import FloatArray, db_to_linear


class ChannelModel:
    """Linear channel power gain ``g = 10^(-(PL(d) + X_sigma)/10) * |h|^2`` per device.

    Shadowing ``X_sigma ~ N(0, sigma^2)`` dB is drawn once per device when the world is built
    (:meth:`sample_shadowing_db`); fading is redrawn every block (:meth:`sample_gain`). In the walking
    skeleton one fading block spans one round (block fading with coherence time >= round length).
    For time-correlated use (mobility, Gauss-Markov fading, correlated shadowing) wrap the model in
    :class:`channels.dynamic.DynamicChannel` and ``advance`` it per block.

    Path-loss models with a LOS/NLOS state (``3gpp-uma`` / ``3gpp-umi`` with
    ``condition: probabilistic``) get one uniform variate ``u`` per device, drawn from the fading
    stream on the first :meth:`sample_gain` call and kept: the device is in LOS while
    ``u < P_LOS(d)``, so a static device keeps its LOS state.

    Args:
        path_loss: Distance-dependent path loss.
        fading: Small-scale fading.
        shadowing_std_db: Standard deviation of i.i.d. log-normal shadowing in dB (0 disables it);
            ignored when ``shadowing`` is given.
        shadowing: A shadowing model (e.g. spatially correlated ``gudmundson``).
    """

    def __init__(
        self,
        path_loss: PathLossModel,
        fading: FadingModel,
        shadowing_std_db: float = 0.0,
        shadowing: ShadowingModel | None = None,
    ) -> None:
        if not 0 <= shadowing_std_db <= 30:
            raise ValueError(f"shadowing_std_db must be in [0, 30] dB, got {shadowing_std_db}")
        if shadowing is None:
            from channels.shadowing import LogNormalParams, LogNormalShadowing

            shadowing = LogNormalShadowing(LogNormalParams(std_db=shadowing_std_db))
        self.path_loss = path_loss
        self.fading = fading
        self.shadowing = shadowing
        self.shadowing_std_db = float(getattr(shadowing.params, "std_db", shadowing_std_db))
        self._los_uniform: FloatArray | None = None

    def sample_shadowing_db(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        """One shadowing value (dB) per device."""
        return self.shadowing.sample_db(num_devices, rng)

    def los_from_uniform(self, distance_m: FloatArray, uniform: FloatArray) -> BoolArray | None:
        """LOS state ``u < P_LOS(d)`` per device, or None for models without LOS/NLOS."""
        if not self.path_loss.needs_los_state:
            return None
        return np.asarray(uniform < self.path_loss.los_probability(distance_m))

    def large_scale_gain(
        self, distance_m: FloatArray, shadowing_db: FloatArray, los: BoolArray | None = None
    ) -> FloatArray:
        """Linear gain from path loss and shadowing only."""
        return db_to_linear(-(self.path_loss.path_loss_db(distance_m, los) + shadowing_db))

    def sample_gain(
        self, distance_m: FloatArray, shadowing_db: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        """Linear power gain per device for one fading block."""
        n = len(distance_m)
        los = None
        if self.path_loss.needs_los_state:
            if self._los_uniform is None or len(self._los_uniform) != n:
                self._los_uniform = rng.uniform(size=n)
            los = self.los_from_uniform(distance_m, self._los_uniform)
        fading = self.fading.sample_power_gain(n, rng)
        return self.large_scale_gain(distance_m, shadowing_db, los) * fading
