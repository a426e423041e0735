"""Closed-form / KKT solver of the joint problem (derivation in :mod:`agents.optimal.problem`).

* :func:`bandwidth_for_rate`: least b with ``b log2(1 + a/b) = R``, by Lambert W (branch -1) and two
  Newton polishing steps.
* :func:`pruning_given_bandwidth`: ``rho = max(0, 1 - T / (A + L / r(b)))``, clipped to rho_max.
* :func:`allocate_fixed`: for a fixed set, the KKT point in b by bracketed root finding (Brent's
  safeguarded bisection) on the multiplier lambda of the bandwidth budget; for each lambda every
  device solves ``w f'(b) + lambda = 0`` on ``[b_min, b0]`` by safeguarded Newton in log b.
* :func:`solve_closed_form`: threshold-based selection over nested sets (:mod:`.selection`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import lambertw

from agents.optimal.problem import LN2, Allocation, FloatArray, JointProblem, rate_bps
from agents.optimal.selection import StragglerMetric, select_nested


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
    keep = 1.0 - np.asarray(pruning_rate, dtype=np.float64)
    slack = problem.budget_s - keep * problem.compute_latency_s
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.where(slack > 0, keep * problem.upload_bits / np.where(slack > 0, slack, 1.0), np.inf)
    return np.where(
        np.isfinite(needed),
        bandwidth_for_rate(np.where(np.isfinite(needed), needed, 0.0), problem.snr_bandwidth_hz),
        np.inf,
    )


def pruning_given_bandwidth(problem: JointProblem, bandwidth_hz: ArrayLike) -> FloatArray:
    """The least feasible rho for bandwidth b: ``max(0, 1 - T / (A + L / r(b)))``, capped at rho_max."""
    rate = rate_bps(bandwidth_hz, problem.snr_bandwidth_hz)
    with np.errstate(divide="ignore"):
        total = problem.compute_latency_s + problem.upload_bits / rate
    return np.clip(1.0 - problem.budget_s / total, 0.0, problem.rho_max)


def _derivatives(problem: JointProblem, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """f'(b) and f''(b) of ``f(b) = 1 - T / (A + L / r(b))``."""
    a, big_a, big_l, t = (
        problem.snr_bandwidth_hz,
        problem.compute_latency_s,
        problem.upload_bits,
        problem.budget_s,
    )
    x = a / b
    r = b * np.log1p(x) / LN2
    r1 = _dlog(x) / LN2
    r2 = -(x**2) / (b * LN2 * (1 + x) ** 2)
    den = big_a * r + big_l
    f1 = -t * big_l * r1 / den**2
    f2 = -t * big_l * (r2 * den - 2 * big_a * r1**2) / den**3
    return f1, f2


