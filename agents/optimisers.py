"""Optimiser agents: thin wrappers that read the env's :class:`~fedsimenv.view.SystemView`, call the
pure solvers and encode the decision as a canonical action.

Shared conventions (class attributes, override in a subclass to change them):

* deadline: ``deadline_factor`` x the median over devices of the latency each would have unpruned
  with an equal share ``B / N`` (downlink + compute + upload), so the optimisers have a deadline
  that scales with the scenario;
* downlink: devices whose broadcast time alone exceeds half the deadline are not candidates; the
  solver assumes the largest broadcast time among the candidates, so the real one (the weakest
  selected device's) is never longer;
* weights ``w_k = D_k / sum D`` (data shares) and exclusion cost ``gamma = exclusion_penalty``.

Every optimiser keeps its last answer in ``last_result`` for inspection (objective, solver,
fallback reason). Where nobody can meet the deadline the agent falls back to the single device with
the smallest latency at rho_max and says so in ``last_note``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.allocation import minmax_latency_bandwidth
from agents.base import AGENTS, Agent
from agents.optimal.closed_form import solve_closed_form
from agents.optimal.cvx import CvxJointSolver
from agents.optimal.problem import Allocation, JointProblem, rate_bps
from fedsimenv.actions import encode_decision
from fedsimenv.view import SystemView


def default_deadline_s(view: SystemView, factor: float) -> float:
    """``factor`` x median over devices of the unpruned latency with an equal share, s."""
    share = view.bandwidth_hz / view.num_devices
    upload = view.upload_bits / rate_bps(share, view.snr_bandwidth_hz)
    return factor * float(np.median(view.downlink_time_s + view.compute_latency_s + upload))


class ViewAgent(Agent):
    """Base of the optimiser agents: deadline, candidates and action encoding from the view."""

    deadline_factor: ClassVar[float] = 1.0
    exclusion_penalty: ClassVar[float] = 1.0
    last_result: Any = None
    last_note: str = ""

    def deadline_s(self, view: SystemView) -> float:
        return default_deadline_s(view, self.deadline_factor)

    def joint_problem(self, view: SystemView) -> tuple[JointProblem, NDArray[np.intp]]:
        """The joint problem over the candidate devices, and their indices."""
        deadline = self.deadline_s(view)
        candidates = np.flatnonzero(view.downlink_time_s <= 0.5 * deadline)
        if candidates.size == 0:
            candidates = np.array([int(np.argmin(view.downlink_time_s))])
        weight = view.num_samples / view.num_samples.sum()
        t_dl = float(view.downlink_time_s[candidates].max())
        problem = JointProblem(
            snr_bandwidth_hz=view.snr_bandwidth_hz[candidates],
            compute_latency_s=view.compute_latency_s[candidates],
            upload_bits=view.upload_bits[candidates],
            weight=weight[candidates],
            bandwidth_hz=view.bandwidth_hz,
            deadline_s=max(deadline, t_dl * (1 + 1e-9) + 1e-12),
            downlink_time_s=t_dl,
            rho_max=view.rho_max,
            exclusion_penalty=max(self.exclusion_penalty, view.rho_max),
        )
        return problem, candidates

    def encode(
        self, selected: NDArray[np.bool_], rho: NDArray[np.float64], bandwidth: NDArray[np.float64]
    ) -> NDArray[np.float32]:
        if not selected.any():
            view = self.context.view()
            full = rate_bps(view.bandwidth_hz, view.snr_bandwidth_hz)
            latency = (1 - view.rho_max) * (view.compute_latency_s + view.upload_bits / full)
            best = int(np.argmin(view.downlink_time_s + latency))
            selected = np.zeros_like(selected)
            selected[best] = True
            rho = np.where(selected, view.rho_max, 0.0)
            bandwidth = np.where(selected, view.bandwidth_hz, 0.0)
            self.last_note = f"no device meets the deadline; sent device {best} alone at rho_max"
        share = np.where(selected, np.maximum(bandwidth, 1e-300), 1.0)
        return encode_decision(selected, rho, share, self.context.action)

    def apply(self, allocation: Allocation, candidates: NDArray[np.intp]) -> NDArray[np.float32]:
        n = self.context.num_devices
        selected = np.zeros(n, dtype=bool)
        rho, bandwidth = np.zeros(n), np.zeros(n)
        selected[candidates] = allocation.selected
        rho[candidates] = allocation.pruning_rate
        bandwidth[candidates] = allocation.bandwidth_hz
        self.last_result = allocation
        self.last_note = allocation.fallback_reason
        return self.encode(selected, rho, bandwidth)


@AGENTS.register("optimal")
class OptimalAgent(ViewAgent):
    """Joint pruning / bandwidth / selection by the closed-form KKT solver (Liu et al. structure)."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        problem, candidates = self.joint_problem(self.context.view())
        return self.apply(solve_closed_form(problem), candidates)


@AGENTS.register("optimal-cvx")
class CvxOptimalAgent(ViewAgent):
    """The same problem solved by the cvxpy formulation (closed-form fallback on solver failure)."""

    def __init__(self, context: Any, seed: int | None = None) -> None:
        super().__init__(context, seed)
        self.solver = CvxJointSolver(context.num_devices)

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        problem, candidates = self.joint_problem(self.context.view())
        return self.apply(self.solver.solve(problem), candidates)


@AGENTS.register("min-max-latency")
class MinMaxLatencyAgent(ViewAgent):
    """Every device, no pruning, bandwidth minimising the slowest device's latency."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        view = self.context.view()
        result = minmax_latency_bandwidth(
            view.snr_bandwidth_hz,
            view.compute_latency_s,
            view.upload_bits,
            view.bandwidth_hz,
            downlink_time_s=float(view.downlink_time_s.max()),
        )
        self.last_result = result
        n = view.num_devices
        return self.encode(np.ones(n, dtype=bool), np.zeros(n), result.bandwidth_hz)
