"""Path-loss models (dB, positive = attenuation)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from channels.base import PATH_LOSS_MODELS, PathLossModel
from channels.units import FloatArray


class MacroCellParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_distance_m: float = Field(1.0, gt=0, description="distances below this are clamped to it")


@PATH_LOSS_MODELS.register("macro-cell")
class MacroCellPathLoss(PathLossModel):
    """Macro-cell path loss ``128.1 + 37.6 log10(d / 1 km)`` dB (3GPP TR 36.814 style, 2 GHz).

    The model of Yang et al. (IEEE TWC 2021) and many wireless-FL papers. Distances below
    ``min_distance_m`` are clamped to it, since the log-distance law is not valid near the antenna.
    """

    Params = MacroCellParams
    params: MacroCellParams

    def path_loss_db(self, distance_m: FloatArray) -> FloatArray:
        d_km = np.maximum(np.asarray(distance_m, dtype=np.float64), self.params.min_distance_m) / 1e3
        return 128.1 + 37.6 * np.log10(d_km)
