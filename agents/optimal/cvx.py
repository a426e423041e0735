r"""An independent cvxpy formulation of the joint problem (cross-check and solver choice).

For a fixed set, with normalised bandwidth ``x_k = b_k / B``, full-band SNR ``s_k = a_k / B`` and
normalised rate ``q_k(x) = x log2(1 + s_k / x) = -(1/ln 2) rel_entr(x, x + s_k)`` (concave, DPP;
docs/DESIGN.md), the latency constraint ``(1 - rho)(A + c / q) <= T`` with ``c = L / B`` reads

    rho_k >= 1 - T / (A_k + c_k / q_k) = (1 - theta_k) + theta_k / (kappa_k q_k + 1),
    theta_k = T / A_k,  kappa_k = A_k / c_k,

whose right side is convex in x (inv_pos of a concave argument). Epigraph variables make it DCP and
DPP (every parameter multiplies a parameter-free expression):

    minimise    w . rho
    subject to  y <= q(x),  z >= inv_pos(kappa * y + 1),  rho >= (1 - theta) + theta * z,
                0 <= rho <= rho_max,  0 <= x <= 1,  active . x <= 1,  y >= 0.

One problem of capacity N is compiled once; smaller sets are padded with inactive slots
(``active = 0, w = 0, theta = 0``: outside the budget, interior, never binding) so every later solve
is a DPP re-solve; a set CLARABEL cannot finish padded is retried on a problem compiled for its exact
size before the closed-form fallback. Deep-faded devices are never
handed to CLARABEL (their SNR spread makes it stop with InsufficientProgress, docs/DESIGN.md): a device is
deselected up front if its full-band SNR is below ``snr_floor`` or if even the whole band cannot carry
its upload by the deadline at rho_max (checked on the rate formula directly). The minimum bandwidths
that order the devices are found by bisection on the rate formula, independently of the Lambert W
path. A ``SolverError`` or a non-optimal status falls back to the closed form for that set and is
reported in ``Allocation.fallback_reason``.
"""

from __future__ import annotations

import warnings
from typing import Any

import cvxpy as _cvxpy
import numpy as np

from agents.optimal.closed_form import allocate_fixed
from agents.optimal.problem import (
    LN2,
    Allocation,
    FloatArray,
    JointProblem,
    keep_given_rate,
    rate_bps,
    required_rate_bps,
)
from agents.optimal.selection import SearchMode, StragglerMetric, select_nested

#: Tolerance ladder: b is only second-order determined by the objective, so try tighter than
#: CLARABEL's 1e-8 defaults first; a tight solve can end "optimal_inaccurate", then relax.
CLARABEL_TOLERANCE_LADDER = (1e-10, 1e-9, 1e-8)

# cvxpy ships partial type information (no atoms such as rel_entr); treat it as untyped.
cp: Any = _cvxpy


def min_bandwidth_by_bisection(problem: JointProblem, pruning_rate: float) -> FloatArray:
    """Least bandwidth meeting the deadline at ``pruning_rate``, by bisection on b (inf if none)."""
    a = problem.snr_bandwidth_hz
    needed = required_rate_bps(problem, pruning_rate)
    reachable = needed < a / LN2
    hi = np.full(problem.num_devices, 1.0)
    # the rate tends to a / ln2 from below: grow the upper end until it carries the required rate
    for _ in range(2000):
        short = reachable & (rate_bps(hi, a) < needed)
        if not short.any():
            break
        hi = np.where(short, hi * 2.0, hi)
    lo = np.zeros_like(hi)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        enough = rate_bps(mid, a) >= needed
        hi, lo = np.where(enough, mid, hi), np.where(enough, lo, mid)
    return np.where(reachable, hi, np.inf)


