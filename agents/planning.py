"""Planner = world: the joint problem built with the costs the simulator will charge.

The optimisers of :mod:`agents.optimisers` plan a round on the :class:`~fedsimenv.view.SystemView`.
Four things make their plan the world's (docs/optimisation.md):

* **Exact costs.** The view carries the exact FLOPs and upload bits of the coming round's model on a
  grid of pruning rates (:class:`~fedsimenv.view.CostCurve`: the scenario's pruning method, with an
  unstructured mask's bit per prunable weight). The closed-form / cvxpy solvers need costs affine in
  the keep fraction ``1 - rho``; :func:`affine_upper_bound` fits the least-area line above the
  curve's step upper bound (a non-increasing cost between two grid points is at most its value at
  the left one), so any rho the solver returns costs at most what it planned.
  :func:`tighten_to_grid` then lowers each device's rho to the least grid rate whose *exact* cost
  meets the deadline with the bandwidth it got, where that is lower.
* **The downlink of the selected set.** The broadcast runs at the weakest *selected* device's rate.
  :func:`solve_with_consistent_downlink` starts from the largest broadcast time over the candidates
  (always safe) and re-solves with the candidates whose broadcast is no longer than that of the set
  just selected, until the set's own broadcast time is the one planned (a fixed point; the objective
  never rises, so it ends in at most N solves, usually 2).
* **Pruned devices' own downloads.** Where the trainer sends a pruned device its own model
  (:attr:`~fedsimenv.view.CostCurve.download_bits`), its download is the set's broadcast time times
  the curve's download ratio, bounded like the compute and folded into it (:func:`joint_problem`);
  the grid checks use the exact ratio (:func:`grid_latency_s`).
* **What a device can know of its channel** (:attr:`SystemView.planning_gain_linear`): the snapshot
  where the channel is static within a round, the fading's geometric mean over the large-scale gain
  where fading is redrawn within it.

Margins against float32 action encoding: the plan uses ``1 - BANDWIDTH_MARGIN`` of the band (the
decoded shares, renormalised to B, are then never below plan) and sends every positive rho raised by
``RHO_MARGIN`` (a decoded rho is never below plan, and costs are non-increasing in rho).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog

from agents.optimal.problem import Allocation, FloatArray, JointProblem, rate_bps
from fedsimenv.view import CostCurve, SystemView, linear_cost_curve

#: Relative share of the band a plan leaves unused (absorbs float32 rounding of the action).
BANDWIDTH_MARGIN = 1e-5
#: Added to every positive planned rho before encoding (float32 rounding of the action).
RHO_MARGIN = 1e-6

Solver = Callable[[JointProblem], Allocation]


@dataclass(frozen=True)
class AffineCost:
    """Cost relative to the unpruned model as ``fixed + per_keep (1 - rho)``, both >= 0."""

    fixed: float
    per_keep: float

    def __call__(self, pruning_rate: FloatArray | float) -> FloatArray:
        return np.asarray(self.fixed + self.per_keep * (1.0 - np.asarray(pruning_rate, dtype=np.float64)))


def step_upper_points(pruning_rate: FloatArray, ratio: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Points a line decreasing in rho must lie above to bound the curve everywhere on ``[0, rho_max]``.

    Entry 0 is rho = 0 (exact); from entry 1 (rho = 0+) on the curve is taken non-increasing (a
    running maximum from the right enforces it), so on ``[g_j, g_{j+1})`` it is at most its value at
    ``g_j``: a line through ``(g_{j+1}, c_j)`` is above it there.
    """
    rho = np.asarray(pruning_rate, dtype=np.float64)
    c = np.maximum.accumulate(np.asarray(ratio, dtype=np.float64)[::-1])[::-1]
    c = np.concatenate([[ratio[0]], c[1:]])
    xs = np.concatenate([[rho[0], rho[1]], rho[2:], [rho[-1]]])
    ys = np.concatenate([[c[0], c[1]], c[1:-1], [c[-1]]])
    return xs, ys


def affine_upper_bound(pruning_rate: FloatArray, ratio: FloatArray) -> AffineCost:
    """The least-area ``fixed + per_keep (1 - rho)`` above :func:`step_upper_points` (a 2-variable LP)."""
    xs, ys = step_upper_points(pruning_rate, ratio)
    keep = 1.0 - xs
    grid_keep = 1.0 - np.asarray(pruning_rate, dtype=np.float64)
    result = linprog(
        c=[len(grid_keep), float(grid_keep.sum())],
        A_ub=-np.column_stack([np.ones_like(keep), keep]),
        b_ub=-ys,
        bounds=[(0, None), (0, None)],
        method="highs",
    )
    if not result.success:  # cannot happen for finite points (a constant line is feasible)
        return AffineCost(float(ys.max()), 0.0)
    fixed, per_keep = (float(v) for v in result.x)
    # round-off of the LP: lift the line so that every point is covered exactly
    fixed += max(0.0, float(np.max(ys - (fixed + per_keep * keep))))
    return AffineCost(fixed, per_keep)


