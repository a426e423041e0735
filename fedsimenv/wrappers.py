"""Wrappers around :class:`~fedsimenv.env.WirelessFLEnv`: readable and discrete actions, and a flat
scaled observation for MLP policies.

Every action wrapper maps its action to the canonical ``Box(-1, 1, (C N,))`` with
:func:`fedsimenv.actions.encode_decision`, so it composes with any other wrapper and the base env
sees (and reports) the usual action. Bad values are clipped as each class documents, never raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from fedsimenv.actions import encode_decision
from fedsimenv.env import WirelessFLEnv
from fedsimenv.observations import Observation
from fedsimenv.registry import Registry
from fedsimenv.view import SystemView

#: An allocator: ``(view, selected, compute_latency_s, upload_bits) -> bandwidth shares`` where the
#: last two are each device's latency and upload size *after* its pruning; shares have any positive
#: scale and only the selected devices' entries are used.
Allocator = Callable[
    [SystemView, NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]], NDArray[np.float64]
]


def equal_allocation(
    view: SystemView,
    selected: NDArray[np.bool_],
    compute_latency_s: NDArray[np.float64],
    upload_bits: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Equal shares of B."""
    return np.ones(view.num_devices)


#: Allocators selectable by name: ``equal`` here; importing :mod:`agents` adds the optimisers' ones
#: (``min-max-latency``).
ALLOCATORS: Registry[Allocator] = Registry("allocator")
ALLOCATORS.register("equal")(equal_allocation)


def _base(env: gym.Env[Any, Any]) -> WirelessFLEnv:
    base = env.unwrapped
    if not isinstance(base, WirelessFLEnv):
        raise TypeError(f"this wrapper needs a WirelessFLEnv underneath, got {type(base).__name__}")
    return base


#: Dict-action keys of the optional controls (``action.controls``), fractions of each device's maximum.
_FRACTION_KEYS = {"power": "tx_power_fraction", "cpu_freq": "cpu_freq_fraction"}


class DictActionWrapper(gym.ActionWrapper[Any, dict[str, Any], NDArray[np.float32]]):
    """A readable action: ``Dict(selected=MultiBinary(N), pruning_rate=Box(0, rho_max, (N,)),
    bandwidth_share=Box(0, 1, (N,)))``, plus one key per optional control of ``action.controls``:
    ``tx_power_fraction`` (power) and ``cpu_freq_fraction`` (cpu_freq), ``Box(0, 1, (N,))`` as a
    fraction of each device's maximum, ``first_resource_block`` (rb), ``MultiDiscrete([R] * N)``, and
    ``quant_bits_level`` (quant_bits), ``MultiDiscrete([L] * N)``: device k uploads at
    ``quant_bits_levels[level_k]`` bits per value.

    Decoding: device k is selected iff ``selected_k > 0.5`` (if none is, the device with the largest
    ``bandwidth_share``, ties to the lowest index); pruning rates: NaN -> 0, then clipped to
    [0, rho_max]; bandwidth shares are relative over the selected devices (NaN/negative -> 0,
    +inf -> 1, clipped to [0, 1]; a selected device with share 0 gets a 1e-6 floor, and all-zero
    shares mean equal shares). Shares more than ``exp(2 bandwidth_logit_scale)`` apart are raised
    to that ratio (the canonical encoding's range). Fractions: NaN -> 1, clipped to [0, 1] and then
    raised to the encodable floor (``power_range_db`` below the maximum, ``cpu_freq_min_fraction``);
    first blocks and bit levels clipped to their ranges (NaN -> the top level). Not for SB3 (which
    has no Dict actions).
    """

    def __init__(self, env: gym.Env[Any, NDArray[np.float32]]) -> None:
        super().__init__(env)
        base = _base(env)
        self._config = base.config.action
        n = self._n = base.num_devices
        rho_max = np.float32(self._config.rho_max)
        unit = spaces.Box(np.float32(0.0), np.float32(1.0), shape=(n,), dtype=np.float32)
        keys: dict[str, spaces.Space[Any]] = {
            "selected": spaces.MultiBinary(n),
            "pruning_rate": spaces.Box(np.float32(0.0), rho_max, shape=(n,), dtype=np.float32),
            "bandwidth_share": unit,
        }
        for control, key in _FRACTION_KEYS.items():
            if control in self._config.controls:
                keys[key] = spaces.Box(np.float32(0.0), np.float32(1.0), shape=(n,), dtype=np.float32)
        rb = base.config.network.resource_blocks
        self._num_blocks = rb.count if rb is not None else None
        if "rb" in self._config.controls and rb is not None:
            keys["first_resource_block"] = spaces.MultiDiscrete(np.full(n, rb.count, dtype=np.int64))
        self._bit_levels = np.asarray(self._config.quant_bits_levels, dtype=np.int64)
        if "quant_bits" in self._config.controls:
            keys["quant_bits_level"] = spaces.MultiDiscrete(np.full(n, len(self._bit_levels), dtype=np.int64))
        self.action_space = spaces.Dict(keys)

    def action(self, action: Mapping[str, Any]) -> NDArray[np.float32]:
        n = self._n

        def field(name: str, nan: float, posinf: float) -> NDArray[np.float64]:
            raw = np.asarray(action[name], dtype=np.float64).reshape(-1)
            if raw.shape != (n,):
                raise ValueError(
                    f"action[{name!r}] must have {n} entries, got shape {np.shape(action[name])}"
                )
            return np.nan_to_num(raw, nan=nan, posinf=posinf, neginf=0.0)

        share = np.clip(field("bandwidth_share", 0.0, 1.0), 0.0, 1.0)
        selected = field("selected", 0.0, 1.0) > 0.5
        if not selected.any():
            selected[int(np.argmax(share))] = True
        rho = np.clip(field("pruning_rate", 0.0, self._config.rho_max), 0.0, self._config.rho_max)
        if not np.any(share[selected] > 0):
            share = np.ones(n)
        share = np.where(selected, np.maximum(share, 1e-6), 0.0)
        extra: dict[str, Any] = {}
        for control, key in _FRACTION_KEYS.items():
            if control in self._config.controls:
                extra[key] = np.clip(field(key, 1.0, 1.0), 0.0, 1.0)
        if self._num_blocks is not None and "rb" in self._config.controls:
            first = np.clip(np.rint(field("first_resource_block", 0.0, 0.0)), 0, self._num_blocks - 1)
            extra["first_resource_block"] = first
            extra["num_resource_blocks"] = self._num_blocks
        if "quant_bits" in self._config.controls:
            top = len(self._bit_levels) - 1
            level = np.clip(np.rint(field("quant_bits_level", top, top)), 0, top).astype(np.int64)
            extra["upload_value_bits"] = self._bit_levels[level]
        return encode_decision(selected, rho, share, self._config, **extra)


