"""Plug-in base classes and registries for channel components.

A channel component is one class with a nested pydantic ``Params`` model and one registry name; the
scenario YAML selects it as ``{model: NAME, params: {...}}`` and its params are validated against
``Params`` when the scenario is loaded (pydantic's ``ValidationError`` is a ``ValueError`` that names
the field and its allowed range).

Four kinds of component, four registries:

* :data:`PATH_LOSS_MODELS` - deterministic distance law, optionally with a LOS/NLOS state;
* :data:`SHADOWING_MODELS` - log-normal large-scale fading, optionally spatially correlated;
* :data:`FADING_MODELS` - small-scale fading, i.i.d. per block or time-correlated;
* :data:`MOBILITY_MODELS` - how devices move inside the cell.

Stateful, time-correlated behaviour (mobility, Gauss-Markov fading, correlated shadowing) is exposed
through small "advance by ``dt_s``" methods so that the simulator can step them once per block.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from channels.units import FloatArray
from fedsimenv.registry import Registry

BoolArray = NDArray[np.bool_]


class NoParams(BaseModel):
    """Parameters of a component that takes none."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class PathLossModel(ABC):
    """Distance-dependent path loss, in dB (positive = attenuation).

    Models with a line-of-sight distinction (3GPP TR 38.901) report the LOS probability and take the
    per-device LOS state; the others ignore it.
    """

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @abstractmethod
    def path_loss_db(self, distance_m: FloatArray, los: BoolArray | None = None) -> FloatArray:
        """Path loss in dB at 2-D ground distance ``distance_m`` metres.

        Args:
            distance_m: Base station to device ground distance in metres, >= 0.
            los: Per-device line-of-sight state, used only by models that need one.
        """

    @property
    def needs_los_state(self) -> bool:
        """Whether :meth:`path_loss_db` needs a drawn LOS state (``los``) per device."""
        return False

    def los_probability(self, distance_m: FloatArray) -> FloatArray:
        """Probability of line of sight at ``distance_m`` metres (1 for models without NLOS)."""
        return np.ones_like(np.asarray(distance_m, dtype=np.float64))


class FadingModel(ABC):
    """Small-scale fading: power gains ``|h|^2`` with unit mean, one draw per device per block."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @abstractmethod
    def sample_power_gain(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        """Linear power gains |h|^2 (mean 1) for ``num_devices`` devices, one fading block."""

    @abstractmethod
    def power_cdf(self, gain_linear: FloatArray) -> FloatArray:
        """Marginal CDF ``P(|h|^2 <= x)`` of the (stationary) power gain; used for outage."""

    def log_mean_power_gain(self) -> float:
        """``E[ln |h|^2]`` of the marginal power gain (``-gamma_Euler`` for Rayleigh, 0 without fading).

        ``exp`` of it is the fading's geometric mean: by Jensen (``ln(1 + x e^u)`` is convex in u) the
        rate at the large-scale gain times it is a lower bound on the ergodic rate, which is what a
        planner can count on when fading is redrawn many times within a round. Computed from
        :meth:`power_cdf` by quadrature, ``int_1^inf (1 - F)/g dg - int_0^1 F/g dg``; models with a
        closed form override it.
        """
        from scipy import integrate

        def cdf(g: float) -> float:
            return float(self.power_cdf(np.array([g]))[0])

        low = integrate.quad(lambda g: cdf(g) / g, 0.0, 1.0, limit=200)[0]
        high = integrate.quad(lambda g: (1.0 - cdf(g)) / g, 1.0, np.inf, limit=200)[0]
        return float(high - low)

    def power_quantiles(self, probabilities: FloatArray) -> FloatArray:
        """Quantiles of the marginal power gain at ``probabilities`` in (0, 1), by bisection on
        :meth:`power_cdf` (a planner's sample of the fading distribution, not of its realisation)."""
        p = np.asarray(probabilities, dtype=np.float64)
        lo, hi = np.zeros_like(p), np.full_like(p, 1.0)
        while np.any(self.power_cdf(hi) < p):
            hi = np.where(self.power_cdf(hi) < p, hi * 2.0, hi)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            below = self.power_cdf(mid) < p
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return np.asarray(0.5 * (lo + hi))

    @property
    def coherence_time_s(self) -> float | None:
        """Block length in seconds; ``None`` means a new block at every ``advance``."""
        value = getattr(self.params, "coherence_time_s", None)
        return None if value is None else float(value)


class ShadowingModel(ABC):
    """Log-normal shadowing ``X ~ N(0, sigma^2)`` dB per device."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    @abstractmethod
    def sample_db(self, num_devices: int, rng: np.random.Generator) -> FloatArray:
        """Initial shadowing (dB) for ``num_devices`` devices."""

    @abstractmethod
    def update_db(
        self, shadowing_db: FloatArray, moved_m: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        """Shadowing (dB) after each device moved ``moved_m`` metres."""


class MobilityModel(ABC):
    """Device positions (metres, base station at the origin) kept inside the annulus of the cell.

    Stateful: :meth:`reset` places the devices, :meth:`advance` moves them by ``dt_s`` seconds.
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    #: Whether ``speed_mps`` is meaningful (time-correlated fading then uses it as the Doppler speed).
    provides_speed: ClassVar[bool] = True

    def __init__(self, params: BaseModel) -> None:
        self.params = params
        self.position_m: FloatArray = np.zeros((0, 2))
        self.speed_mps: FloatArray = np.zeros(0)
        self.radius_m = 1.0
        self.min_distance_m = 0.0
        self.rng = np.random.default_rng(0)

    def reset(
        self, position_m: FloatArray, radius_m: float, min_distance_m: float, rng: np.random.Generator
    ) -> None:
        """Start from ``position_m`` (N, 2) inside the annulus ``min_distance_m..radius_m``.

        Args:
            position_m: Initial Cartesian positions in metres, shape (N, 2).
            radius_m: Cell radius in metres.
            min_distance_m: Devices never come closer than this to the base station.
            rng: The mobility stream; kept and used by :meth:`advance`.
        """
        position = np.array(position_m, dtype=np.float64).reshape(-1, 2)
        if not 0 <= min_distance_m < radius_m:
            raise ValueError(f"min_distance_m must be in [0, radius_m={radius_m}), got {min_distance_m!r}")
        self.radius_m, self.min_distance_m, self.rng = float(radius_m), float(min_distance_m), rng
        self.position_m = position
        self.speed_mps = np.zeros(len(position))
        self._start()

    def _start(self) -> None:  # noqa: B027 - an optional hook, empty by default on purpose
        """Hook: initialise the model's own state after :meth:`reset`."""

    @abstractmethod
    def advance(self, dt_s: float) -> FloatArray:
        """Move every device by ``dt_s`` seconds; return the new (N, 2) positions in metres."""

    @property
    def distance_m(self) -> FloatArray:
        """Ground distance of each device to the base station, metres."""
        return np.asarray(np.hypot(self.position_m[:, 0], self.position_m[:, 1]))


PATH_LOSS_MODELS: Registry[type[PathLossModel]] = Registry("path-loss model")
FADING_MODELS: Registry[type[FadingModel]] = Registry("fading model")
SHADOWING_MODELS: Registry[type[ShadowingModel]] = Registry("shadowing model")
MOBILITY_MODELS: Registry[type[MobilityModel]] = Registry("mobility model")
