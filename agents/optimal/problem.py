r"""The joint pruning / bandwidth / device-selection problem (structure of Liu et al., IEEE TCOM 2022).

Model (the reference system model of docs/DESIGN.md, linear cost model in rho). Device k, if selected,
prunes a fraction ``rho_k`` of its model and gets uplink bandwidth ``b_k``; its round latency is

    t_dl + (1 - rho_k) (A_k + L_k / r_k(b_k)),     r_k(b) = b log2(1 + a_k / b),  a_k = p_k g_k / N0,

with ``A_k`` the unpruned local-training latency (s), ``L_k`` the unpruned upload size (bits) and
``t_dl`` the broadcast time. The problem is

    minimise    J(S, rho, b) = sum_{k in S} w_k rho_k + gamma sum_{k not in S} w_k
    subject to  t_dl + (1 - rho_k)(A_k + L_k / r_k(b_k)) <= tau,   k in S
                sum_{k in S} b_k <= B,   b_k >= 0,   0 <= rho_k <= rho_max.

Where the objective comes from. Convergence bounds of federated learning with pruned local models
(Liu et al.; also the pruning-error analyses of PruneFL / FedMP) bound the optimality gap after a
round by a term growing with each participant's pruning error -- proportional to the removed
fraction rho_k, weighted by its data share -- plus a term for every device that does not take part,
weighted the same way. Keeping the two terms linear in rho_k and in the exclusion indicator gives
``J`` with ``w_k`` proportional to ``D_k`` and an exclusion cost ``gamma >= rho_max``: dropping a
device is never cheaper than letting it prune as hard as it may. The paper's exact bound (its
constants) is not available here; ``w`` and ``gamma`` are inputs, so any bound of this separable
form plugs in.

Structure used by the solvers (derived here, checked by the tests):

1. **rho given b is closed form.** For fixed ``b_k`` the objective is increasing in ``rho_k``, so the
   latency constraint is tight or rho_k = 0:  ``rho_k = max(0, f_k(b_k))`` with
   ``f_k(b) = 1 - T / (A_k + L_k / r_k(b))`` and ``T = tau - t_dl`` the compute-plus-upload budget.
2. **f_k is convex and decreasing in b.** ``f_k(b) = 1 - T phi_k(r_k(b))`` with
   ``phi_k(r) = r / (A_k r + L_k)``, which is increasing and concave in r; r_k is concave in b, so
   phi_k(r_k(b)) is concave and f_k convex. Hence for a fixed set S the problem in b is convex,
   separable, with one coupling constraint: its KKT conditions are ``w_k f_k'(b_k) + lambda = 0``
   on the interior of ``[b_min_k, b0_k]`` (with a single multiplier lambda >= 0, complementary to
   ``sum b = B``), where ``b0_k`` is the least bandwidth that meets the deadline unpruned (beyond
   it rho_k = 0 and more bandwidth is useless) and ``b_min_k`` the least bandwidth that meets it at
   rho_max. Both solve ``r_k(b) = R`` for a required rate R, in closed form via Lambert W.
3. **Selection by thresholds over nested sets.** A device is feasible at all only if b_min_k is
   finite and <= B. Devices are ordered by a straggler metric (default: ``b_min_k / w_k``, the
   bandwidth a device needs per unit of objective it saves); the candidate sets are the prefixes of
   that order whose minimum bandwidths fit into B. Each prefix is solved exactly (2.), excluded
   devices add ``gamma w_k``; the best prefix is kept. Because the exclusion term only grows as the
   prefix shrinks and the allocation term is >= 0, the scan stops as soon as the exclusion term
   alone exceeds the best objective found (exact over the nested family). The default search jumps
   to a good prefix by a first-order test on the multiplier, then gallops (steps 1, 2, 4, ...) to a
   local minimum over +-1 device: ~10-25 fixed-set solves at N = 1,000, warm-started.

Infeasible devices (b_min_k infinite or > B, e.g. deep fades or compute slower than the deadline
even at rho_max) are deselected; a returned allocation never violates a constraint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

LN2 = math.log(2.0)


def _positive_array(name: str, value: ArrayLike, allow_zero: bool = False) -> FloatArray:
    arr = np.array(value, dtype=np.float64, copy=True).reshape(-1)
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if bad.any():
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name} must be finite and {bound}; got {arr[bad][:3]} at {np.flatnonzero(bad)[:3]}"
        )
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class JointProblem:
    """One instance of the joint problem (see the module docstring for the maths).

    Attributes:
        snr_bandwidth_hz: (N,) ``a_k = p_k g_k / N0`` in Hz, > 0 (the rate is ``b log2(1 + a_k/b)``).
        compute_latency_s: (N,) unpruned local-training latency A_k, s, > 0.
        upload_bits: (N,) unpruned upload size L_k, bits, > 0.
        weight: (N,) objective weights w_k >= 0 (e.g. data shares D_k / sum D).
        bandwidth_hz: Shared bandwidth B, Hz, > 0.
        deadline_s: Round deadline tau, s; must exceed ``downlink_time_s``.
        downlink_time_s: Broadcast time t_dl, s, >= 0.
        rho_max: Largest pruning rate, in [0, 1).
        exclusion_penalty: gamma, the objective cost per unit weight of leaving a device out;
            must be >= rho_max.
        compute_fixed_s: (N,) compute latency that pruning does not remove, s, >= 0 (default 0):
            the compute latency at keep fraction ``1 - rho`` is ``compute_fixed_s + (1 - rho) A``.
        upload_fixed_bits: (N,) upload bits that pruning does not remove, >= 0 (default 0), e.g. an
            unstructured mask's one bit per prunable weight: the upload is ``upload_fixed_bits +
            (1 - rho) L``. With both zero this is the linear cost model of Liu et al.
    """

    snr_bandwidth_hz: FloatArray
    compute_latency_s: FloatArray
    upload_bits: FloatArray
    weight: FloatArray
    bandwidth_hz: float
    deadline_s: float
    downlink_time_s: float = 0.0
    rho_max: float = 0.9
    exclusion_penalty: float = 1.0
    compute_fixed_s: ArrayLike | None = None
    upload_fixed_bits: ArrayLike | None = None
    num_devices: int = field(init=False)

    def __post_init__(self) -> None:
        n = np.size(self.snr_bandwidth_hz)
        zeros = np.zeros(n)
        arrays = {
            "snr_bandwidth_hz": _positive_array("snr_bandwidth_hz", self.snr_bandwidth_hz),
            "compute_latency_s": _positive_array("compute_latency_s", self.compute_latency_s),
            "upload_bits": _positive_array("upload_bits", self.upload_bits),
            "weight": _positive_array("weight", self.weight, allow_zero=True),
            "compute_fixed_s": _positive_array(
                "compute_fixed_s", zeros if self.compute_fixed_s is None else self.compute_fixed_s, True
            ),
            "upload_fixed_bits": _positive_array(
                "upload_fixed_bits", zeros if self.upload_fixed_bits is None else self.upload_fixed_bits, True
            ),
        }
        if n == 0:
            raise ValueError("snr_bandwidth_hz must have at least one device")
        for name, arr in arrays.items():
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "num_devices", n)
        if not (math.isfinite(self.bandwidth_hz) and self.bandwidth_hz > 0):
            raise ValueError(f"bandwidth_hz must be finite and > 0, got {self.bandwidth_hz}")
        if not (math.isfinite(self.downlink_time_s) and self.downlink_time_s >= 0):
            raise ValueError(f"downlink_time_s must be finite and >= 0, got {self.downlink_time_s}")
        if not (math.isfinite(self.deadline_s) and self.deadline_s > self.downlink_time_s):
            raise ValueError(
                f"deadline_s must be finite and > downlink_time_s ({self.downlink_time_s}), "
                f"got {self.deadline_s}"
            )
        if not 0 <= self.rho_max < 1:
            raise ValueError(f"rho_max must be in [0, 1), got {self.rho_max}")
        if not (math.isfinite(self.exclusion_penalty) and self.exclusion_penalty >= self.rho_max):
            raise ValueError(
                f"exclusion_penalty must be finite and >= rho_max ({self.rho_max}), "
                f"got {self.exclusion_penalty}"
            )

    @property
    def budget_s(self) -> float:
        """T = tau - t_dl, the time left for compute and upload, s."""
        return self.deadline_s - self.downlink_time_s

    @property
    def fixed_compute(self) -> FloatArray:
        """``compute_fixed_s`` as an array (always one after construction)."""
        return np.asarray(self.compute_fixed_s, dtype=np.float64)

    @property
    def fixed_bits(self) -> FloatArray:
        """``upload_fixed_bits`` as an array (always one after construction)."""
        return np.asarray(self.upload_fixed_bits, dtype=np.float64)

    @property
    def keep_budget_s(self) -> FloatArray:
        """(N,) ``T - compute_fixed_s``: the time left for the prunable compute and the upload, s."""
        return self.budget_s - self.fixed_compute

    def subset(self, index: NDArray[np.intp]) -> JointProblem:
        """The same problem restricted to devices ``index``."""
        return JointProblem(
            snr_bandwidth_hz=self.snr_bandwidth_hz[index],
            compute_latency_s=self.compute_latency_s[index],
            upload_bits=self.upload_bits[index],
            weight=self.weight[index],
            bandwidth_hz=self.bandwidth_hz,
            deadline_s=self.deadline_s,
            downlink_time_s=self.downlink_time_s,
            rho_max=self.rho_max,
            exclusion_penalty=self.exclusion_penalty,
            compute_fixed_s=self.fixed_compute[index],
            upload_fixed_bits=self.fixed_bits[index],
        )

    def with_timing(self, deadline_s: float, downlink_time_s: float) -> JointProblem:
        """The same problem with another deadline and broadcast time."""
        return dataclasses.replace(self, deadline_s=deadline_s, downlink_time_s=downlink_time_s)


@dataclass(frozen=True)
class Allocation:
    """A solver's answer. Unselected devices have rho = 0 and b = 0.

    Attributes:
        selected: (N,) which devices take part.
        pruning_rate: (N,) rho_k.
        bandwidth_hz: (N,) b_k, Hz.
        objective: J at this point.
        multiplier_per_hz: lambda, the KKT multiplier of the bandwidth budget (objective per Hz);
            NaN where the solver does not report it.
        solver: Which solver produced it ("closed-form", "cvxpy", ...).
        fallback_reason: Empty, or why the requested solver was replaced by the closed form.
    """

    selected: BoolArray
    pruning_rate: FloatArray
    bandwidth_hz: FloatArray
    objective: float
    multiplier_per_hz: float = math.nan
    solver: str = "closed-form"
    fallback_reason: str = ""


def rate_bps(bandwidth_hz: ArrayLike, snr_bandwidth_hz: ArrayLike) -> FloatArray:
    """``b log2(1 + a / b)`` in bit/s; 0 at b = 0 (the limit)."""
    b = np.asarray(bandwidth_hz, dtype=np.float64)
    a = np.asarray(snr_bandwidth_hz, dtype=np.float64)
    safe_b = np.where(b > 0, b, 1.0)
    return np.where(b > 0, safe_b * np.log1p(a / safe_b) / LN2, 0.0)


def latency_s(problem: JointProblem, pruning_rate: ArrayLike, bandwidth_hz: ArrayLike) -> FloatArray:
    """Per-device round latency ``t_dl + A0 + (1 - rho) A + (L0 + (1 - rho) L) / r(b)``, s (inf where
    b = 0); ``A0, L0`` are the parts pruning does not remove (zero in the linear model)."""
    rate = rate_bps(bandwidth_hz, problem.snr_bandwidth_hz)
    keep = 1.0 - np.asarray(pruning_rate, dtype=np.float64)
    bits = problem.fixed_bits + keep * problem.upload_bits
    with np.errstate(divide="ignore"):
        upload = np.where(rate > 0, bits / np.where(rate > 0, rate, 1.0), np.inf)
    return problem.downlink_time_s + problem.fixed_compute + keep * problem.compute_latency_s + upload


def objective(problem: JointProblem, selected: ArrayLike, pruning_rate: ArrayLike) -> float:
    """J = sum over selected of w rho + gamma sum over unselected of w."""
    sel = np.asarray(selected, dtype=bool)
    rho = np.asarray(pruning_rate, dtype=np.float64)
    w = problem.weight
    return float(np.sum(w[sel] * rho[sel]) + problem.exclusion_penalty * np.sum(w[~sel]))


def constraint_violation(problem: JointProblem, allocation: Allocation) -> dict[str, float]:
    """Largest relative violation of each constraint (<= 0 means satisfied)."""
    sel = allocation.selected
    rho, b = allocation.pruning_rate, allocation.bandwidth_hz
    lat = latency_s(problem, rho, b)[sel]
    return {
        "latency": float(np.max(lat / problem.deadline_s - 1.0, initial=-1.0)),
        "bandwidth": float(b.sum() / problem.bandwidth_hz - 1.0),
        "rho_low": float(np.max(-rho, initial=-1.0)),
        "rho_high": float(np.max(rho[sel] - problem.rho_max, initial=-1.0)),
        "unselected_bandwidth": float(np.max(b[~sel], initial=0.0)),
    }


def empty_allocation(problem: JointProblem, solver: str, reason: str = "") -> Allocation:
    """Nobody selected: every device pays the exclusion cost."""
    n = problem.num_devices
    return Allocation(
        selected=np.zeros(n, dtype=bool),
        pruning_rate=np.zeros(n),
        bandwidth_hz=np.zeros(n),
        objective=problem.exclusion_penalty * float(problem.weight.sum()),
        solver=solver,
        fallback_reason=reason,
    )


def keep_given_rate(problem: JointProblem, rate: ArrayLike) -> FloatArray:
    """The largest keep fraction ``1 - rho`` meeting the deadline at uplink rate ``rate`` (bit/s):
    ``(T - A0 - L0 / r) / (A + L / r)`` (unclipped; may be negative or above 1)."""
    r = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(r > 0, 1.0 / np.where(r > 0, r, 1.0), np.inf)
        num = problem.keep_budget_s - problem.fixed_bits * inv
        den = problem.compute_latency_s + problem.upload_bits * inv
        return np.where(np.isfinite(inv), num / den, -np.inf)


def required_rate_bps(problem: JointProblem, pruning_rate: ArrayLike) -> FloatArray:
    """Least uplink rate meeting the deadline at ``pruning_rate`` (inf where compute alone misses it)."""
    keep = 1.0 - np.asarray(pruning_rate, dtype=np.float64)
    slack = problem.keep_budget_s - keep * problem.compute_latency_s
    bits = problem.fixed_bits + keep * problem.upload_bits
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(slack > 0, bits / np.where(slack > 0, slack, 1.0), np.inf)
