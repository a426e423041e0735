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

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.allocation import minmax_latency_bandwidth
from agents.base import AGENTS, Agent
from agents.energy import EnergyProblem, minimise_energy
from agents.optimal.closed_form import solve_closed_form
from agents.optimal.cvx import CvxJointSolver
from agents.optimal.problem import Allocation, JointProblem, rate_bps
from agents.packet_error import assign_resource_blocks, pair_values
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


@AGENTS.register("energy-yang")
class EnergyAgent(ViewAgent):
    """Yang et al.-style energy minimisation under the default deadline; applies its bandwidth
    split and selection (the simulator keeps its own powers and CPU frequencies)."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        view = self.context.view()
        deadline = self.deadline_s(view)
        budget = deadline - float(view.downlink_time_s.max())
        n = view.num_devices
        problem = EnergyProblem(
            channel_gain_linear=view.channel_gain_linear,
            noise_psd_w_per_hz=view.noise_psd_w_per_hz,
            tx_power_max_w=view.tx_power_w,
            compute_cycles=view.compute_cycles,
            cpu_freq_max_hz=view.cpu_freq_hz,
            kappa=max(view.kappa, 1e-40),
            upload_bits=view.upload_bits,
            bandwidth_hz=view.bandwidth_hz,
            latency_budget_s=max(budget, 1e-9),
        )
        feasible = problem.feasible_alone()
        selected = np.zeros(n, dtype=bool)
        bandwidth = np.zeros(n)
        # drop the slowest devices until the rest fit together (each alone is necessary, not enough)
        order = np.argsort(
            view.compute_latency_s + view.upload_bits / rate_bps(view.bandwidth_hz, view.snr_bandwidth_hz)
        )
        members = [int(k) for k in order if feasible[k]]
        while members:
            idx = np.array(sorted(members))
            sub = EnergyProblem(
                problem.channel_gain_linear[idx],
                problem.noise_psd_w_per_hz,
                problem.tx_power_max_w[idx],
                problem.compute_cycles[idx],
                problem.cpu_freq_max_hz[idx],
                problem.kappa,
                problem.upload_bits[idx],
                problem.bandwidth_hz,
                problem.latency_budget_s,
            )
            try:
                result = minimise_energy(sub)
            except Exception as err:  # infeasible together or a solver failure: drop the slowest
                self.last_note = f"energy solve with {len(members)} devices failed ({err}); dropping one"
                members.pop()
                continue
            selected[idx] = True
            bandwidth[idx] = result.bandwidth_hz
            self.last_result = result
            break
        return self.encode(selected, np.zeros(n), bandwidth)


@AGENTS.register("chen-selection")
class ChenAgent(ViewAgent):
    """Chen et al.-style packet-error-aware selection: R = ceil(N / 2) equal RBs, Hungarian assignment
    maximising expected arriving data under the deadline and an energy limit of ``energy_factor`` x
    the median unpruned compute energy. RB interference is zero here (the env has none)."""

    energy_factor: ClassVar[float] = 3.0
    waterfall: ClassVar[float] = 0.023

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        view = self.context.view()
        n = view.num_devices
        num_rb = max(1, math.ceil(n / 2))
        rb_hz = view.bandwidth_hz / num_rb
        compute_energy = view.kappa * view.compute_cycles * view.cpu_freq_hz**2
        deadline = self.deadline_s(view)
        power, value = pair_values(
            view.num_samples,
            view.channel_gain_linear,
            view.tx_power_w,
            view.downlink_time_s + view.compute_latency_s,
            compute_energy,
            view.upload_bits,
            np.zeros(num_rb),
            view.noise_psd_w_per_hz,
            rb_hz,
            deadline,
            self.energy_factor * max(float(np.median(compute_energy)), 1e-30)
            + float(view.tx_power_w.max()) * deadline,
            self.waterfall,
        )
        result = assign_resource_blocks(power, value)
        self.last_result = result
        selected = result.rb_of_device >= 0
        return self.encode(selected, np.zeros(n), np.where(selected, rb_hz, 0.0))
