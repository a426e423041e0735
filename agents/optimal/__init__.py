"""Analytic optimal pruning, bandwidth and device selection: the joint problem, its closed-form/KKT
solver and an independent cvxpy formulation. See :mod:`agents.optimal.problem` for the maths."""

from agents.optimal.closed_form import (
    FixedSetSolver,
    allocate_fixed,
    bandwidth_for_rate,
    min_bandwidth_hz,
    pruning_given_bandwidth,
    solve_closed_form,
)
from agents.optimal.problem import (
    Allocation,
    JointProblem,
    constraint_violation,
    latency_s,
    objective,
    rate_bps,
)
from agents.optimal.selection import select_nested, select_nested_members, straggler_order

__all__ = [
    "Allocation",
    "FixedSetSolver",
    "JointProblem",
    "allocate_fixed",
    "bandwidth_for_rate",
    "constraint_violation",
    "latency_s",
    "min_bandwidth_hz",
    "objective",
    "pruning_given_bandwidth",
    "rate_bps",
    "select_nested",
    "select_nested_members",
    "solve_closed_form",
    "straggler_order",
]
