"""3GPP TR 38.901 (V16/V17) Urban Macro (UMa) and Urban Micro street-canyon (UMi) path loss.

Formulas of Table 7.4.1-1 (path loss, breakpoint distance) and Table 7.4.2-1 (LOS probability,
outdoor users). ``distance_m`` is the 2-D ground distance ``d_2D``; the 3-D distance is
``d_3D = sqrt(d_2D^2 + (h_BS - h_UT)^2)``. Carrier frequency ``f_c`` enters the formulas in GHz,
the breakpoint distance ``d'_BP = 4 h'_BS h'_UT f_c / c`` in Hz with ``c = 3e8`` m/s and effective
heights ``h' = h - h_E``.

Scope and simplifications (stated, not hidden):

* ``d_2D`` below ``min_distance_m`` (default 10 m, the lower validity limit) is clamped to it; above
  5 km the formulas are extrapolated.
* The effective environment height is ``h_E = 1 m``. For UMa this is exact when ``h_UT < 13 m``; for
  taller terminals the report draws ``h_E`` at random, which is not modelled here.
* NLOS uses the main (not the optional) formula: ``PL_NLOS = max(PL_LOS, PL'_NLOS)``.
* With ``condition: probabilistic`` the caller draws each device's LOS state from
  :meth:`los_probability` (see :class:`channels.channel.ChannelModel`); spatial consistency of the
  LOS state (Sec. 7.6.3.3) is approximated there, not implemented to the letter.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from channels.base import PATH_LOSS_MODELS, BoolArray, PathLossModel
from channels.pathloss import clamped_distance_m
from channels.units import FloatArray

#: The speed of light as TR 38.901 rounds it for the breakpoint distance, m/s.
C_3GPP_MPS = 3.0e8
#: Effective environment height h_E, metres (see module docstring).
ENV_HEIGHT_M = 1.0

Condition = Literal["los", "nlos", "probabilistic"]


class _Params3gpp(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    carrier_freq_hz: float = Field(3.5e9, ge=0.5e9, le=100e9, description="carrier frequency f_c")
    ut_height_m: float = Field(1.5, ge=1.5, le=22.5, description="user terminal antenna height h_UT")
    condition: Condition = Field("probabilistic", description="always LOS, always NLOS, or drawn")
    min_distance_m: float = Field(
        10.0, gt=0, le=1e5, description="d_2D below this is clamped to it (<= 100 km)"
    )


class UMaParams(_Params3gpp):
    bs_height_m: float = Field(25.0, gt=ENV_HEIGHT_M, le=100.0, description="base station height h_BS")


class UMiParams(_Params3gpp):
    bs_height_m: float = Field(10.0, gt=ENV_HEIGHT_M, le=100.0, description="base station height h_BS")


class _Path3gpp(PathLossModel):
    """Shared LOS/NLOS plumbing; subclasses give the three formulas."""

    params: UMaParams | UMiParams
    #: Shadow-fading standard deviations (dB) of Table 7.4.1-1, for reference: (LOS, NLOS).
    SHADOW_FADING_STD_DB: ClassVar[tuple[float, float]] = (4.0, 6.0)

    @property
    def needs_los_state(self) -> bool:
        return self.params.condition == "probabilistic"

    def _geometry(self, distance_m: FloatArray) -> tuple[FloatArray, FloatArray, float, float]:
        """(d_2D, d_3D, d'_BP, f_c in GHz)."""
        p = self.params
        d2d = clamped_distance_m(distance_m, p.min_distance_m)
        d3d = np.sqrt(d2d**2 + (p.bs_height_m - p.ut_height_m) ** 2)
        h_bs, h_ut = p.bs_height_m - ENV_HEIGHT_M, p.ut_height_m - ENV_HEIGHT_M
        d_bp = 4.0 * h_bs * h_ut * p.carrier_freq_hz / C_3GPP_MPS
        return d2d, d3d, d_bp, p.carrier_freq_hz / 1e9

    def los_path_loss_db(self, distance_m: FloatArray) -> FloatArray:
        """LOS path loss (dB): PL1 up to the breakpoint distance, PL2 beyond it."""
        d2d, d3d, d_bp, fc_ghz = self._geometry(distance_m)
        dh = self.params.bs_height_m - self.params.ut_height_m
        pl1, pl2 = self._los_formulas(d3d, d_bp, dh, fc_ghz)
        return np.where(d2d <= d_bp, pl1, pl2)

    def nlos_path_loss_db(self, distance_m: FloatArray) -> FloatArray:
        """NLOS path loss (dB): ``max(PL_LOS, PL'_NLOS)``."""
        _, d3d, _, fc_ghz = self._geometry(distance_m)
        return np.maximum(self.los_path_loss_db(distance_m), self._nlos_formula(d3d, fc_ghz))

    def path_loss_db(self, distance_m: FloatArray, los: BoolArray | None = None) -> FloatArray:
        condition = self.params.condition
        if condition == "los":
            return self.los_path_loss_db(distance_m)
        if condition == "nlos":
            return self.nlos_path_loss_db(distance_m)
        if los is None:
            raise ValueError("los (per-device LOS state) must be given when condition is 'probabilistic'")
        return np.where(los, self.los_path_loss_db(distance_m), self.nlos_path_loss_db(distance_m))

    def _los_formulas(
        self, d3d: FloatArray, d_bp: float, dh: float, fc_ghz: float
    ) -> tuple[FloatArray, FloatArray]:
        raise NotImplementedError

    def _nlos_formula(self, d3d: FloatArray, fc_ghz: float) -> FloatArray:
        raise NotImplementedError


@PATH_LOSS_MODELS.register("3gpp-uma")
class UMaPathLoss(_Path3gpp):
    """TR 38.901 UMa: LOS ``28.0 + 22 log10 d3D + 20 log10 fc`` (PL1) /
    ``28.0 + 40 log10 d3D + 20 log10 fc - 9 log10(d'BP^2 + (hBS - hUT)^2)`` (PL2); NLOS
    ``13.54 + 39.08 log10 d3D + 20 log10 fc - 0.6 (hUT - 1.5)``; sigma_SF 4 / 6 dB."""

    Params = UMaParams
    params: UMaParams
    SHADOW_FADING_STD_DB = (4.0, 6.0)

    def _los_formulas(
        self, d3d: FloatArray, d_bp: float, dh: float, fc_ghz: float
    ) -> tuple[FloatArray, FloatArray]:
        base = 28.0 + 20.0 * np.log10(fc_ghz)
        pl1 = base + 22.0 * np.log10(d3d)
        pl2 = base + 40.0 * np.log10(d3d) - 9.0 * np.log10(d_bp**2 + dh**2)
        return pl1, pl2

    def _nlos_formula(self, d3d: FloatArray, fc_ghz: float) -> FloatArray:
        h_ut = self.params.ut_height_m
        return np.asarray(13.54 + 39.08 * np.log10(d3d) + 20.0 * np.log10(fc_ghz) - 0.6 * (h_ut - 1.5))

    def los_probability(self, distance_m: FloatArray) -> FloatArray:
        """Table 7.4.2-1 UMa (outdoor): 1 up to 18 m, then
        ``[18/d + exp(-d/63)(1 - 18/d)] (1 + C'(hUT) 5/4 (d/100)^3 exp(-d/150))``."""
        d = np.maximum(np.asarray(distance_m, dtype=np.float64), 1e-9)
        h_ut = self.params.ut_height_m
        c_prime = 0.0 if h_ut <= 13.0 else ((h_ut - 13.0) / 10.0) ** 1.5
        far = (18.0 / d + np.exp(-d / 63.0) * (1.0 - 18.0 / d)) * (
            1.0 + c_prime * 1.25 * (d / 100.0) ** 3 * np.exp(-d / 150.0)
        )
        return np.where(d <= 18.0, 1.0, far)


@PATH_LOSS_MODELS.register("3gpp-umi")
class UMiPathLoss(_Path3gpp):
    """TR 38.901 UMi street canyon: LOS ``32.4 + 21 log10 d3D + 20 log10 fc`` (PL1) /
    ``32.4 + 40 log10 d3D + 20 log10 fc - 9.5 log10(d'BP^2 + (hBS - hUT)^2)`` (PL2); NLOS
    ``22.4 + 35.3 log10 d3D + 21.3 log10 fc - 0.3 (hUT - 1.5)``; sigma_SF 4 / 7.82 dB."""

    Params = UMiParams
    params: UMiParams
    SHADOW_FADING_STD_DB = (4.0, 7.82)

    def _los_formulas(
        self, d3d: FloatArray, d_bp: float, dh: float, fc_ghz: float
    ) -> tuple[FloatArray, FloatArray]:
        base = 32.4 + 20.0 * np.log10(fc_ghz)
        pl1 = base + 21.0 * np.log10(d3d)
        pl2 = base + 40.0 * np.log10(d3d) - 9.5 * np.log10(d_bp**2 + dh**2)
        return pl1, pl2

    def _nlos_formula(self, d3d: FloatArray, fc_ghz: float) -> FloatArray:
        h_ut = self.params.ut_height_m
        return np.asarray(22.4 + 35.3 * np.log10(d3d) + 21.3 * np.log10(fc_ghz) - 0.3 * (h_ut - 1.5))

    def los_probability(self, distance_m: FloatArray) -> FloatArray:
        """Table 7.4.2-1 UMi street canyon (outdoor): 1 up to 18 m, then
        ``18/d + exp(-d/36)(1 - 18/d)``."""
        d = np.maximum(np.asarray(distance_m, dtype=np.float64), 1e-9)
        return np.where(d <= 18.0, 1.0, 18.0 / d + np.exp(-d / 36.0) * (1.0 - 18.0 / d))
