"""Fading in time: block fading with a coherence time, and first-order Gauss-Markov (Jakes) fading.

A :class:`FadingProcess` holds per-device fading state and is stepped with ``advance(dt_s)``; the
simulator calls it once per block. Start one with :func:`start_fading`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy import special

from channels.base import FADING_MODELS, FadingModel
from channels.checks import check_nonnegative
from channels.fading import RicianFading, RicianParams
from channels.pathloss import SPEED_OF_LIGHT_MPS
from channels.units import FloatArray

ComplexArray = NDArray[np.complex128]


class FadingProcess:
    """Per-device fading state advanced in time (base: block fading).

    The power gain stays constant within a coherence block of ``model.coherence_time_s`` seconds and is
    redrawn i.i.d. when ``advance`` crosses a block boundary (every call when the coherence time is
    None).

    Args:
        model: The fading distribution.
        num_devices: Number of devices N.
        rng: The fading stream (kept and used by :meth:`advance`).
    """

    def __init__(self, model: FadingModel, num_devices: int, rng: np.random.Generator) -> None:
        self.model = model
        self.rng = rng
        self.num_devices = num_devices
        self.time_s = 0.0
        self.power_gain: FloatArray = model.sample_power_gain(num_devices, rng)

    def advance(self, dt_s: float, speed_mps: FloatArray | None = None) -> FloatArray:
        """Advance time by ``dt_s`` seconds (>= 0) and return the power gains (N,) at the new time.

        Args:
            dt_s: Time step in seconds.
            speed_mps: Per-device speeds in m/s (used only by time-correlated processes).
        """
        if not dt_s >= 0:  # the check below without its array conversion on every (valid) call
            check_nonnegative("dt_s", dt_s)
        tc = self.model.coherence_time_s
        start, self.time_s = self.time_s, self.time_s + dt_s
        # A small tolerance keeps dt = Tc steps from missing a boundary through rounding.
        crossed = tc is None or math.floor(self.time_s / tc + 1e-9) != math.floor(start / tc + 1e-9)
        if crossed:
            self.power_gain = self.model.sample_power_gain(self.num_devices, self.rng)
        return self.power_gain


BlockFadingProcess = FadingProcess


def start_fading(model: FadingModel, num_devices: int, rng: np.random.Generator) -> FadingProcess:
    """The fading process of ``model`` for ``num_devices`` devices, drawn from ``rng``."""
    if isinstance(model, GaussMarkovFading):
        return GaussMarkovProcess(model, num_devices, rng)
    return FadingProcess(model, num_devices, rng)


class GaussMarkovParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    carrier_freq_hz: float = Field(2e9, gt=0, le=1e12, description="carrier frequency f_c")
    speed_mps: float = Field(1.0, ge=0, le=150, description="device speed when none is given per device")
    block_duration_s: float = Field(
        1e-3,
        ge=1e-6,
        le=1e6,
        description="time step of one sample_power_gain call (one block), in [1e-6, 1e6] s",
    )
    k_factor: float = Field(0.0, ge=0, le=1e4, description="Rician K (linear) of the marginal; 0 = Rayleigh")


@FADING_MODELS.register("gauss-markov")
class GaussMarkovFading(FadingModel):
    """First-order Gauss-Markov fading ``s' = rho s + sqrt(1 - rho^2) w`` with Jakes' coefficient.

    ``rho = J0(2 pi f_D T)`` with Doppler ``f_D = v f_c / c`` for speed ``v`` and step ``T``: the lag-T
    autocorrelation of Clarke/Jakes' isotropic scattering. The scattered part ``s`` is CN(0, 1); with
    ``k_factor`` K a fixed LOS term is added, ``h = sqrt(K/(K+1)) e^{j phi} + sqrt(1/(K+1)) s``, so
    the marginal is Rician (Rayleigh for K = 0) and the power has unit mean.

    :meth:`sample_power_gain` is stateful: each call advances the model's own process by
    ``block_duration_s`` (the first call starts it), so the walking-skeleton simulator, which asks
    for one block per round, sees correlated rounds.
    """

    Params = GaussMarkovParams
    params: GaussMarkovParams

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        self._process: GaussMarkovProcess | None = None

    def doppler_hz(self, speed_mps: FloatArray | float | None = None) -> FloatArray:
        """Maximum Doppler shift ``v f_c / c`` in Hz."""
        v = self.params.speed_mps if speed_mps is None else speed_mps
        speed = check_nonnegative("speed_mps", v)
        return np.asarray(speed * self.params.carrier_freq_hz / SPEED_OF_LIGHT_MPS)

    def correlation(self, dt_s: float, speed_mps: FloatArray | float | None = None) -> FloatArray:
        """Gauss-Markov coefficient ``J0(2 pi f_D dt)`` for a step of ``dt_s`` seconds."""
        return np.asarray(special.j0(2.0 * np.pi * self.doppler_hz(speed_mps) * dt_s))

    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        if self._process is None or self._process.num_devices != num_devices:
            self._process = GaussMarkovProcess(self, num_devices, rng)
            return self._process.power_gain
        self._process.rng = rng
        return self._process.advance(self.params.block_duration_s)

    def power_cdf(self, gain_linear: FloatArray) -> FloatArray:
        marginal = RicianFading(RicianParams(k_factor=self.params.k_factor))
        return marginal.power_cdf(gain_linear)


class GaussMarkovProcess(FadingProcess):
    """State of :class:`GaussMarkovFading`: the complex scattered gain and the LOS phase per device."""

    model: GaussMarkovFading

    def __init__(self, model: GaussMarkovFading, num_devices: int, rng: np.random.Generator) -> None:
        self.model = model
        self.rng = rng
        self.num_devices = num_devices
        self.time_s = 0.0
        k = model.params.k_factor
        self._los_amplitude = math.sqrt(k / (k + 1.0))
        self._scatter_amplitude = math.sqrt(1.0 / (k + 1.0))
        self._los_phasor = np.exp(1j * rng.uniform(0.0, 2.0 * np.pi, num_devices))
        self.scatter = self._complex_normal(num_devices)
        self.power_gain = self._power()

    def _complex_normal(self, n: int) -> ComplexArray:
        parts = self.rng.standard_normal((2, n)) * math.sqrt(0.5)
        return np.asarray(parts[0] + 1j * parts[1], dtype=np.complex128)

    @property
    def gain_complex(self) -> ComplexArray:
        """Complex channel coefficient h per device (``|h|^2`` is the power gain)."""
        return np.asarray(self._los_amplitude * self._los_phasor + self._scatter_amplitude * self.scatter)

    def _power(self) -> FloatArray:
        h = self.gain_complex
        return np.asarray(h.real**2 + h.imag**2)

    def advance(self, dt_s: float, speed_mps: FloatArray | None = None) -> FloatArray:
        check_nonnegative("dt_s", dt_s)
        rho = self.model.correlation(dt_s, speed_mps)
        innovation = np.sqrt(np.maximum(1.0 - rho**2, 0.0))
        self.scatter = rho * self.scatter + innovation * self._complex_normal(self.num_devices)
        self.time_s += dt_s
        self.power_gain = self._power()
        return self.power_gain
