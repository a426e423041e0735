"""A channel that evolves in time: mobility, correlated shadowing, LOS state and fading per block."""

from __future__ import annotations

import numpy as np
from scipy import special

from channels.base import BoolArray, MobilityModel
from channels.channel import ChannelModel
from channels.checks import check_nonnegative
from channels.mobility import StaticMobility
from channels.shadowing import GudmundsonShadowing, LogNormalShadowing
from channels.temporal import FadingProcess, start_fading
from channels.units import FloatArray


class DynamicChannel:
    """Time-evolving per-device channel gains; the simulator calls :meth:`advance` once per block.

    One ``advance(dt_s)``: the mobility model moves the devices; each device's shadowing is updated
    for the distance it moved (correlated for ``gudmundson``, frozen for ``log-normal``); its LOS
    state (3GPP models) follows a latent Gaussian with the same exponential spatial correlation over
    ``los_decorrelation_distance_m``, mapped to LOS iff ``Phi(z) < P_LOS(d)`` (a simplification of
    TR 38.901 Sec. 7.6.3.3); the fading process advances by ``dt_s`` (Gauss-Markov fading uses each
    device's current speed when the mobility model provides one).

    Devices that do not move (``StaticMobility``) with the built-in shadowing models keep their
    large-scale gain: every update above is then the identity (moved distance 0, correlation 1,
    innovation weight 0), so :meth:`advance` only advances the fading and multiplies it by the
    gain computed at :meth:`reset` (the same values; the private shadowing and LOS streams are then
    not drawn from, as nothing reads them).

    Args:
        channel: Path loss, shadowing and fading models.
        mobility: How devices move.
        radius_m: Cell radius, metres.
        min_distance_m: Devices stay at least this far from the base station, metres.
        los_decorrelation_distance_m: Correlation distance of the LOS state, metres. The default 50 m is
            the order of magnitude TR 38.901 Table 7.6.3.1-2 gives for UMa/UMi; not re-checked
            against the report, so set it explicitly where it matters.
    """

    def __init__(
        self,
        channel: ChannelModel,
        mobility: MobilityModel,
        radius_m: float,
        min_distance_m: float,
        los_decorrelation_distance_m: float = 50.0,
    ) -> None:
        if not los_decorrelation_distance_m > 0:
            raise ValueError(
                f"los_decorrelation_distance_m must be > 0, got {los_decorrelation_distance_m!r}"
            )
        self.channel = channel
        self.mobility = mobility
        self.radius_m = radius_m
        self.min_distance_m = min_distance_m
        self.los_decorrelation_distance_m = los_decorrelation_distance_m
        self.time_s = 0.0
        #: Nothing but the fading changes in ``advance`` (class docstring); False = always recompute.
        self.static_large_scale = type(mobility) is StaticMobility and type(channel.shadowing) in (
            LogNormalShadowing,
            GudmundsonShadowing,
        )

    def reset(
        self, position_m: FloatArray, rng: np.random.Generator, shadowing_db: FloatArray | None = None
    ) -> FloatArray:
        """Place the devices at ``position_m`` (N, 2) and draw the initial state; return the gains.

        Args:
            position_m: Initial positions in metres, base station at the origin.
            rng: Parent stream; independent child streams are spawned for mobility, shadowing, LOS
                state and fading, so adding a model never shifts another model's draws.
            shadowing_db: Initial shadowing (dB) to start from; drawn when None.
        """
        mobility_rng, self._shadow_rng, self._los_rng, fading_rng = rng.spawn(4)
        self.mobility.reset(position_m, self.radius_m, self.min_distance_m, mobility_rng)
        n = len(self.mobility.position_m)
        self.shadowing_db = (
            self.channel.sample_shadowing_db(n, self._shadow_rng)
            if shadowing_db is None
            else np.array(shadowing_db, dtype=np.float64)
        )
        self._los_latent = self._los_rng.standard_normal(n)
        self.fading: FadingProcess = start_fading(self.channel.fading, n, fading_rng)
        self.time_s = 0.0
        return self._gain()

    @property
    def position_m(self) -> FloatArray:
        """(N, 2) device positions, metres."""
        return self.mobility.position_m

    @property
    def distance_m(self) -> FloatArray:
        """Ground distance of each device to the base station, metres."""
        return self.mobility.distance_m

    @property
    def los(self) -> BoolArray | None:
        """Per-device LOS state, or None for path-loss models without one."""
        return self.channel.los_from_uniform(self.distance_m, special.ndtr(self._los_latent))

    def _gain(self) -> FloatArray:
        large = self.channel.large_scale_gain(self.distance_m, self.shadowing_db, self.los)
        self.large_scale_gain_linear: FloatArray = large
        self.gain_linear: FloatArray = large * self.fading.power_gain
        return self.gain_linear

    def fading_quantiles(self, count: int = 64) -> FloatArray:
        """(count,) quantiles of the fading power gain at the midpoints ``(i + 1/2) / count``."""
        cached = getattr(self, "_fading_quantiles", None)
        if cached is None or len(cached) != count:
            cached = self.channel.fading.power_quantiles((np.arange(count) + 0.5) / count)
            self._fading_quantiles: FloatArray = cached
        return cached

    def typical_gain_linear(self) -> FloatArray:
        """(N,) large-scale gain times the fading's geometric mean ``exp(E ln |h|^2)``: the gain a
        device can plan a round on when fading is redrawn many times within it (its rate is a lower
        bound on the ergodic rate; :meth:`channels.base.FadingModel.log_mean_power_gain`)."""
        if not hasattr(self, "_log_mean_fading"):
            self._log_mean_fading = self.channel.fading.log_mean_power_gain()
        return np.asarray(self.large_scale_gain_linear * np.exp(self._log_mean_fading))

    def advance(self, dt_s: float) -> FloatArray:
        """Advance every device by ``dt_s`` seconds; return the linear power gains (N,) of the new block."""
        if not dt_s >= 0:  # the check below without its array conversion on every (valid) call
            check_nonnegative("dt_s", dt_s)
        if self.static_large_scale:
            self.fading.advance(dt_s)
            self.time_s += dt_s
            self.gain_linear = self.large_scale_gain_linear * self.fading.power_gain
            return self.gain_linear
        before = self.mobility.position_m.copy()
        after = self.mobility.advance(dt_s)
        moved_m = np.hypot(*(after - before).T)
        self.shadowing_db = self.channel.shadowing.update_db(self.shadowing_db, moved_m, self._shadow_rng)
        a = np.exp(-moved_m / self.los_decorrelation_distance_m)
        self._los_latent = a * self._los_latent + np.sqrt(1 - a**2) * self._los_rng.standard_normal(len(a))
        speed = self.mobility.speed_mps if self.mobility.provides_speed else None
        self.fading.advance(dt_s, speed_mps=speed)
        self.time_s += dt_s
        return self._gain()

    def resource_block_gains(self, num_resource_blocks: int, rng: np.random.Generator) -> FloatArray:
        """(N, R) gains of the current block on R resource blocks: the large-scale gain (path loss,
        shadowing, LOS state) times an independent draw of the fading model per device and RB.

        Frequency-selective across RBs (RBs assumed wider than the coherence bandwidth) and i.i.d.
        across calls: time correlation of a Gauss-Markov model is not carried over to per-RB gains.
        The ``none`` fading model gives every RB the large-scale gain.
        """
        if num_resource_blocks < 1:
            raise ValueError(f"num_resource_blocks must be >= 1, got {num_resource_blocks!r}")
        large = self.channel.large_scale_gain(self.distance_m, self.shadowing_db, self.los)
        n = len(large)
        fading = self.channel.fading.sample_power_gain(n * num_resource_blocks, rng)
        return np.asarray(large[:, None] * fading.reshape(n, num_resource_blocks), dtype=np.float64)
