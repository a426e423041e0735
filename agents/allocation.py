"""Min-max round-latency bandwidth allocation for a given selection and pruning rates.

Minimise T subject to ``t_dl + (1 - rho_k)(A_k + L_k / r_k(b_k)) <= T`` for every selected k and
``sum b_k <= B``. For a candidate T each device needs at least ``b_k(T)`` (Lambert W, the rate
equation of :func:`agents.optimal.bandwidth_for_rate`), which decreases in T, so the least feasible T
is found by bisection on T: feasible iff ``sum b_k(T) <= B``. The bandwidth left at the returned T
(below the bisection tolerance) is shared in proportion to the allocation, which only lowers each
latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from agents.optimal.closed_form import bandwidth_for_rate
from agents.optimal.problem import LN2, FloatArray
from fedsimenv.view import SystemView
from fedsimenv.wrappers import ALLOCATORS


@dataclass(frozen=True)
class MinMaxResult:
    """Min-max latency allocation.

    Attributes:
        round_latency_s: The minimal common latency T, s.
        bandwidth_hz: (n,) per-device bandwidth, Hz, summing to B.
    """

    round_latency_s: float
    bandwidth_hz: FloatArray


def minmax_latency_bandwidth(
    snr_bandwidth_hz: ArrayLike,
    compute_latency_s: ArrayLike,
    upload_bits: ArrayLike,
    bandwidth_hz: float,
    pruning_rate: ArrayLike = 0.0,
    downlink_time_s: float = 0.0,
    rtol: float = 1e-13,
) -> MinMaxResult:
    """Bandwidth shares minimising the slowest device's latency (bisection on T).

    Args:
        snr_bandwidth_hz: (n,) ``a_k = p_k g_k / N0``, Hz, > 0, of the selected devices.
        compute_latency_s: (n,) unpruned compute latency A_k, s, >= 0.
        upload_bits: (n,) unpruned upload size L_k, bits, > 0.
        bandwidth_hz: Total bandwidth B, Hz, > 0.
        pruning_rate: (n,) or scalar rho_k in [0, 1).
        downlink_time_s: Common broadcast time, s, >= 0.
        rtol: Relative tolerance of T.
    """
    a = np.asarray(snr_bandwidth_hz, dtype=np.float64).reshape(-1)
    n = len(a)
    keep = 1.0 - np.broadcast_to(np.asarray(pruning_rate, dtype=np.float64), (n,))
    compute = keep * np.broadcast_to(np.asarray(compute_latency_s, dtype=np.float64), (n,))
    bits = keep * np.broadcast_to(np.asarray(upload_bits, dtype=np.float64), (n,))
    if n == 0 or np.any(~np.isfinite(a) | (a <= 0)):
        raise ValueError("snr_bandwidth_hz must be a non-empty array of finite values > 0")
    if np.any(keep <= 0) or np.any(keep > 1):
        raise ValueError("pruning_rate must be in [0, 1)")
    if np.any(compute < 0) or np.any(bits <= 0):
        raise ValueError("compute_latency_s must be >= 0 and upload_bits > 0")
    if not bandwidth_hz > 0:
        raise ValueError(f"bandwidth_hz must be > 0, got {bandwidth_hz}")
    if not downlink_time_s >= 0:
        raise ValueError(f"downlink_time_s must be >= 0, got {downlink_time_s}")

    def needed(total_s: float) -> FloatArray:
        slack = total_s - downlink_time_s - compute
        with np.errstate(divide="ignore"):
            rate = np.where(slack > 0, bits / np.where(slack > 0, slack, 1.0), np.inf)
        return np.where(
            np.isfinite(rate), bandwidth_for_rate(np.where(np.isfinite(rate), rate, 0.0), a), np.inf
        )

    # Below this T some device could not finish even with unlimited bandwidth (rate -> a / ln2).
    lo = float(np.max(downlink_time_s + compute + bits * LN2 / a))
    hi = max(2.0 * lo, 1e-12)
    while needed(hi).sum() > bandwidth_hz:
        hi *= 2.0
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if needed(mid).sum() <= bandwidth_hz:
            hi = mid
        else:
            lo = mid
    b = needed(hi)
    b = b * (bandwidth_hz / b.sum())  # share the remainder; more bandwidth never raises latency
    return MinMaxResult(round_latency_s=hi, bandwidth_hz=b)


@ALLOCATORS.register("min-max-latency")
def min_max_latency_allocation(
    view: SystemView,
    selected: NDArray[np.bool_],
    compute_latency_s: NDArray[np.float64],
    upload_bits: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Shares minimising the slowest selected device's latency: the discrete env's ``min-max-latency``
    allocator (:class:`fedsimenv.wrappers.MultiDiscreteDecoder`)."""
    idx = np.flatnonzero(selected)
    result = minmax_latency_bandwidth(
        np.maximum(view.snr_bandwidth_hz[idx], 1e-300),
        compute_latency_s[idx],
        upload_bits[idx],
        view.bandwidth_hz,
        0.0,
        float(view.downlink_time_s[idx].max()),
    )
    shares = np.ones(view.num_devices)
    shares[idx] = np.maximum(result.bandwidth_hz, 1e-12 * view.bandwidth_hz)
    return shares
