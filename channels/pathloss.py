"""Classic path-loss models (dB, positive = attenuation): Friis free space, log-distance, macro-cell.

Distances below each model's ``min_distance_m`` are clamped to it, because the far-field laws are not
valid near the antenna (and diverge at 0 m). Negative distances raise ``ValueError``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from channels.base import PATH_LOSS_MODELS, BoolArray, PathLossModel
from channels.checks import check_nonnegative
from channels.units import FloatArray

#: Speed of light in vacuum, m/s.
SPEED_OF_LIGHT_MPS = 299_792_458.0


def free_space_path_loss_db(distance_m: FloatArray, carrier_freq_hz: float) -> FloatArray:
    """Friis free-space path loss ``20 log10(4 pi d f / c)`` dB for isotropic antennas."""
    return np.asarray(20.0 * np.log10(4.0 * np.pi * distance_m * carrier_freq_hz / SPEED_OF_LIGHT_MPS))


def clamped_distance_m(distance_m: FloatArray, min_distance_m: float) -> FloatArray:
    """``distance_m`` checked non-negative and clamped below at ``min_distance_m``."""
    return np.maximum(check_nonnegative("distance_m", distance_m), min_distance_m)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class FreeSpaceParams(_Frozen):
    carrier_freq_hz: float = Field(2e9, gt=0, le=1e12, description="carrier frequency f")
    min_distance_m: float = Field(
        1.0, gt=0, le=1e5, description="distances below this are clamped to it (<= 100 km)"
    )


@PATH_LOSS_MODELS.register("free-space")
class FreeSpacePathLoss(PathLossModel):
    """Friis free space: ``PL = 20 log10(4 pi d f_c / c)`` dB (isotropic antennas, far field)."""

    Params = FreeSpaceParams
    params: FreeSpaceParams

    def path_loss_db(self, distance_m: FloatArray, los: BoolArray | None = None) -> FloatArray:
        d = clamped_distance_m(distance_m, self.params.min_distance_m)
        return free_space_path_loss_db(d, self.params.carrier_freq_hz)


class LogDistanceParams(_Frozen):
    exponent: float = Field(3.0, ge=1.0, le=8.0, description="path-loss exponent n")
    reference_distance_m: float = Field(1.0, gt=0, le=1e5, description="reference distance d0 (<= 100 km)")
    reference_loss_db: float | None = Field(
        None,
        ge=-100,
        le=300,
        description="loss at d0 in [-100, 300] dB; None = Friis free-space loss at d0 and carrier_freq_hz",
    )
    carrier_freq_hz: float = Field(2e9, gt=0, le=1e12, description="used only for the Friis reference")
    min_distance_m: float = Field(
        1.0, gt=0, le=1e5, description="distances below this are clamped to it (<= 100 km)"
    )


@PATH_LOSS_MODELS.register("log-distance")
class LogDistancePathLoss(PathLossModel):
    """Log-distance law ``PL(d) = PL(d0) + 10 n log10(d / d0)`` dB.

    ``PL(d0)`` is ``reference_loss_db`` or, when that is None, the Friis loss at ``d0``.
    """

    Params = LogDistanceParams
    params: LogDistanceParams

    def path_loss_db(self, distance_m: FloatArray, los: BoolArray | None = None) -> FloatArray:
        p = self.params
        d = clamped_distance_m(distance_m, p.min_distance_m)
        d0 = p.reference_distance_m
        pl0 = p.reference_loss_db
        if pl0 is None:
            pl0 = float(free_space_path_loss_db(np.asarray(d0), p.carrier_freq_hz))
        return np.asarray(pl0 + 10.0 * p.exponent * np.log10(d / d0))


class MacroCellParams(_Frozen):
    min_distance_m: float = Field(
        1.0, gt=0, le=1e5, description="distances below this are clamped to it (<= 100 km)"
    )


@PATH_LOSS_MODELS.register("macro-cell")
class MacroCellPathLoss(PathLossModel):
    """Macro-cell path loss ``128.1 + 37.6 log10(d / 1 km)`` dB (3GPP TR 36.814 style, 2 GHz).

    The model of Yang et al. (IEEE TWC 2021) and many wireless-FL papers. Distances below
    ``min_distance_m`` are clamped to it, since the log-distance law is not valid near the antenna.
    """

    Params = MacroCellParams
    params: MacroCellParams

    def path_loss_db(self, distance_m: FloatArray, los: BoolArray | None = None) -> FloatArray:
        d_km = clamped_distance_m(distance_m, self.params.min_distance_m) / 1e3
        return np.asarray(128.1 + 37.6 * np.log10(d_km))
