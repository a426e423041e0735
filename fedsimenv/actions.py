"""The canonical action encoding: one ``Box(-1, 1, (3N,))`` vector <-> a :class:`RoundDecision`.

Layout ``[select_0..N-1 | rho_0..N-1 | bandwidth_0..N-1]``:

* selection: device k takes part iff ``select_k > selection_threshold``; if none does, the device with
  the largest ``select_k`` is selected (a round always has at least one device);
* pruning rate: ``rho_k = rho_max (a_k + 1) / 2``, an affine map of [-1, 1] onto [0, rho_max];
* bandwidth: a softmax of ``bandwidth_logit_scale * a_k`` over the selected devices only, times B.
  With scale s, two devices' shares can differ by up to ``exp(2 s)``.

Out-of-range and non-finite entries are clipped, never rejected: NaN -> 0 (the midpoint), +inf -> 1,
-inf -> -1, then everything is clipped to [-1, 1].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedsimenv.config import ActionConfig
from fedsimenv.sim.types import RoundDecision


def sanitize_action(action: ArrayLike, num_devices: int) -> NDArray[np.float64]:
    """Flatten, check the length, and clip an action as documented in this module."""
    flat = np.asarray(action, dtype=np.float64).reshape(-1)
    if flat.shape != (3 * num_devices,):
        raise ValueError(
            f"action must have 3 * num_devices = {3 * num_devices} entries, got shape {np.shape(action)}"
        )
    return np.clip(np.nan_to_num(flat, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def decode_action(
    action: ArrayLike, num_devices: int, config: ActionConfig, total_bandwidth_hz: float
) -> RoundDecision:
    """Decode a canonical action into a feasible :class:`RoundDecision`."""
    a = sanitize_action(action, num_devices)
    select_raw, rho_raw, bandwidth_raw = (
        a[:num_devices],
        a[num_devices : 2 * num_devices],
        a[2 * num_devices :],
    )
    selected = select_raw > config.selection_threshold
    if not selected.any():
        selected[int(np.argmax(select_raw))] = True
    pruning_rate = config.rho_max * (rho_raw + 1.0) / 2.0
    logits = np.where(selected, config.bandwidth_logit_scale * bandwidth_raw, -np.inf)
    weights = np.exp(logits - logits[selected].max())
    bandwidth_hz = total_bandwidth_hz * weights / weights.sum()
    return RoundDecision(selected=selected, pruning_rate=pruning_rate, bandwidth_hz=bandwidth_hz)


def encode_decision(
    selected: ArrayLike, pruning_rate: ArrayLike, bandwidth_share: ArrayLike, config: ActionConfig
) -> NDArray[np.float32]:
    """The canonical action that decodes to (approximately) the given decision.

    ``bandwidth_share`` is relative (any positive scale). Exact up to float32 rounding where the
    shares of the selected devices are within a factor ``exp(2 * bandwidth_logit_scale)`` of the
    largest; smaller shares are raised to that floor.
    """
    sel = np.asarray(selected, dtype=bool)
    rho = np.asarray(pruning_rate, dtype=np.float64)
    share = np.asarray(bandwidth_share, dtype=np.float64)
    if not sel.any():
        raise ValueError("encode_decision needs at least one selected device")
    if np.any(share[sel] <= 0):
        raise ValueError("bandwidth_share must be > 0 for every selected device")
    select_raw = np.where(sel, 1.0, -1.0)
    rho_raw = 2.0 * rho / config.rho_max - 1.0 if config.rho_max > 0 else np.full_like(rho, -1.0)
    with np.errstate(divide="ignore"):
        log_share = np.where(sel, np.log(np.where(sel, share, 1.0)), -np.inf)
    bandwidth_raw = (log_share - log_share[sel].max()) / config.bandwidth_logit_scale + 1.0
    action = np.concatenate([select_raw, rho_raw, bandwidth_raw])
    result: NDArray[np.float32] = np.clip(action, -1.0, 1.0).astype(np.float32)
    return result
