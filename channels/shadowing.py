"""Log-normal shadowing, i.i.d. per device or spatially correlated along each device's path."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from channels.base import SHADOWING_MODELS, ShadowingModel
from channels.checks import check_nonnegative
from channels.units import FloatArray


class LogNormalParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    std_db: float = Field(8.0, ge=0, le=30, description="standard deviation sigma of the shadowing, dB")


@SHADOWING_MODELS.register("log-normal")
class LogNormalShadowing(ShadowingModel):
    """``X ~ N(0, sigma^2)`` dB drawn once per device and kept (no spatial correlation model)."""

    Params = LogNormalParams
    params: LogNormalParams

    def sample_db(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        if self.params.std_db == 0:
            return np.zeros(num_devices)
        return rng.normal(0.0, self.params.std_db, size=num_devices)

    def update_db(
        self, shadowing_db: FloatArray, moved_m: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        check_nonnegative("moved_m", moved_m)
        return np.array(shadowing_db, dtype=np.float64)


class GudmundsonParams(LogNormalParams):
    decorrelation_distance_m: float = Field(
        50.0, gt=0, le=1e6, description="distance at which the correlation has fallen to 1/e (<= 1000 km)"
    )


@SHADOWING_MODELS.register("gudmundson")
class GudmundsonShadowing(LogNormalShadowing):
    """Spatially correlated log-normal shadowing (Gudmundson, Electronics Letters 1991).

    The shadowing seen along a device's path has autocorrelation ``R(dx) = sigma^2 exp(-|dx| / d_corr)``;
    moving ``dx`` metres is a first-order autoregressive step
    ``X' = a X + sqrt(1 - a^2) sigma w`` with ``a = exp(-dx / d_corr)`` and ``w ~ N(0, 1)``, which keeps
    the marginal ``N(0, sigma^2)`` and realises that autocorrelation exactly.
    """

    Params = GudmundsonParams
    params: GudmundsonParams

    def update_db(
        self, shadowing_db: FloatArray, moved_m: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        moved = check_nonnegative("moved_m", moved_m)
        x = np.asarray(shadowing_db, dtype=np.float64)
        a = np.exp(-moved / self.params.decorrelation_distance_m)
        # Always draw, so the stream's position does not depend on who moved.
        w = rng.standard_normal(x.shape)
        return np.asarray(a * x + np.sqrt(1.0 - a**2) * self.params.std_db * w)