class MultiDiscreteDecoder:
    """``MultiDiscrete([L + 1] * N)`` -> canonical action: per device, 0 = off, l in 1..L = on with
    pruning rate ``rho_max (l - 1) / (L - 1)`` (rho = 0 if L = 1). Bandwidth comes from
    ``allocator`` (a name in :data:`ALLOCATORS` or a function) evaluated on the env's system view.

    Each optional control of ``action.controls`` appends N more entries: ``power`` and ``cpu_freq``
    with ``control_levels`` levels each, level j mapping to the canonical value ``-1 + 2 j / (M - 1)``
    (the top level is the device's maximum), ``rb`` with R levels, the first resource block, and
    ``quant_bits`` with one level per entry of ``quant_bits_levels`` (level j: that many bits per
    uploaded value). The allocator sees compute latencies at the chosen frequencies (powers are not
    passed to it) and upload sizes scaled by ``width / bits_per_param`` (index overhead and scales
    aside).

    Out-of-range entries are clipped to [0, L], non-integers rounded, NaN -> 0 (off). If no device is
    on, the device with the strongest channel this round is selected at level 1 (rho = 0).

    The allocator sees each device's pruned compute latency and upload size, scaled from the unpruned
    ones by the exact cost of each level, which is asked of the trainer once, at the first action
    (the simulator's costs are not linear in rho: index overhead, unprunable layers).
    """

    def __init__(
        self, env: WirelessFLEnv, levels: int, allocator: str | Allocator, control_levels: int = 4
    ) -> None:
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if control_levels < 2:
            raise ValueError(f"control_levels must be >= 2, got {control_levels}")
        if isinstance(allocator, str):
            allocator = ALLOCATORS.get(allocator)
        self.allocator = allocator
        self.env = env
        self.levels = levels
        self.control_levels = control_levels
        controls = env.config.action.controls
        rb = env.config.network.resource_blocks
        #: (control, number of levels) of the entries after the first N.
        self.extra: list[tuple[str, int]] = [
            (c, control_levels) for c in ("power", "cpu_freq") if c in controls
        ]
        if "rb" in controls and rb is not None:
            self.extra.append(("rb", rb.count))
        if "quant_bits" in controls:
            self.extra.append(("quant_bits", len(env.config.action.quant_bits_levels)))
        nvec = [levels + 1] * env.num_devices + [m for _, m in self.extra for _ in range(env.num_devices)]
        self.space = spaces.MultiDiscrete(np.array(nvec, dtype=np.int64))
        self._cost_ratios: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def cost_ratios(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per level: (compute, upload) cost relative to the unpruned model."""
        if self._cost_ratios is None:
            trainer = self.env.trainer
            rates = self.pruning_rates()
            costs = [trainer.cost_at(float(rho)) for rho in [0.0, *rates]]
            flops = np.array([c.forward_flops_per_sample for c in costs])
            bits = np.array([c.upload_bits for c in costs])
            self._cost_ratios = (flops[1:] / flops[0], bits[1:] / bits[0])
        return self._cost_ratios

    def pruning_rates(self) -> NDArray[np.float64]:
        """The L pruning rates of levels 1..L."""
        if self.levels == 1:
            return np.zeros(1)
        rho_max = self.env.config.action.rho_max
        return np.asarray(rho_max * np.arange(self.levels) / (self.levels - 1), dtype=np.float64)

    def to_canonical(self, action: Any) -> NDArray[np.float32]:
        n = self.env.num_devices
        raw = np.asarray(action, dtype=np.float64).reshape(-1)
        size = n * (1 + len(self.extra))
        if raw.shape != (size,):
            raise ValueError(f"action must have {size} entries, got shape {np.shape(action)}")
        extra: dict[str, Any] = {}
        cpu_fraction = np.ones(n)
        bits_fraction = np.ones(n)
        config = self.env.config.action
        for i, (control, m) in enumerate(self.extra):
            part = raw[(i + 1) * n : (i + 2) * n]
            j = np.clip(np.rint(np.nan_to_num(part, nan=m - 1, posinf=m - 1, neginf=0.0)), 0, m - 1)
            a = -1.0 + 2.0 * j / (m - 1) if m > 1 else np.ones(n)
            if control == "power":
                extra["tx_power_fraction"] = 10.0 ** (-config.power_range_db * (1.0 - a) / 20.0)
            elif control == "cpu_freq":
                phi = config.cpu_freq_min_fraction
                cpu_fraction = phi + (1.0 - phi) * (a + 1.0) / 2.0
                extra["cpu_freq_fraction"] = cpu_fraction
            elif control == "rb":
                extra["first_resource_block"] = j
                extra["num_resource_blocks"] = m
            else:
                width = np.asarray(config.quant_bits_levels, dtype=np.int64)[j.astype(np.int64)]
                extra["upload_value_bits"] = width
                bits_fraction = np.minimum(width / self.env.config.learning.bits_per_param, 1.0)
        raw = raw[:n]
        level = np.clip(np.rint(np.nan_to_num(raw, nan=0.0, posinf=self.levels, neginf=0.0)), 0, self.levels)
        level = level.astype(np.int64)
        view = self.env.system_view()
        if not np.any(level > 0):
            level[int(np.argmax(view.channel_gain_linear))] = 1
        selected = level > 0
        index = np.maximum(level - 1, 0)
        rho = np.where(selected, self.pruning_rates()[index], 0.0)
        compute_ratio, bits_ratio = self.cost_ratios()
        compute_s = view.compute_latency_s * compute_ratio[index] / cpu_fraction
        bits = view.upload_bits * bits_ratio[index] * bits_fraction
        share = np.asarray(self.allocator(view, selected, compute_s, bits), dtype=np.float64)
        share = np.where(selected, np.maximum(np.nan_to_num(share, nan=1.0), 1e-12), 0.0)
        return encode_decision(selected, rho, share, config, **extra)


class MultiDiscreteActionWrapper(gym.ActionWrapper[Any, NDArray[np.int64], NDArray[np.float32]]):
    """The :class:`MultiDiscreteDecoder` action on any (wrapped) WirelessFLEnv.

    Args:
        env: A WirelessFLEnv (possibly wrapped).
        levels: L, the number of pruning levels (>= 1).
        allocator: ``"equal"`` (default), ``"min-max-latency"`` (registered by :mod:`agents`) or an
            :data:`Allocator`.
    """

    def __init__(
        self, env: gym.Env[Any, NDArray[np.float32]], levels: int = 4, allocator: str | Allocator = "equal"
    ) -> None:
        super().__init__(env)
        self.decoder = MultiDiscreteDecoder(_base(env), levels, allocator)
        self.action_space = self.decoder.space

    def action(self, action: NDArray[Any]) -> NDArray[np.float32]:
        return self.decoder.to_canonical(action)


class WirelessFLDiscreteEnv(WirelessFLEnv):
    """``fedsimenv/WirelessFL-Discrete-v0``: :class:`~fedsimenv.env.WirelessFLEnv` (whose spec sheet
    applies) with the :class:`MultiDiscreteDecoder` action instead of the canonical Box.

    Args:
        levels: L, the number of pruning levels (default 4: rho in {0, rho_max/3, 2 rho_max/3, rho_max}).
        allocator: ``"equal"`` (default) or ``"min-max-latency"``.
        **kwargs: As :class:`~fedsimenv.env.WirelessFLEnv`.
    """

    def __init__(self, levels: int = 4, allocator: str = "equal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decoder = MultiDiscreteDecoder(self, levels, allocator)
        self.action_space = self.decoder.space

    def step(self, action: NDArray[Any]) -> tuple[Observation, SupportsFloat, bool, bool, dict[str, Any]]:
        return super().step(self.decoder.to_canonical(action))


#: Keys scaled on a log10 axis (seconds spanning orders of magnitude against a 1e4 s bound): the
#: value ``t`` is mapped as ``log10(t + LOG_FLOOR_S)`` over ``[log10(LOG_FLOOR_S), log10(high)]``.
LOG_SCALED_KEYS = ("last_compute_time_s", "last_upload_time_s")
LOG_FLOOR_S = 1e-3


def observation_scaling(space: spaces.Dict) -> dict[str, Any]:
    """JSON-ready description of :class:`ScaledFlatObservation` for ``space``: keys, lows, highs and
    the keys on a log axis (:data:`LOG_SCALED_KEYS`)."""
    keys = list(space.spaces)
    boxes = [space[k] for k in keys]
    for key, box in zip(keys, boxes, strict=True):
        if not isinstance(box, spaces.Box):
            raise TypeError(f"observation key {key!r} is not a Box")
    return {
        "keys": keys,
        "low": [np.asarray(b.low, dtype=np.float64).ravel().tolist() for b in boxes],  # type: ignore[attr-defined]
        "high": [np.asarray(b.high, dtype=np.float64).ravel().tolist() for b in boxes],  # type: ignore[attr-defined]
        "log_keys": [k for k in keys if k in LOG_SCALED_KEYS],
    }


def scale_observation(observation: Mapping[str, Any], scaling: Mapping[str, Any]) -> NDArray[np.float32]:
    """Each key mapped affinely from its [low, high] onto [-1, 1] (clipped; the ``log_keys`` on a
    log10 axis, so 0.01 s and 1 s stay far apart), concatenated in order."""
    parts = []
    log_keys = set(scaling.get("log_keys", ()))
    for key, low, high in zip(scaling["keys"], scaling["low"], scaling["high"], strict=True):
        lo, hi = np.asarray(low), np.asarray(high)
        value = np.clip(np.asarray(observation[key], dtype=np.float64).ravel(), lo, hi)
        if key in log_keys:
            value = np.log10(np.maximum(value, 0.0) + LOG_FLOOR_S)
            lo, hi = np.log10(np.maximum(lo, 0.0) + LOG_FLOOR_S), np.log10(np.maximum(hi, 0.0) + LOG_FLOOR_S)
        parts.append(2.0 * (value - lo) / np.maximum(hi - lo, 1e-12) - 1.0)
    return np.concatenate(parts).astype(np.float32)


class ScaledFlatObservation(gym.ObservationWrapper[NDArray[np.float32], Any, Any]):
    """The Dict observation flattened into ``Box(-1, 1, (D,))``, each key scaled by its bounds.

    For MLP policies (SB3 ``MlpPolicy``); :func:`observation_scaling` records the transform so a
    saved policy can be replayed (:mod:`agents.rl`).
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Dict):
            raise TypeError("ScaledFlatObservation needs a Dict observation space")
        self.scaling = observation_scaling(env.observation_space)
        size = sum(len(low) for low in self.scaling["low"])
        self.observation_space = spaces.Box(
            np.float32(-1.0), np.float32(1.0), shape=(size,), dtype=np.float32
        )

    def observation(self, observation: Any) -> NDArray[np.float32]:
        return scale_observation(observation, self.scaling)