@dataclass(frozen=True)
class CostModel:
    """The planner's affine cost model and the exact curve it bounds."""

    curve: CostCurve
    flops: AffineCost
    bits: AffineCost
    #: Bound of the download relative to the broadcast; ``None`` where every device gets the broadcast.
    download: AffineCost | None = None

    @classmethod
    def of(cls, view: SystemView) -> CostModel:
        curve = view.cost_curve if view.cost_curve is not None else linear_cost_curve(view.rho_max)
        return cls(
            curve,
            affine_upper_bound(curve.pruning_rate, curve.flops_ratio),
            affine_upper_bound(curve.pruning_rate, curve.bits_ratio),
            None
            if curve.download_bits is None
            else affine_upper_bound(curve.pruning_rate, curve.download_ratio),
        )


def grid_latency_s(
    costs: CostModel, compute_s: FloatArray, bits: FloatArray, rate_bps: FloatArray, downlink_time_s: float
) -> FloatArray:
    """(n, K) exact latency of each device at each grid rate: its download (the broadcast time
    ``downlink_time_s`` scaled by the download ratio), compute and upload at ``rate_bps``."""
    curve = costs.curve
    rate = np.asarray(rate_bps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
        return np.asarray(
            downlink_time_s * curve.download_ratio[None, :]
            + compute_s[:, None] * curve.flops_ratio[None, :]
            + bits[:, None] * curve.bits_ratio[None, :] * inv[:, None]
        )


def joint_problem(
    view: SystemView,
    candidates: NDArray[np.intp],
    deadline_s: float,
    downlink_time_s: float,
    exclusion_penalty: float,
    costs: CostModel,
) -> JointProblem:
    """The joint problem over ``candidates`` with the affine upper bound of the exact costs.

    Where pruned devices download their own model (:attr:`CostModel.download`), the download
    ``downlink_time_s x ratio(rho)`` is bounded like the compute and folded into it (the problem's
    own broadcast time is then 0)."""
    weight = view.num_samples / view.num_samples.sum()
    compute = view.compute_latency_s[candidates]
    bits = view.upload_bits[candidates]
    tiny = 1e-12  # the solver needs a positive prunable part; a zero slope means "no saving"
    compute_slope, compute_fixed = compute * costs.flops.per_keep, compute * costs.flops.fixed
    if costs.download is not None:
        compute_slope = compute_slope + downlink_time_s * costs.download.per_keep
        compute_fixed = compute_fixed + downlink_time_s * costs.download.fixed
        downlink_time_s = 0.0
    return JointProblem(
        snr_bandwidth_hz=view.planning_snr_bandwidth_hz[candidates],
        compute_latency_s=np.maximum(compute_slope, compute * tiny),
        upload_bits=bits * max(costs.bits.per_keep, tiny),
        compute_fixed_s=compute_fixed,
        upload_fixed_bits=bits * costs.bits.fixed,
        weight=weight[candidates],
        bandwidth_hz=view.bandwidth_hz * (1.0 - BANDWIDTH_MARGIN),
        deadline_s=max(deadline_s, downlink_time_s * (1 + 1e-9) + 1e-12),
        downlink_time_s=downlink_time_s,
        rho_max=view.rho_max,
        exclusion_penalty=max(exclusion_penalty, view.rho_max),
    )


@dataclass(frozen=True)
class Plan:
    """A consistent plan over all N devices.

    Attributes:
        allocation: The solver's answer over ``candidates`` (after :func:`tighten_to_grid`).
        candidates: Indices of the devices the final problem was built on.
        problem: That problem.
        deadline_s: The round latency planned (simulated latency <= it).
        downlink_time_s: The broadcast time of the full model at the selected set's rate, s (a
            pruned device's own download takes that times its download ratio).
        objective: J over all N devices (devices outside ``candidates`` pay the exclusion cost).
        solves: Problems solved to reach the fixed point.
    """

    allocation: Allocation
    candidates: NDArray[np.intp]
    problem: JointProblem
    deadline_s: float
    objective: float
    solves: int
    downlink_time_s: float = 0.0


def full_objective(
    view: SystemView, problem: JointProblem, allocation: Allocation, candidates: NDArray[np.intp]
) -> float:
    """J over all N devices: the candidates' objective plus gamma x the weight of the others."""
    weight = view.num_samples / view.num_samples.sum()
    outside = np.ones(view.num_devices, dtype=bool)
    outside[candidates] = False
    return float(allocation.objective + problem.exclusion_penalty * weight[outside].sum())


def tighten_to_grid(
    problem: JointProblem,
    allocation: Allocation,
    costs: CostModel,
    compute_s: FloatArray,
    bits: FloatArray,
    downlink_time_s: float | None = None,
) -> Allocation:
    """Each selected device's rho lowered to the least grid rate whose exact cost meets the deadline
    with its bandwidth, where that is below the solver's (the affine bound is conservative).

    Args:
        compute_s, bits: (n,) unpruned compute latency and upload bits of the problem's devices.
        downlink_time_s: The broadcast time (default: the problem's; needed where the problem folds
            per-device downloads into the compute, see :func:`joint_problem`).
    """
    sel = allocation.selected
    if not sel.any():
        return allocation
    curve = costs.curve
    t_dl = problem.downlink_time_s if downlink_time_s is None else downlink_time_s
    rate = rate_bps(allocation.bandwidth_hz[sel], problem.snr_bandwidth_hz[sel])
    latency = grid_latency_s(costs, compute_s[sel], bits[sel], rate, t_dl)
    ok = latency <= problem.deadline_s
    least = np.where(ok.any(axis=1), curve.pruning_rate[np.argmax(ok, axis=1)], np.inf)
    rho = allocation.pruning_rate.copy()
    rho[sel] = np.minimum(rho[sel], least)
    objective = allocation.objective - float(np.sum(problem.weight * (allocation.pruning_rate - rho)))
    return Allocation(**{**allocation.__dict__, "pruning_rate": rho, "objective": objective})


def solve_with_consistent_downlink(
    view: SystemView,
    deadline_s: float,
    exclusion_penalty: float,
    solve: Solver,
    allowed: NDArray[np.bool_] | None = None,
) -> Plan:
    """Solve the joint problem with the broadcast time of the set it selects (fixed point, see module).

    ``allowed`` (N,) restricts the candidates (e.g. to at most R devices in OFDMA); the others pay
    the exclusion cost.
    """
    costs = CostModel.of(view)
    downlink = view.planning_downlink
    if allowed is not None:
        downlink = np.where(allowed, downlink, np.inf)
    candidates = np.flatnonzero(downlink <= 0.5 * deadline_s)
    if candidates.size == 0:
        candidates = np.array([int(np.argmin(downlink))])
    best: Plan | None = None
    solves = 0
    while True:
        t_dl = float(downlink[candidates].max())
        problem = joint_problem(view, candidates, deadline_s, t_dl, exclusion_penalty, costs)
        allocation = solve(problem)
        solves += 1
        allocation = tighten_to_grid(
            problem, allocation, costs, view.compute_latency_s[candidates], view.upload_bits[candidates], t_dl
        )
        plan = Plan(
            allocation,
            candidates,
            problem,
            problem.deadline_s,
            full_objective(view, problem, allocation, candidates),
            solves,
            t_dl,
        )
        if best is not None and plan.objective >= best.objective:
            break
        best = plan
        chosen = candidates[allocation.selected]
        if chosen.size == 0:
            break
        needed = float(downlink[chosen].max())
        if needed >= t_dl:
            break  # consistent: the selected set's broadcast is the one planned
        candidates = np.flatnonzero(downlink <= needed)
    return Plan(**{**best.__dict__, "solves": solves})


def step_bound(curve: CostCurve, ratio: FloatArray, pruning_rate: FloatArray) -> FloatArray:
    """Upper bound of a cost ratio at any rho: exact at rho = 0, else the value at the grid point at
    or left of rho (the curve is non-increasing from entry 1 on; running maximum as in
    :func:`step_upper_points`)."""
    c = np.maximum.accumulate(np.asarray(ratio)[::-1])[::-1]
    rho = np.asarray(pruning_rate, dtype=np.float64)
    index = np.clip(np.searchsorted(curve.pruning_rate[1:], rho, side="right"), 1, len(c) - 1)
    return np.where(rho <= 0, ratio[0], c[index])


def repair_decoded(
    view: SystemView,
    costs: CostModel,
    selected: NDArray[np.bool_],
    pruning_rate: FloatArray,
    bandwidth_hz: FloatArray,
    downlink_time_s: float,
    deadline_s: float,
) -> FloatArray:
    """Pruning rates raised (to grid rates) where the decoded decision would miss ``deadline_s``
    under the cost bound (the action's share floor can take bandwidth from a device)."""
    curve = costs.curve
    rate = rate_bps(bandwidth_hz, view.planning_snr_bandwidth_hz)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
        late = selected & (
            downlink_time_s * step_bound(curve, curve.download_ratio, pruning_rate)
            + view.compute_latency_s * step_bound(curve, curve.flops_ratio, pruning_rate)
            + view.upload_bits * step_bound(curve, curve.bits_ratio, pruning_rate) * inv
            > deadline_s
        )
    if not late.any():
        return pruning_rate
    grid = grid_latency_s(
        costs, view.compute_latency_s[late], view.upload_bits[late], rate[late], downlink_time_s
    )
    ok = grid <= deadline_s
    rho = pruning_rate.copy()
    rho[late] = np.where(ok.any(axis=1), curve.pruning_rate[np.argmax(ok, axis=1)], view.rho_max)
    return rho