def _bandwidth_at_price(
    problem: JointProblem,
    price: float,
    lo: FloatArray,
    hi: FloatArray,
    start_log_b: FloatArray | None = None,
    iterations: int = 100,
) -> FloatArray:
    """Each device's ``argmin_{lo <= b <= hi} w f(b) + price b``.

    ``w f'(b) + price`` is increasing in b (f is convex), so the minimiser is ``lo``, ``hi`` or its
    root; the root is found by Newton in log b, safeguarded by bisection of the bracket.
    """
    w = problem.weight
    g_lo = w * _derivatives(problem, lo)[0] + price
    g_hi = w * _derivatives(problem, hi)[0] + price
    active = (w > 0) & (hi > lo) & (g_lo < 0) & (g_hi > 0)
    result = np.where((w == 0) | (g_lo >= 0), lo, hi)
    if not active.any():
        return result
    sub = problem.subset(np.flatnonzero(active))
    sw = sub.weight
    s_lo, s_hi = np.log(lo[active]), np.log(hi[active])
    s = 0.5 * (s_lo + s_hi) if start_log_b is None else np.clip(start_log_b[active], s_lo, s_hi)
    for _ in range(iterations):
        b = np.exp(s)
        f1, f2 = _derivatives(sub, b)
        g = sw * f1 + price
        s_lo = np.where(g < 0, s, s_lo)
        s_hi = np.where(g > 0, s, s_hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = s - g / (sw * f2 * b)
        inside = (newton >= s_lo) & (newton <= s_hi) & np.isfinite(newton)
        s_new = np.where(inside, newton, 0.5 * (s_lo + s_hi))
        step = float(np.max(np.abs(s_new - s)))
        s = s_new
        if step < 1e-13:
            break
    result[active] = np.clip(np.exp(s), lo[active], hi[active])
    return result


class _PriceCurve:
    """``b(price)`` with memory: b is decreasing in price, so earlier evaluations bracket new ones."""

    def __init__(self, problem: JointProblem, lo: FloatArray, hi: FloatArray) -> None:
        self.problem, self.lo, self.hi = problem, lo, hi
        self.points: list[tuple[float, FloatArray]] = []

    def __call__(self, price: float) -> FloatArray:
        below = [pt for pt in self.points if pt[0] < price]
        above = [pt for pt in self.points if pt[0] > price]
        lo = max(above, key=lambda pt: -pt[0])[1] if above else self.lo
        hi = min(below, key=lambda pt: -pt[0])[1] if below else self.hi
        lo = np.minimum(lo, hi)
        start = None
        if above and below:
            p_a, p_b = min(pt[0] for pt in above), max(pt[0] for pt in below)
            t = (np.log(price) - np.log(p_b)) / (np.log(p_a) - np.log(p_b)) if p_b > 0 else 0.5
            start = (1 - t) * np.log(hi) + t * np.log(lo)
        b = _bandwidth_at_price(self.problem, price, lo, hi, start)
        self.points.append((price, b))
        return b


def allocate_fixed(problem: JointProblem) -> Allocation | None:
    """The optimal (rho, b) when every device of ``problem`` takes part; ``None`` if infeasible.

    Solves the convex problem in b of :mod:`agents.optimal.problem` (point 2) by its KKT conditions:
    Brent's method (bisection-safeguarded) on log lambda for ``sum_k b_k(lambda) = B``.
    """
    b_min = min_bandwidth_hz(problem, problem.rho_max)
    if not np.all(np.isfinite(b_min)) or b_min.sum() > problem.bandwidth_hz:
        return None
    budget = problem.bandwidth_hz
    b0 = min_bandwidth_hz(problem, 0.0)
    hi = np.minimum(b0, budget)
    lo = np.minimum(b_min, hi)
    if hi.sum() <= budget:
        bandwidth, price = hi.copy(), 0.0
        capped = hi < b0  # only possible for a device alone in the problem that cannot reach rho = 0
        if capped.any():
            price = float(np.max(-problem.weight[capped] * _derivatives(problem, hi[capped])[0]))
    else:
        curve = _PriceCurve(problem, lo, hi)
        price_hi = float(np.max(-problem.weight * _derivatives(problem, lo)[0], initial=0.0))
        # b(price) = lo at price_hi; walk down in decades until the budget is exceeded
        price_lo = price_hi
        while True:
            price_lo *= 1e-3
            if curve(price_lo).sum() > budget or price_lo < 1e-300:
                break
        log_price = brentq(
            lambda x: float(curve(float(np.exp(x))).sum() - budget),
            np.log(price_lo),
            np.log(price_hi),
            xtol=1e-15,
            rtol=4 * np.finfo(float).eps,
            maxiter=200,
        )
        price = float(np.exp(log_price))
        bandwidth = curve(price)
        surplus = bandwidth.sum() - budget
        if surplus > 0:  # round-off: take it back from the devices above their minimum
            above_min = bandwidth - lo
            bandwidth = lo + above_min * max(0.0, 1.0 - surplus / max(above_min.sum(), 1e-300))
    rho = np.where(bandwidth <= lo, problem.rho_max, pruning_given_bandwidth(problem, bandwidth))
    n = problem.num_devices
    return Allocation(
        selected=np.ones(n, dtype=bool),
        pruning_rate=rho,
        bandwidth_hz=bandwidth,
        objective=float(np.sum(problem.weight * rho)),
        multiplier_per_hz=price,
        solver="closed-form",
    )


def solve_closed_form(problem: JointProblem, metric: StragglerMetric = "bandwidth-per-weight") -> Allocation:
    """The joint problem: nested-set selection with :func:`allocate_fixed` on each candidate set."""
    b_min = min_bandwidth_hz(problem, problem.rho_max)
    return select_nested(problem, allocate_fixed, b_min, metric=metric, solver="closed-form")


__all__ = [
    "allocate_fixed",
    "bandwidth_for_rate",
    "min_bandwidth_hz",
    "pruning_given_bandwidth",
    "solve_closed_form",
]
