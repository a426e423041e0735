"""Threshold-based device selection over nested sets, shared by every solver of the joint problem.

Devices whose minimum bandwidth at rho_max is infinite or above B cannot take part at all. The rest
are ordered by a straggler metric; the candidate sets are the prefixes of that order whose minimum
bandwidths fit into B (the "threshold": a device is in iff its metric is below the cut). Each prefix
is solved by the given fixed-set solver; the best total objective (allocation term + gamma x weight
of the excluded devices) wins. The scan runs from the longest feasible prefix down and stops once
the exclusion term alone cannot beat the best objective found, which is exact over the family
because the allocation term is never negative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from agents.optimal.problem import Allocation, FloatArray, JointProblem, empty_allocation

StragglerMetric = Literal["bandwidth-per-weight", "min-bandwidth"]
SearchMode = Literal["local", "exhaustive"]
FixedSolver = Callable[[JointProblem], Allocation | None]
#: Solves the set given by sorted device indices; arrays in that order (``None``: infeasible set).
MemberSolver = Callable[[NDArray[np.intp]], Allocation | None]


def straggler_order(
    problem: JointProblem, min_bandwidth_hz: FloatArray, metric: StragglerMetric
) -> NDArray[np.intp]:
    """Indices of the feasible devices, best first (ties by index, so equal devices stay together)."""
    feasible = np.isfinite(min_bandwidth_hz) & (min_bandwidth_hz <= problem.bandwidth_hz)
    if metric == "bandwidth-per-weight":
        with np.errstate(divide="ignore"):
            score = np.where(problem.weight > 0, min_bandwidth_hz / problem.weight, np.inf)
        # zero-weight devices go last, cheapest first
        key = np.where(np.isfinite(score), score, np.inf)
        order = np.lexsort((np.arange(problem.num_devices), min_bandwidth_hz, ~np.isfinite(key), key))
    elif metric == "min-bandwidth":
        order = np.lexsort((np.arange(problem.num_devices), min_bandwidth_hz))
    else:
        raise ValueError(f"metric must be 'bandwidth-per-weight' or 'min-bandwidth', got {metric!r}")
    return order[feasible[order]]


def select_nested(
    problem: JointProblem,
    solve_fixed: FixedSolver,
    min_bandwidth_hz: FloatArray,
    metric: StragglerMetric = "bandwidth-per-weight",
    solver: str = "closed-form",
    search: SearchMode = "local",
) -> Allocation:
    """Best prefix of the straggler order, each prefix solved by ``solve_fixed`` on the restricted
    problem (see :func:`select_nested_members`, which this wraps)."""
    return select_nested_members(
        problem,
        lambda members: solve_fixed(problem.subset(members)),
        min_bandwidth_hz,
        metric=metric,
        solver=solver,
        search=search,
    )


def select_nested_members(
    problem: JointProblem,
    solve_members: MemberSolver,
    min_bandwidth_hz: FloatArray,
    metric: StragglerMetric = "bandwidth-per-weight",
    solver: str = "closed-form",
    search: SearchMode = "local",
) -> Allocation:
    """Best prefix of the straggler order, each prefix solved by ``solve_members``.

    ``search="exhaustive"`` scans prefixes from the longest feasible one down, stopping only when
    the exclusion term alone exceeds the best objective (exact over the nested family; up to N
    solves). ``search="local"`` (default) jumps by the first-order test below and then descends by
    galloping steps (1, 2, 4, ... while J falls, restarted from each new best) to a local
    minimum of J over the prefix length (a few solves; equal to the exhaustive answer on every
    instance of the test suite). The test: removing device k from the
    current set saves about ``gamma w_k`` of exclusion cost and frees ``b_k`` worth ``lambda b_k``
    to the others (envelope theorem), so k is not worth its bandwidth if
    ``w_k rho_k + lambda b_k >= gamma w_k``.

    Args:
        problem: The joint problem.
        solve_members: Solves the problem restricted to a set (sorted device indices) with every
            device of it taking part; returns ``None`` if that set is infeasible. A solver may keep
            state between calls (warm starts): prefixes are evaluated in a local order.
        min_bandwidth_hz: (N,) least bandwidth meeting the deadline at rho_max (inf if none does),
            computed by the caller's own method.
        metric: Straggler metric ordering the devices.
        solver: Name recorded in the result.
        search: "local" or "exhaustive".
    """
    if search not in ("local", "exhaustive"):
        raise ValueError(f"search must be 'local' or 'exhaustive', got {search!r}")
    order = straggler_order(problem, min_bandwidth_hz, metric)
    fits = np.cumsum(min_bandwidth_hz[order]) <= problem.bandwidth_hz
    m_max = int(np.flatnonzero(fits)[-1]) + 1 if fits.any() else 0
    prefixes = _Prefixes(problem, solve_members, order, solver)
    if search == "exhaustive":
        best_m = _scan_exhaustive(prefixes, m_max)
    elif m_max > 0:
        best_m = _gallop_to_local_minimum(prefixes, _jump_by_first_order_test(prefixes, m_max), m_max)
        if prefixes.evaluate(best_m).objective >= prefixes.results[0].objective:
            best_m = 0
    else:
        best_m = 0
    best = prefixes.results[best_m]
    if prefixes.reasons:
        best = Allocation(**{**best.__dict__, "fallback_reason": "; ".join(sorted(set(prefixes.reasons)))})
    return best


class _Prefixes:
    """The prefixes of the straggler order, each solved once (memoised) with its exclusion cost added."""

    def __init__(
        self, problem: JointProblem, solve_members: MemberSolver, order: NDArray[np.intp], solver: str
    ) -> None:
        self.problem, self.solve_members, self.order, self.solver = problem, solve_members, order, solver
        self.total_weight = float(problem.weight.sum())
        self.prefix_weight = np.concatenate([[0.0], np.cumsum(problem.weight[order])])
        self.results: dict[int, Allocation] = {0: empty_allocation(problem, solver)}
        self.reasons: list[str] = []

    def exclusion_cost(self, m: int) -> float:
        """gamma x the weight of the devices outside the first ``m``."""
        return self.problem.exclusion_penalty * max(0.0, self.total_weight - float(self.prefix_weight[m]))

    def evaluate(self, m: int) -> Allocation:
        """The allocation of the first ``m`` devices (objective inf if that set is infeasible)."""
        if m in self.results:
            return self.results[m]
        problem, n = self.problem, self.problem.num_devices
        members = np.sort(self.order[:m])
        sub = self.solve_members(members)
        if sub is None:
            empty = empty_allocation(problem, self.solver)
            self.results[m] = Allocation(**{**empty.__dict__, "objective": np.inf})
            return self.results[m]
        if sub.fallback_reason:
            self.reasons.append(sub.fallback_reason)
        selected = np.zeros(n, dtype=bool)
        selected[members] = True
        rho, bandwidth = np.zeros(n), np.zeros(n)
        rho[members], bandwidth[members] = sub.pruning_rate, sub.bandwidth_hz
        self.results[m] = Allocation(
            selected=selected,
            pruning_rate=rho,
            bandwidth_hz=bandwidth,
            objective=float(sub.objective) + self.exclusion_cost(m),
            multiplier_per_hz=sub.multiplier_per_hz,
            solver=sub.solver,
        )
        return self.results[m]


def _scan_exhaustive(prefixes: _Prefixes, m_max: int) -> int:
    """Longest prefix down, until the exclusion term alone cannot beat the best objective found."""
    best_m = 0
    for m in range(m_max, 0, -1):
        if prefixes.exclusion_cost(m) >= prefixes.results[best_m].objective:
            break
        if prefixes.evaluate(m).objective < prefixes.results[best_m].objective:
            best_m = m
    return best_m


def _jump_by_first_order_test(prefixes: _Prefixes, m_max: int) -> int:
    """From the longest feasible prefix, drop half the devices not worth their bandwidth while J falls."""
    gamma, w, order = prefixes.problem.exclusion_penalty, prefixes.problem.weight, prefixes.order
    best_m = m_max
    while True:
        current = prefixes.evaluate(best_m)
        price = current.multiplier_per_hz if np.isfinite(current.multiplier_per_hz) else 0.0
        members = order[:best_m]
        not_worth = w[members] * current.pruning_rate[members] + price * current.bandwidth_hz[
            members
        ] >= gamma * w[members] * (1 - 1e-12)
        drop = int(not_worth.sum())
        if drop == 0 or best_m == 1:
            return best_m
        candidate = max(1, best_m - max(1, drop // 2))
        if prefixes.evaluate(candidate).objective >= current.objective:
            return best_m
        best_m = candidate


def _gallop_to_local_minimum(prefixes: _Prefixes, best_m: int, m_max: int) -> int:
    """Descend from prefix length ``best_m`` to a local minimum of J over +-1, galloping."""

    def objective(m: int) -> float:
        return prefixes.evaluate(m).objective

    while True:
        neighbours = [m for m in (best_m - 1, best_m + 1) if 1 <= m <= m_max]
        better = [m for m in neighbours if objective(m) < objective(best_m)]
        if not better:
            return best_m
        # Gallop in the improving direction (steps 1, 2, 4, ...) while J keeps falling: the
        # jump above can overshoot by hundreds of devices at N = 1,000, and single steps back
        # cost one solve each. The loop still ends only at a local minimum over +-1.
        step_m = min(better, key=objective)
        direction, stride = step_m - best_m, 2
        best_m = step_m
        while 1 <= best_m + direction * stride <= m_max:
            candidate = best_m + direction * stride
            if objective(candidate) >= objective(best_m):
                break
            best_m, stride = candidate, stride * 2
