r"""Packet-error-aware selection and resource-block assignment in the style of Chen et al., IEEE TWC
2021 ("A joint learning and communications framework for federated learning over wireless
networks").

R uplink resource blocks (RBs) of bandwidth ``B_rb`` each, RB n with interference power ``I_n``. A
device's update sent on RB n with power p fails with the waterfall packet error rate

    q_{k,n}(p) = 1 - exp(-m (I_n + B_rb N0) / (p g_k)),

and arrives in time and within its energy budget iff

    t_comp_k + L_k / r_{k,n}(p) <= delay_limit,   E_comp_k + p L_k / r_{k,n}(p) <= energy_limit,
    r_{k,n}(p) = B_rb log2(1 + p g_k / (I_n + B_rb N0)).

Chen et al. reduce the FL loss bound to maximising the expected amount of data that reaches the
server, ``sum_k D_k (1 - q_k)``. For a fixed pair (k, n) the error rate falls with p, the delay
constraint is a lower bound on p and the transmit energy ``p L / r(p)`` rises with p, so the best
power is the largest one allowed by p_max and the energy limit (found by bisection); the pair is
infeasible if that is below the delay bound. The assignment (each RB to at most one device, each
device at most one RB) maximising the total value is a linear assignment problem, solved by the
Hungarian method (``scipy.optimize.linear_sum_assignment``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment

from agents.optimal.problem import FloatArray


def packet_error_rate(
    tx_power_w: ArrayLike,
    channel_gain_linear: ArrayLike,
    interference_w: ArrayLike,
    noise_psd_w_per_hz: float,
    rb_bandwidth_hz: float,
    waterfall: float = 0.023,
) -> FloatArray:
    """``1 - exp(-m (I + B_rb N0) / (p g))`` (Chen et al.'s waterfall model)."""
    noise = np.asarray(interference_w, dtype=np.float64) + rb_bandwidth_hz * noise_psd_w_per_hz
    received = np.asarray(tx_power_w, dtype=np.float64) * np.asarray(channel_gain_linear, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(-np.expm1(-waterfall * noise / received))


@dataclass(frozen=True)
class AssignmentResult:
    """Chen-style answer.

    Attributes:
        rb_of_device: (N,) RB index assigned to each device, -1 if none.
        tx_power_w: (N,) chosen power, W (0 where unassigned).
        value: (N, R) expected data ``D_k (1 - q_{k,n})`` of each pair at its best power; 0 where
            the pair is infeasible.
        expected_samples: The assignment's total expected arriving samples.
    """

    rb_of_device: NDArray[np.int64]
    tx_power_w: FloatArray
    value: FloatArray
    expected_samples: float


def pair_values(
    num_samples: ArrayLike,
    channel_gain_linear: ArrayLike,
    tx_power_max_w: ArrayLike,
    compute_time_s: ArrayLike,
    compute_energy_j: ArrayLike,
    upload_bits: ArrayLike,
    interference_w: ArrayLike,
    noise_psd_w_per_hz: float,
    rb_bandwidth_hz: float,
    delay_limit_s: float,
    energy_limit_j: float,
    waterfall: float = 0.023,
) -> tuple[FloatArray, FloatArray]:
    """(N, R) best power per (device, RB) pair and the pair's expected data (0 if infeasible).

    ``channel_gain_linear`` is (N,) (every RB sees the device's gain) or (N, R) (a gain per RB).
    """
    d = np.asarray(num_samples, dtype=np.float64)[:, None]
    g = np.asarray(channel_gain_linear, dtype=np.float64)
    g = g[:, None] if g.ndim == 1 else g  # (N,) flat over the RBs, or (N, R) a gain per RB
    p_max = np.broadcast_to(np.asarray(tx_power_max_w, dtype=np.float64), d.shape[:1])[:, None]
    t_comp = np.asarray(compute_time_s, dtype=np.float64)[:, None]
    e_comp = np.asarray(compute_energy_j, dtype=np.float64)[:, None]
    bits = np.broadcast_to(np.asarray(upload_bits, dtype=np.float64), d.shape[:1])[:, None]
    noise = np.asarray(interference_w, dtype=np.float64)[None, :] + rb_bandwidth_hz * noise_psd_w_per_hz
    if rb_bandwidth_hz <= 0 or delay_limit_s <= 0 or energy_limit_j <= 0 or waterfall <= 0:
        raise ValueError("rb_bandwidth_hz, delay_limit_s, energy_limit_j and waterfall must be > 0")
    sinr_per_w = g / noise  # (N, R)

    def upload_s(p: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore"):  # a zero-gain pair never finishes: inf, infeasible
            return np.asarray(bits / (rb_bandwidth_hz * np.log2(1.0 + p * sinr_per_w)))

    upload_budget = delay_limit_s - t_comp
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        exponent = bits / (rb_bandwidth_hz * np.where(upload_budget > 0, upload_budget, np.nan))
        p_delay = np.where(upload_budget > 0, np.expm1(exponent * np.log(2.0)) / sinr_per_w, np.inf)
    p_delay = np.nan_to_num(p_delay, nan=np.inf)
    # Largest power within the energy limit: p L / r(p) increases in p, bisect on [0, p_max].
    energy_budget = energy_limit_j - e_comp
    lo = np.zeros_like(sinr_per_w)
    hi = np.broadcast_to(p_max, sinr_per_w.shape).copy()
    at_max_ok = hi * upload_s(hi) <= energy_budget
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        ok = mid * upload_s(np.maximum(mid, 1e-300)) <= energy_budget
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    power = np.where(at_max_ok, np.broadcast_to(p_max, sinr_per_w.shape), lo)
    feasible = (power > 0) & (power >= p_delay) & (energy_budget > 0)
    per = packet_error_rate(
        np.where(feasible, power, 1.0),
        g,
        noise - rb_bandwidth_hz * noise_psd_w_per_hz,
        noise_psd_w_per_hz,
        rb_bandwidth_hz,
        waterfall,
    )
    value = np.where(feasible, d * (1.0 - per), 0.0)
    return np.where(feasible, power, 0.0), value


def assign_resource_blocks(power: FloatArray, value: FloatArray) -> AssignmentResult:
    """Hungarian assignment maximising the total expected data; infeasible pairs stay unassigned."""
    n = value.shape[0]
    rows, cols = linear_sum_assignment(value, maximize=True)
    rb_of_device = np.full(n, -1)
    tx_power_w = np.zeros(n)
    keep = value[rows, cols] > 0
    rb_of_device[rows[keep]] = cols[keep]
    tx_power_w[rows[keep]] = power[rows[keep], cols[keep]]
    return AssignmentResult(rb_of_device, tx_power_w, value, float(value[rows[keep], cols[keep]].sum()))
