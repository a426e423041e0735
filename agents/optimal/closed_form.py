"""Closed-form / KKT solver of the joint problem (derivation in :mod:`agents.optimal.problem`).

* :func:`bandwidth_for_rate`: least b with ``b log2(1 + a/b) = R``, by Lambert W (branch -1) and two
  Newton polishing steps.
* :func:`pruning_given_bandwidth`: ``rho = max(0, 1 - T / (A + L / r(b)))``, clipped to rho_max.
* :func:`allocate_fixed` / :class:`FixedSetSolver`: for a fixed set, the KKT point in b by
  safeguarded Newton on log lambda (the multiplier of the bandwidth budget), bracketed by the
  marginal values of bandwidth at the devices' bounds; for each lambda every device solves
  ``w f'(b) + lambda = 0`` on ``[b_min, b0]`` by vectorised, safeguarded Newton in log-log
  coordinates, warm-started from its last point.
* :func:`solve_closed_form`: threshold-based selection over nested sets (:mod:`.selection`), all
  candidate sets sharing one :class:`FixedSetSolver` (Lambert W bounds computed once, multiplier and
  per-device points carried from one set to the next).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import lambertw

from agents.optimal.problem import (
    LN2,
    Allocation,
    FloatArray,
    JointProblem,
    keep_given_rate,
    rate_bps,
    required_rate_bps,
)
from agents.optimal.selection import StragglerMetric, select_nested_members


def _dlog(x: FloatArray) -> FloatArray:
    """``ln(1 + x) - x / (1 + x)`` without cancellation for small x (it is ~ x^2 / 2 there)."""
    small = x < 1e-4
    xs = np.where(small, x, 0.0)
    series = xs**2 / 2 - 2 * xs**3 / 3 + 3 * xs**4 / 4
    xl = np.where(small, 1.0, x)
    return np.where(small, series, np.log1p(xl) - xl / (1 + xl))


def bandwidth_for_rate(rate_bps_needed: ArrayLike, snr_bandwidth_hz: ArrayLike) -> FloatArray:
    """Least bandwidth (Hz) at which ``b log2(1 + a / b)`` reaches the required rate.

    With ``c = R ln2 / a`` and ``u = ln(1 + a/b)`` the equation becomes ``u / (e^u - 1) = c``, i.e.
    ``-(u + c) e^{-(u + c)} = -c e^{-c}``, so ``u = -W_{-1}(-c e^{-c}) - c`` and ``b = R ln2 / u``.
    Solvable iff ``R < a / ln2`` (the rate's limit as b grows); ``inf`` otherwise, 0 for R = 0.

    Args:
        rate_bps_needed: Required rate R, bit/s, >= 0.
        snr_bandwidth_hz: ``a = p g / N0``, Hz, > 0.
    """
    rate, a = np.broadcast_arrays(
        np.asarray(rate_bps_needed, dtype=np.float64), np.asarray(snr_bandwidth_hz, dtype=np.float64)
    )
    c = rate * LN2 / a
    ok = (c > 0) & (c < 1)
    cs = np.where(ok, np.maximum(c, 1e-300), 0.5)
    u = np.real(-lambertw(-cs * np.exp(-cs), k=-1)) - cs
    b = np.where(ok & (u > 0), rate * LN2 / np.where(u > 0, u, 1.0), np.inf)
    # Near c -> 1 the branch point makes W inaccurate; Newton on the concave h(b) = b ln(1+a/b) - R ln2
    # converges monotonically from the right, so polish (and keep the iterate finite and positive).
    for _ in range(3):
        bb = np.where(np.isfinite(b) & (b > 0), b, 1.0)
        x = a / bb
        h = bb * np.log1p(x) - rate * LN2
        step = h / np.maximum(_dlog(x), 1e-300)
        b = np.where(np.isfinite(b) & (b > 0), np.maximum(bb - step, bb * 1e-3), b)
    return np.where(rate <= 0, 0.0, np.where(ok, b, np.inf))


def min_bandwidth_hz(problem: JointProblem, pruning_rate: ArrayLike) -> FloatArray:
    """Least bandwidth meeting the deadline at pruning rate rho (inf if no bandwidth does)."""
    needed = required_rate_bps(problem, pruning_rate)
    return np.where(
        np.isfinite(needed),
        bandwidth_for_rate(np.where(np.isfinite(needed), needed, 0.0), problem.snr_bandwidth_hz),
        np.inf,
    )


def pruning_given_bandwidth(problem: JointProblem, bandwidth_hz: ArrayLike) -> FloatArray:
    """The least feasible rho for bandwidth b: ``max(0, 1 - T / (A + L / r(b)))`` in the linear model
    (:func:`agents.optimal.problem.keep_given_rate` with fixed parts), capped at rho_max."""
    keep = keep_given_rate(problem, rate_bps(bandwidth_hz, problem.snr_bandwidth_hz))
    return np.clip(1.0 - keep, 0.0, problem.rho_max)


def _log_price_curve(
    a: FloatArray, big_a: FloatArray, big_l: FloatArray, log_wtl: FloatArray, log_b: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``log psi(b)`` and its slope ``d log psi / d log b`` for ``psi(b) = -w f'(b)``.

    ``psi = w T L r'(b) / (A r(b) + L)^2`` is the marginal value of bandwidth (objective per Hz); it is
    positive and decreasing in b (f is convex). In log-log coordinates it is close to linear, so
    Newton on ``log psi(b) = log lambda`` in log b converges in a few steps from any warm start.
    ``log_wtl = log(w T L)``; the slope is ``-q^2 / d - 2 A b r' / (A r + L)`` with ``q = x / (1 + x)``,
    ``d = ln(1 + x) - q``, ``x = a / b``, always < 0.
    """
    b = np.exp(log_b)
    x = a / b
    l1 = np.log1p(x)
    q = x / (1.0 + x)
    d = l1 - q
    small = x < 1e-4
    if small.any():  # cancellation for b >> a (deep fades); the series is ~ x^2 / 2 there
        xs = x[small]
        d[small] = xs**2 / 2 - 2 * xs**3 / 3 + 3 * xs**4 / 4
    r1 = d / LN2
    den = big_a * (b * l1 / LN2) + big_l
    log_psi = log_wtl + np.log(r1) - 2.0 * np.log(den)
    slope = -(q * q) / d - 2.0 * big_a * b * r1 / den
    return log_psi, slope


#: Inner (per-device Newton in log b) and outer (multiplier) stopping rules. Relative 1e-14 in b and
#: 1e-13 B in the budget are at the round-off of a 1,000-term sum; far below the 1e-6 agreement target.
_STEP_TOL = 1e-14
_BUDGET_TOL = 1e-13
_MAX_INNER = 60
_MAX_OUTER = 200


class FixedSetSolver:
    """The KKT solver of :func:`allocate_fixed` for many candidate sets of one problem.

    Everything that does not depend on the set is computed once per problem: the Lambert W
    bandwidths ``b_min`` (deadline met at rho_max) and ``b0`` (met unpruned), the bracket
    ``[lo, hi] = [min(b_min, hi), min(b0, B)]`` of each device and the marginal value of bandwidth at
    both ends. For a set S the multiplier lambda solves ``F(lambda) = sum_{k in S} b_k(lambda) - B =
    0`` with ``b_k(lambda) = clip(psi_k^{-1}(lambda), lo_k, hi_k)``; F is continuous and decreasing,
    and bracketed by ``[min_S psi(hi), max_S psi(lo)]``. The root is found by Newton on log lambda
    (``dF / d log lambda = sum_interior b_k / slope_k``, exact from the per-device slopes),
    safeguarded by bisection of that bracket. Each device keeps its last Newton point, so a new
    lambda -- of the same set or of the next candidate set -- starts from a first-order prediction
    and needs one or two inner steps; the last multiplier warm-starts the next set (lambda grows with
    the set, so neighbouring prefixes have neighbouring multipliers). All per-device work is
    vectorised over the set.

    Args:
        problem: The joint problem (all devices; sets are index arrays into it).
    """

    def __init__(self, problem: JointProblem) -> None:
        self.problem = problem
        budget = problem.bandwidth_hz
        self.b_min = min_bandwidth_hz(problem, problem.rho_max)
        b0 = min_bandwidth_hz(problem, 0.0)
        self.b0 = b0
        self.feasible = np.isfinite(self.b_min)
        self.hi = np.minimum(b0, budget)
        self.lo = np.minimum(self.b_min, self.hi)
        w = problem.weight
        # devices whose bandwidth can move: positive weight and a non-empty bracket
        self.movable = self.feasible & (w > 0) & (self.hi > self.lo)
        self.hi_eff = np.where(self.movable, self.hi, self.lo)  # b at lambda -> 0+
        n = problem.num_devices
        self.log_wtl = np.full(n, -np.inf)
        self.log_lo = np.zeros(n)
        self.log_hi = np.zeros(n)
        self.lpsi_lo = np.full(n, -np.inf)
        self.lpsi_hi = np.full(n, -np.inf)
        mv = np.flatnonzero(self.movable)
        if mv.size:
            a, big_a, big_l = self._coefficients(mv)
            # psi = w (alpha L + L0 A) r' / (A r + L)^2 with alpha = T - A0 (= w T L r' / (A r + L)^2
            # in the linear model): the keep fraction is linear-fractional, concave, in r
            alpha = problem.keep_budget_s[mv]
            self.log_wtl[mv] = np.log(w[mv] * (alpha * big_l + problem.fixed_bits[mv] * big_a))
            self.log_lo[mv], self.log_hi[mv] = np.log(self.lo[mv]), np.log(self.hi[mv])
            self.lpsi_lo[mv] = _log_price_curve(a, big_a, big_l, self.log_wtl[mv], self.log_lo[mv])[0]
            self.lpsi_hi[mv] = _log_price_curve(a, big_a, big_l, self.log_wtl[mv], self.log_hi[mv])[0]
        # last Newton point of each device (log b, log psi there, slope there); NaN = none yet
        self.state_s = np.full(n, np.nan)
        self.state_lp = np.full(n, np.nan)
        self.state_slope = np.full(n, np.nan)
        self.last_log_price: float | None = None
        self.newton_steps = 0  # inner iterations, for profiling

    def _coefficients(self, index: NDArray[np.intp]) -> tuple[FloatArray, FloatArray, FloatArray]:
        p = self.problem
        return p.snr_bandwidth_hz[index], p.compute_latency_s[index], p.upload_bits[index]

    def _interior_bandwidth(self, index: NDArray[np.intp], log_price: float) -> tuple[FloatArray, FloatArray]:
        """``psi^{-1}(lambda)`` for devices known to be interior at ``lambda = exp(log_price)``:
        safeguarded Newton in log b; returns (b, slope)."""
        a, big_a, big_l = self._coefficients(index)
        log_wtl = self.log_wtl[index]
        s_lo, s_hi = self.log_lo[index].copy(), self.log_hi[index].copy()
        prev_s = self.state_s[index]
        have = np.isfinite(prev_s)
        # first-order prediction from the last point, else the secant through the bracket ends
        lp_lo, lp_hi = self.lpsi_lo[index], self.lpsi_hi[index]
        secant = s_lo + (log_price - lp_lo) * (s_hi - s_lo) / (lp_hi - lp_lo)
        with np.errstate(invalid="ignore"):
            predicted = prev_s + (log_price - self.state_lp[index]) / self.state_slope[index]
        s = np.clip(np.where(have, predicted, secant), s_lo, s_hi)
        scale = max(1.0, float(np.max(np.abs(s))))
        for _ in range(_MAX_INNER):
            s_eval = s
            lp, slope = _log_price_curve(a, big_a, big_l, log_wtl, s_eval)
            self.newton_steps += 1
            resid = lp - log_price  # decreasing in s
            s_lo = np.where(resid > 0, s_eval, s_lo)
            s_hi = np.where(resid < 0, s_eval, s_hi)
            newton = s_eval - resid / slope
            s = np.where((newton >= s_lo) & (newton <= s_hi), newton, 0.5 * (s_lo + s_hi))
            if float(np.max(np.abs(s - s_eval))) <= _STEP_TOL * scale:
                break
        # keep the last evaluated point: log psi and the slope there are exact
        self.state_s[index], self.state_lp[index], self.state_slope[index] = s_eval, lp, slope
        return np.exp(s), slope

    def solve(self, members: NDArray[np.intp]) -> Allocation | None:
        """The optimal (rho, b) when exactly ``members`` take part (arrays in ``members`` order);
        ``None`` if that set is infeasible."""
        p = self.problem
        budget = p.bandwidth_hz
        if not np.all(self.feasible[members]) or self.b_min[members].sum() > budget:
            return None
        lo, hi = self.lo[members], self.hi[members]
        price = 0.0
        if hi.sum() <= budget:
            bandwidth = hi.copy()
            capped = hi < self.b0[members]  # only for a device alone that cannot reach rho = 0
            if capped.any():
                idx = members[capped & self.movable[members]]
                if idx.size:
                    price = float(np.exp(np.max(self.lpsi_hi[idx])))
        elif self.hi_eff[members].sum() <= budget:
            bandwidth = self.hi_eff[members].copy()  # zero-weight devices take no more than lo
        else:
            bandwidth, price = self._solve_price(members, lo, hi)
            surplus = bandwidth.sum() - budget
            if surplus > 0:  # round-off: take it back from the devices above their minimum
                above_min = bandwidth - lo
                bandwidth = lo + above_min * max(0.0, 1.0 - surplus / max(above_min.sum(), 1e-300))
        sub = p.subset(members)
        rate = rate_bps(bandwidth, sub.snr_bandwidth_hz)
        rho = np.clip(1.0 - keep_given_rate(sub, rate), 0.0, p.rho_max)
        rho = np.where(bandwidth <= lo, p.rho_max, rho)
        return Allocation(
            selected=np.ones(members.size, dtype=bool),
            pruning_rate=rho,
            bandwidth_hz=bandwidth,
            objective=float(np.sum(p.weight[members] * rho)),
            multiplier_per_hz=price,
            solver="closed-form",
        )

    def _solve_price(
        self, members: NDArray[np.intp], lo: FloatArray, hi: FloatArray
    ) -> tuple[FloatArray, float]:
        """Root of ``F(log lambda) = sum b(lambda) - B`` (the budget binds); returns (b, lambda)."""
        budget = self.problem.bandwidth_hz
        lp_lo, lp_hi = self.lpsi_lo[members], self.lpsi_hi[members]
        movable = self.movable[members]
        # F > 0 below every device's psi(hi) (all at hi), F <= 0 above every psi(lo) (all at lo)
        u_a = float(np.min(lp_hi[movable]))
        u_b = float(np.max(lp_lo[movable]))
        tol = _BUDGET_TOL * budget

        def evaluate(u: float) -> tuple[FloatArray, float, float]:
            b = np.where(u >= lp_lo, lo, hi)
            interior = movable & (lp_hi < u) & (u < lp_lo)
            derivative = 0.0
            if interior.any():
                b_in, slope = self._interior_bandwidth(members[interior], u)
                b[interior] = b_in
                derivative = float(np.sum(b_in / slope))  # d sum b / d log lambda, < 0
            return b, float(b.sum() - budget), derivative

        u = self.last_log_price
        u = 0.5 * (u_a + u_b) if u is None or not (u_a < u < u_b) else u
        b, f, derivative = evaluate(u)
        for _ in range(_MAX_OUTER):
            if abs(f) <= tol:
                break
            if f > 0:
                u_a = u
            else:
                u_b = u
            if u_b - u_a <= 4 * np.finfo(float).eps * max(1.0, abs(u)):
                break
            newton = u - f / derivative if derivative < 0 else np.nan
            # Newton inside the bracket, else bisection (F is monotone but not convex)
            u_next = newton if u_a < newton < u_b else 0.5 * (u_a + u_b)
            u = float(u_next)
            b, f, derivative = evaluate(u)
        self.last_log_price = u
        return b, float(np.exp(u))


def allocate_fixed(problem: JointProblem) -> Allocation | None:
    """The optimal (rho, b) when every device of ``problem`` takes part; ``None`` if infeasible.

    Solves the convex problem in b of :mod:`agents.optimal.problem` (point 2) by its KKT conditions:
    safeguarded Newton on log lambda for ``sum_k b_k(lambda) = B`` (see :class:`FixedSetSolver`).
    """
    return FixedSetSolver(problem).solve(np.arange(problem.num_devices))


def solve_closed_form(problem: JointProblem, metric: StragglerMetric = "bandwidth-per-weight") -> Allocation:
    """The joint problem: nested-set selection, each candidate set solved by one shared
    :class:`FixedSetSolver` (set-independent quantities computed once, warm starts across sets)."""
    fixed = FixedSetSolver(problem)
    return select_nested_members(problem, fixed.solve, fixed.b_min, metric=metric, solver="closed-form")


__all__ = [
    "FixedSetSolver",
    "allocate_fixed",
    "bandwidth_for_rate",
    "min_bandwidth_hz",
    "pruning_given_bandwidth",
    "solve_closed_form",
]
