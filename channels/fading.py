"""Small-scale fading models: linear power gains ``|h|^2`` with unit mean, i.i.d. per block.

Every i.i.d. model takes an optional ``coherence_time_s``: the block length used by
:class:`channels.temporal.BlockFadingProcess` when the channel is advanced in time (block fading:
constant within a block, independent across blocks). The time-correlated alternative is
``gauss-markov`` in :mod:`channels.temporal`.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import special, stats

from channels.base import FADING_MODELS, FadingModel
from channels.units import FloatArray


class BlockParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    coherence_time_s: float | None = Field(
        None,
        ge=1e-4,
        le=1e6,
        description="block length in [1e-4, 1e6] s; None = a new block whenever the channel is advanced",
    )


@FADING_MODELS.register("none")
class NoFading(FadingModel):
    """A static channel: power gain 1 for every device."""

    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        return np.ones(num_devices, dtype=np.float64)

    def power_cdf(self, gain_linear: FloatArray) -> FloatArray:
        return (np.asarray(gain_linear) >= 1.0).astype(np.float64)

    def log_mean_power_gain(self) -> float:
        return 0.0


@FADING_MODELS.register("rayleigh")
class RayleighFading(FadingModel):
    """Rayleigh fading: the envelope |h| is Rayleigh (scale 1/sqrt(2)), the power |h|^2 Exponential(1)."""

    Params = BlockParams

    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        return rng.exponential(1.0, size=num_devices)

    def power_cdf(self, gain_linear: FloatArray) -> FloatArray:
        return np.asarray(-np.expm1(-np.maximum(gain_linear, 0.0)))

    def log_mean_power_gain(self) -> float:
        return -float(np.euler_gamma)  # E[ln X] for X ~ Exponential(1)


class RicianParams(BlockParams):
    k_factor: float = Field(
        3.0, ge=0, le=1e4, description="Rician K (linear): LOS power / scattered power; 0 = Rayleigh"
    )


@FADING_MODELS.register("rician")
class RicianFading(FadingModel):
    """Rician fading ``h = sqrt(K/(K+1)) e^{j phi} + sqrt(1/(K+1)) CN(0, 1)``, unit mean power.

    The envelope is ``Rice(nu = sqrt(K/(K+1)), sigma = sqrt(1/(2(K+1))))``; ``2(K+1)|h|^2`` is
    noncentral chi-square with 2 degrees of freedom and noncentrality ``2K``.
    """

    Params = RicianParams
    params: RicianParams

    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        k = self.params.k_factor
        scatter = rng.standard_normal((2, num_devices)) * np.sqrt(0.5 / (k + 1.0))
        # The LOS phase does not change |h|, so put the LOS part on the real axis.
        scatter[0] += np.sqrt(k / (k + 1.0))
        return np.asarray(scatter[0] ** 2 + scatter[1] ** 2)

    def power_cdf(self, gain_linear: FloatArray) -> FloatArray:
        k = self.params.k_factor
        x = 2.0 * (k + 1.0) * np.maximum(gain_linear, 0.0)
        if k == 0:
            return np.asarray(stats.chi2.cdf(x, 2))
        return np.asarray(stats.ncx2.cdf(x, 2, 2.0 * k))


class NakagamiParams(BlockParams):
    m: float = Field(2.0, ge=0.5, le=1e4, description="Nakagami shape m (>= 0.5); m = 1 is Rayleigh")


@FADING_MODELS.register("nakagami")
class NakagamiFading(FadingModel):
    """Nakagami-m fading with spread ``Omega = 1``: the power ``|h|^2`` is Gamma(m, 1/m)."""

    Params = NakagamiParams
    params: NakagamiParams

    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        m = self.params.m
        return rng.gamma(m, 1.0 / m, size=num_devices)

    def power_cdf(self, gain_linear: FloatArray) -> FloatArray:
        m = self.params.m
        return np.asarray(special.gammainc(m, m * np.maximum(gain_linear, 0.0)))
