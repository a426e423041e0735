"""What an RL policy sees: per-device features that stay visible at every scale, in a layout a
permutation-equivariant network can read for any number of devices N.

The env's Dict observation is built for humans (seconds, dB, GHz against fixed bounds); scaled by
those bounds, the features a pruning/scheduling decision hinges on vanish (a 0.1 s upload against a
1e4 s bound is 1e-5). The policy instead sees the coming round's costs as the base station knows
them (its :class:`~fedsimenv.view.SystemView`: the CSI and device capabilities the analytic
optimisers decide on) relative to the round's reference latency ``T_ref`` (the median over devices
of the unpruned latency with an equal share ``B / N``, the optimisers' default deadline), on a
natural-log scale, plus the learning state from the observation:

Per device (``DEVICE_FEATURES``, F = 9):

=====================  ==========================================================================
``log_compute``        ``ln(A_k / T_ref)``: unpruned local-training latency
``log_upload_equal``   ``ln(bits_k / r_k(B / N) / T_ref)``: unpruned upload time at an equal share
``log_downlink``       ``ln(t_dl,k / T_ref)``: broadcast time if k were the weakest selected device
``log_snr``            ``ln(p_k g_k / (N0 B)) / 10``: SNR over the whole band
``data_share``         ``ln(N D_k / sum D)``: data relative to the mean device
``battery_level``      from the observation, [0, 1]
``available``          from the observation, 0/1
``last_selected``      from the observation, 0/1
``staleness``          ``rounds_since_selected / max_rounds``
=====================  ==========================================================================

Global (``GLOBAL_FEATURES``, G = 5): ``accuracy``, ``round_fraction``, ``time_fraction``,
``energy_fraction`` (from the observation) and ``ln(T_ref)`` / 5.

Every value is clipped to [-CLIP, CLIP]. The flat vector is device-major
``[dev_0 (F) | dev_1 (F) | ... | dev_{N-1} (F) | globals (G)]``, so N = (D - G) / F is read off its
length. The transform has no fitted state: it is identified by :data:`FEATURES_VERSION`, which
``train.json`` records and the policy agent checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from fedsimenv.view import SystemView

FEATURES_VERSION = "device-features-v1"
DEVICE_FEATURES = (
    "log_compute",
    "log_upload_equal",
    "log_downlink",
    "log_snr",
    "data_share",
    "battery_level",
    "available",
    "last_selected",
    "staleness",
)
GLOBAL_FEATURES = ("accuracy", "round_fraction", "time_fraction", "energy_fraction", "log_reference_s")
CLIP = 10.0


def _rate_bps(bandwidth_hz: float, snr_bandwidth_hz: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(bandwidth_hz * np.log1p(snr_bandwidth_hz / bandwidth_hz) / np.log(2.0))


def device_features(
    observation: Mapping[str, Any], view: SystemView, max_rounds: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``(per-device (N, F), global (G,))`` features of the coming round (module docstring)."""
    n = view.num_devices
    ref = max(view.reference_latency_s(), 1e-12)
    upload = view.upload_bits / np.maximum(_rate_bps(view.bandwidth_hz / n, view.snr_bandwidth_hz), 1e-30)
    tiny = 1e-30

    def obs(key: str) -> NDArray[np.float64]:
        return np.asarray(observation[key], dtype=np.float64).reshape(-1)

    share = view.num_samples / max(float(view.num_samples.sum()), tiny)
    per_device = np.stack(
        [
            np.log(np.maximum(view.compute_latency_s, tiny) / ref),
            np.log(np.maximum(upload, tiny) / ref),
            np.log(np.maximum(view.downlink_time_s, tiny) / ref),
            np.log(np.maximum(view.snr_bandwidth_hz / view.bandwidth_hz, tiny)) / 10.0,
            np.log(np.maximum(n * share, tiny)),
            obs("battery_level"),
            obs("available"),
            obs("last_selected"),
            obs("rounds_since_selected") / max(max_rounds, 1),
        ],
        axis=1,
    )
    globals_ = np.array(
        [
            obs("accuracy")[0],
            obs("round_fraction")[0],
            obs("time_fraction")[0],
            obs("energy_fraction")[0],
            np.log(ref) / 5.0,
        ]
    )
    clip = np.clip(np.nan_to_num(per_device, nan=0.0), -CLIP, CLIP).astype(np.float32)
    return clip, np.clip(np.nan_to_num(globals_, nan=0.0), -CLIP, CLIP).astype(np.float32)


def flat_features(observation: Mapping[str, Any], view: SystemView, max_rounds: int) -> NDArray[np.float32]:
    """The device-major flat vector of :func:`device_features` (module docstring)."""
    per_device, globals_ = device_features(observation, view, max_rounds)
    return np.concatenate([per_device.reshape(-1), globals_]).astype(np.float32)


def feature_space(num_devices: int) -> spaces.Box:
    """The Box the flat features live in, for N devices."""
    size = num_devices * len(DEVICE_FEATURES) + len(GLOBAL_FEATURES)
    return spaces.Box(np.float32(-CLIP), np.float32(CLIP), shape=(size,), dtype=np.float32)


class DeviceFeatureObservation(gym.ObservationWrapper[NDArray[np.float32], Any, Any]):
    """The env's observation replaced by :func:`flat_features` (reads the base env's system view)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        base: Any = env.unwrapped
        if not hasattr(base, "system_view"):
            raise TypeError(
                f"DeviceFeatureObservation needs a WirelessFLEnv underneath, got {type(base).__name__}"
            )
        self._view: Callable[[], SystemView] = base.system_view
        self._max_rounds = int(base.config.episode.max_rounds)
        self.observation_space = feature_space(int(base.num_devices))  # type: ignore[assignment]

    def observation(self, observation: Any) -> NDArray[np.float32]:
        return flat_features(observation, self._view(), self._max_rounds)