class CvxJointSolver:
    """The cvxpy (CLARABEL) solver of the joint problem; compiled once per capacity.

    Args:
        capacity: Largest number of devices a set may have.
        snr_floor: Devices with full-band SNR ``a_k / B`` below this are deselected before solving.
        solver: cvxpy solver name (CLARABEL; SCS is too inaccurate here, docs/DESIGN.md).
    """

    def __init__(self, capacity: int, snr_floor: float = 1e-6, solver: str = "CLARABEL") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if snr_floor < 0:
            raise ValueError(f"snr_floor must be >= 0, got {snr_floor}")
        self.capacity, self.snr_floor, self.solver = capacity, snr_floor, solver
        n = capacity
        self.snr = cp.Parameter(n, nonneg=True)
        self.kappa = cp.Parameter(n, nonneg=True)
        self.theta = cp.Parameter(n, nonneg=True)
        self.offset = cp.Parameter(n)
        self.weight = cp.Parameter(n, nonneg=True)
        self.active = cp.Parameter(n, nonneg=True)
        self.rho_max = cp.Parameter(nonneg=True)
        self.x = cp.Variable(n, nonneg=True)
        y = cp.Variable(n, nonneg=True)
        z = cp.Variable(n)
        self.rho = cp.Variable(n, nonneg=True)
        self.budget = self.active @ self.x <= 1
        constraints = [
            y <= -cp.rel_entr(self.x, self.x + self.snr) / LN2,
            z >= cp.inv_pos(cp.multiply(self.kappa, y) + 1),
            self.rho >= self.offset + cp.multiply(self.theta, z),
            self.rho <= self.rho_max,
            self.x <= 1,
            self.budget,
        ]
        self.problem = cp.Problem(cp.Minimize(self.weight @ self.rho), constraints)
        self.solves = 0
        self._exact_size: dict[int, CvxJointSolver] = {}

    def allocate_fixed(self, problem: JointProblem) -> Allocation | None:
        """Every device of ``problem`` takes part: the optimal (rho, b) by cvxpy, or ``None`` if the
        set is infeasible. Falls back to the closed form on a solver failure (reported)."""
        m = problem.num_devices
        if m > self.capacity:
            raise ValueError(f"problem has {m} devices, above the solver's capacity {self.capacity}")
        b_min = min_bandwidth_by_bisection(problem, problem.rho_max)
        if not np.all(np.isfinite(b_min)) or b_min.sum() > problem.bandwidth_hz * (1 + 1e-12):
            return None
        big_b = problem.bandwidth_hz
        solver, reason = self, self._solve(problem)
        if reason and m < self.capacity:
            # Padding changes CLARABEL's iterates: a set it cannot finish padded often solves at its
            # own size (and vice versa), so retry on a solver compiled for exactly m devices.
            solver = self._exact_size.setdefault(m, CvxJointSolver(m, self.snr_floor, self.solver))
            retry = solver._solve(problem)
            reason = "" if not retry else f"{reason}; at exact size: {retry}"
        if reason:
            fallback = allocate_fixed(problem)
            if fallback is None:
                return None
            return Allocation(**{**fallback.__dict__, "fallback_reason": reason + "; used the closed form"})
        x_value, dual = solver.x.value, solver.budget.dual_value
        assert x_value is not None
        bandwidth = np.clip(np.asarray(x_value[:m]), 0.0, None) * big_b
        bandwidth, rho = _repair(problem, bandwidth, b_min)
        return Allocation(
            selected=np.ones(m, dtype=bool),
            pruning_rate=rho,
            bandwidth_hz=bandwidth,
            objective=float(problem.weight @ rho),
            multiplier_per_hz=float(dual) / big_b if dual is not None else np.nan,
            solver="cvxpy",
        )

    def _solve(self, problem: JointProblem) -> str:
        """Set the parameters for ``problem`` (padded to capacity) and solve down the tolerance
        ladder; returns ``""`` on success, else why it failed."""
        m, big_b = problem.num_devices, problem.bandwidth_hz
        pad = self.capacity - m

        def padded(values: FloatArray, fill: float) -> FloatArray:
            return np.concatenate([values, np.full(pad, fill)])

        c = problem.upload_bits / big_b
        # keep <= (alpha - L0 / r) / (A + L / r), alpha = T - A0: rho >= (1 - alpha / A) +
        # (alpha / A + L0 / L) / (kappa q + 1); alpha / A = T / A in the linear model (A0 = L0 = 0)
        ratio = problem.keep_budget_s / problem.compute_latency_s
        self.snr.value = padded(problem.snr_bandwidth_hz / big_b, 1.0)
        self.kappa.value = padded(problem.compute_latency_s / c, 1.0)
        self.theta.value = padded(ratio + problem.fixed_bits / problem.upload_bits, 0.0)
        self.offset.value = padded(1.0 - ratio, 0.0)
        self.weight.value = padded(problem.weight, 0.0)
        # Inactive slots stay interior (x free in [0, 1], outside the budget): pinning them at
        # x = 0 puts them on the exponential cone's boundary, where CLARABEL stalls.
        self.active.value = padded(np.ones(m), 0.0)
        self.rho_max.value = problem.rho_max
        reason = ""
        ladder = CLARABEL_TOLERANCE_LADDER if self.solver == "CLARABEL" else (None,)
        for tol in ladder:
            options = {} if tol is None else {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "may be inaccurate": handled below
                    self.problem.solve(solver=self.solver, **options)
                self.solves += 1
                status = self.problem.status
                if status == cp.OPTIMAL and self.x.value is not None and self.rho.value is not None:
                    return ""
                reason = f"cvxpy {self.solver} status {status}"
            except cp.SolverError as err:
                reason = f"cvxpy {self.solver} SolverError: {err}"
        return reason

    def solve(
        self,
        problem: JointProblem,
        metric: StragglerMetric = "bandwidth-per-weight",
        search: SearchMode = "local",
    ) -> Allocation:
        """The joint problem: the nested-set selection with cvxpy on each candidate set."""
        guard = problem.snr_bandwidth_hz / problem.bandwidth_hz < self.snr_floor
        b_min = np.where(guard, np.inf, min_bandwidth_by_bisection(problem, problem.rho_max))
        return select_nested(
            problem, self.allocate_fixed, b_min, metric=metric, solver="cvxpy", search=search
        )


def _repair(problem: JointProblem, bandwidth: FloatArray, b_min: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Make an interior-point answer exactly feasible: every device at least its minimum bandwidth
    (taken from the others' surplus), the budget met, and rho the least the latency allows."""
    budget = problem.bandwidth_hz
    bandwidth = np.maximum(bandwidth, b_min)
    surplus = bandwidth.sum() - budget
    if surplus > 0:
        above = bandwidth - b_min
        bandwidth = b_min + above * max(0.0, 1.0 - surplus / max(above.sum(), 1e-300))
    needed = 1.0 - keep_given_rate(problem, rate_bps(bandwidth, problem.snr_bandwidth_hz))
    # For the solver's b the objective is increasing in rho, so the least rho the latency allows is
    # optimal: replacing the interior-point rho by it removes CLARABEL's residual (rho ~ 1e-12 where
    # the optimum is 0, which is all of J when the budget does not bind) in both directions.
    return bandwidth, np.clip(needed, 0.0, problem.rho_max)
