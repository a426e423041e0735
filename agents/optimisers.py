"""Optimiser agents: thin wrappers that read the env's :class:`~fedsimenv.view.SystemView`, call the
pure solvers and encode the decision as a canonical action.

Shared conventions (class attributes, override in a subclass to change them):

* deadline: ``deadline_factor`` x the median over devices of the latency each would have unpruned
  with an equal share ``B / N`` (downlink + compute + upload), so the optimisers have a deadline
  that scales with the scenario;
* downlink: devices whose broadcast time alone exceeds half the deadline are not candidates; the
  solver plans with the broadcast time of the set it selects (re-solved to a fixed point,
  :mod:`agents.planning`), so the real one (the weakest selected device's) is never longer;
* costs: the exact FLOPs and upload bits of the scenario's pruning method (the view's cost curve),
  bounded by an affine model the solvers take (:mod:`agents.planning`);
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
from agents.fading_plan import expected_objective, fast_fading, sampled_round_latency
from agents.ofdma_plan import (
    block_counts,
    expected_tries,
    least_grid_rho,
    minmax_block_counts,
    owner_rates_bps,
    place_windows,
    planned_latency_s,
    rb_gains,
)
from agents.optimal.closed_form import solve_closed_form
from agents.optimal.cvx import CvxJointSolver
from agents.optimal.problem import rate_bps
from agents.planning import (
    BANDWIDTH_MARGIN,
    RHO_MARGIN,
    CostModel,
    Plan,
    Solver,
    repair_decoded,
    solve_with_consistent_downlink,
    step_bound,
)
from fedsimenv.actions import decode_action, encode_decision
from fedsimenv.sim.types import RoundDecision
from fedsimenv.view import SystemView


def default_deadline_s(view: SystemView, factor: float) -> float:
    """``factor`` x median over devices of the unpruned latency with an equal share, s (at the
    planning gains, :attr:`SystemView.planning_gain_linear`)."""
    share = view.bandwidth_hz / view.num_devices
    upload = view.upload_bits / rate_bps(share, view.planning_snr_bandwidth_hz)
    return factor * float(np.median(view.planning_downlink + view.compute_latency_s + upload))


class ViewAgent(Agent):
    """Base of the optimiser agents: deadline, candidates and action encoding from the view."""

    deadline_factor: ClassVar[float] = 1.0
    exclusion_penalty: ClassVar[float] = 1.0
    last_result: Any = None
    last_note: str = ""
    #: The round latency the last plan promises (simulated latency <= it where the channel is static
    #: within the round); NaN for agents that plan no deadline.
    last_deadline_s: float = math.nan
    last_plan: Plan | None = None
    #: How the last plan hedged against fast fading ("" when it did not); not a fallback, so not in
    #: ``last_note``.
    last_hedge: str = ""
    #: OFDMA: (N,) expected upload tries of the last decision under ARQ
    #: (:func:`agents.ofdma_plan.expected_tries`).
    last_expected_tries: NDArray[np.float64] | None = None
    #: OFDMA: selected devices the last plan dropped because they miss the deadline on whole blocks.
    last_blocks_dropped: int = 0

    def deadline_s(self, view: SystemView) -> float:
        return default_deadline_s(view, self.deadline_factor)

    def planning_view(self) -> SystemView:
        """The view :meth:`encode` and :meth:`apply` check the plan against (the env's own; an agent
        that plans with other costs, e.g. quantised uploads, returns its planning view)."""
        return self.context.view()

    #: Fractions of the deadline tried as the planning deadline under fast fading.
    deadline_hedges: ClassVar[tuple[float, ...]] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)

    def plan(self, view: SystemView, solve: Solver) -> Plan:
        """The joint problem solved with the simulator's exact costs and the downlink of the set it
        selects (:func:`agents.planning.solve_with_consistent_downlink`). Under fast fading the plan
        keeps a margin: of the planning deadlines ``deadline_hedges`` x the deadline, the one whose
        J, realised over the fading distribution with late devices excluded, is least
        (:func:`agents.fading_plan.expected_objective`)."""
        deadline = self.deadline_s(view)
        plan = solve_with_consistent_downlink(view, deadline, self.exclusion_penalty, solve)
        if view.num_resource_blocks is not None:
            plan = self._cap_to_blocks(view, solve, deadline, plan, view.num_resource_blocks)
        if fast_fading(view):
            plan = self._hedge_deadline(view, solve, deadline, plan)
        self.last_plan = plan
        self.last_deadline_s = plan.deadline_s
        return plan

    def _cap_to_blocks(
        self, view: SystemView, solve: Solver, deadline: float, plan: Plan, blocks: int
    ) -> Plan:
        """OFDMA: re-solved over the ``blocks`` selected devices with the least planned bandwidth per
        unit weight where the plan selects more (:mod:`agents.ofdma_plan`, step 1)."""
        chosen = plan.candidates[plan.allocation.selected]
        if chosen.size <= blocks:
            return plan
        weight = view.num_samples[chosen] / view.num_samples.sum()
        with np.errstate(divide="ignore"):  # a device without data goes last
            per_weight = plan.allocation.bandwidth_hz[plan.allocation.selected] / weight
        allowed = np.zeros(view.num_devices, dtype=bool)
        allowed[chosen[np.argsort(per_weight, kind="stable")[:blocks]]] = True
        return solve_with_consistent_downlink(view, deadline, self.exclusion_penalty, solve, allowed)

    def _hedge_deadline(self, view: SystemView, solve: Solver, deadline: float, first: Plan) -> Plan:
        seed = int(self.rng.integers(2**62))
        costs = CostModel.of(view)
        best, best_value, best_factor = first, math.inf, 1.0
        for factor in self.deadline_hedges:
            plan = (
                first
                if factor == 1.0
                else solve_with_consistent_downlink(view, factor * deadline, self.exclusion_penalty, solve)
            )
            n = view.num_devices
            selected = np.zeros(n, dtype=bool)
            rho, bandwidth = np.zeros(n), np.zeros(n)
            selected[plan.candidates] = plan.allocation.selected
            rho[plan.candidates] = plan.allocation.pruning_rate
            bandwidth[plan.candidates] = plan.allocation.bandwidth_hz
            flops = step_bound(costs.curve, costs.curve.flops_ratio, rho)
            bits = step_bound(costs.curve, costs.curve.bits_ratio, rho)
            value = expected_objective(
                view,
                selected,
                rho,
                bandwidth,
                view.compute_latency_s * flops,
                view.upload_bits * bits,
                deadline,
                plan.problem.exclusion_penalty,
                seed,
            )
            if value < best_value:
                best, best_value, best_factor = plan, value, factor
        self.last_hedge = (
            f"fast fading: planned for {best_factor:.0%} of the deadline (expected J {best_value:.3g})"
            if best_factor < 1.0
            else ""
        )
        return best

    def encode(
        self, selected: NDArray[np.bool_], rho: NDArray[np.float64], bandwidth: NDArray[np.float64]
    ) -> NDArray[np.float32]:
        if not selected.any():
            view = self.planning_view()
            full = rate_bps(view.bandwidth_hz, view.planning_snr_bandwidth_hz)
            latency = (1 - view.rho_max) * (view.compute_latency_s + view.upload_bits / full)
            best = int(np.argmin(view.planning_downlink + latency))
            selected = np.zeros_like(selected)
            selected[best] = True
            rho = np.where(selected, view.rho_max, 0.0)
            bandwidth = np.where(selected, view.bandwidth_hz, 0.0)
            self.last_note = f"no device meets the deadline; sent device {best} alone at rho_max"
            self.last_deadline_s = math.nan
        # a decoded rho is never below the plan (float32 action; costs do not rise with rho)
        rho = np.where(rho > 0, np.minimum(rho + RHO_MARGIN, self.context.action.rho_max), rho)
        share = np.where(selected, np.maximum(bandwidth, 1e-300), 1.0)
        return encode_decision(selected, rho, share, self.context.action)

    def decoded(self, action: NDArray[np.float32]) -> RoundDecision:
        """What the env will make of ``action`` (with the device maxima the env decodes power and CPU
        frequency against, where the scenario's action carries them)."""
        view = self.context.view()
        return decode_action(
            action,
            self.context.num_devices,
            self.context.action,
            self.context.total_bandwidth_hz,
            tx_power_max_w=view.tx_power_w,
            cpu_freq_max_hz=view.cpu_freq_hz,
            num_resource_blocks=view.num_resource_blocks,
        )

    def apply(self, plan: Plan) -> NDArray[np.float32]:
        allocation, candidates = plan.allocation, plan.candidates
        n = self.context.num_devices
        selected = np.zeros(n, dtype=bool)
        rho, bandwidth = np.zeros(n), np.zeros(n)
        selected[candidates] = allocation.selected
        rho[candidates] = allocation.pruning_rate
        bandwidth[candidates] = allocation.bandwidth_hz
        self.last_result = allocation
        self.last_note = allocation.fallback_reason
        view = self.planning_view()
        if view.num_resource_blocks is not None and selected.any():
            return self.apply_blocks(view, selected, bandwidth, plan.downlink_time_s, plan.deadline_s)
        action = self.encode(selected, rho, bandwidth)
        if not selected.any():
            return action
        # The action's share floor can move bandwidth between devices: check the decoded decision
        # and prune more (grid rates) where a device would otherwise miss the planned deadline.
        decision = self.decoded(action)
        view = self.planning_view()
        repaired = repair_decoded(
            view,
            CostModel.of(view),
            decision.selected,
            decision.pruning_rate,
            decision.bandwidth_hz,
            plan.downlink_time_s,
            plan.deadline_s,
        )
        if np.array_equal(repaired, decision.pruning_rate):
            return action
        return self.encode(
            decision.selected, repaired, np.where(decision.selected, decision.bandwidth_hz, 0.0)
        )

    def apply_blocks(
        self,
        view: SystemView,
        selected: NDArray[np.bool_],
        share: NDArray[np.float64],
        downlink_time_s: float,
        deadline_s: float,
        prune: bool = True,
    ) -> NDArray[np.float32]:
        """OFDMA steps 2-3 of :mod:`agents.ofdma_plan`: integer blocks from ``share``, placed on good
        RBs, rho from the exact rate (devices that miss the deadline at rho_max dropped; without
        ``prune`` nobody is pruned or dropped); the planned deadline is the decoded decision's."""
        assert view.num_resource_blocks is not None
        costs, gains, config = CostModel.of(view), rb_gains(view), self.context.action
        selected, planned = selected.copy(), int(selected.sum())
        while True:
            counts = block_counts(share, selected, view.num_resource_blocks)
            owner, first = place_windows(counts, gains, view)
            rate = owner_rates_bps(view, owner)
            rho, meets = least_grid_rho(view, costs, rate, downlink_time_s, deadline_s)
            late = selected & ~meets
            if not prune:
                rho[:] = 0.0
            if not prune or not late.any() or int(selected.sum()) == 1:
                break
            selected &= ~late
            if not selected.any():
                selected[np.flatnonzero(late)[np.argmax(rate[late])]] = True
        rho = np.where(selected & (rho > 0), np.minimum(rho + RHO_MARGIN, config.rho_max), 0.0)
        action = encode_decision(
            selected,
            rho,
            np.where(selected, np.maximum(counts, 1), 1).astype(np.float64),
            config,
            first_resource_block=first,
            num_resource_blocks=view.num_resource_blocks,
        )
        decision = self.decoded(action)
        latency = planned_latency_s(view, costs, decision)
        self.last_deadline_s = float(np.nanmax(latency))
        self.last_expected_tries = expected_tries(view, decision)
        # part of the plan, not a fallback (so not in last_note)
        self.last_blocks_dropped = planned - int(selected.sum())
        return action


@AGENTS.register("optimal")
class OptimalAgent(ViewAgent):
    """Joint pruning / bandwidth / selection by the closed-form KKT solver (Liu et al. structure)."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        return self.apply(self.plan(self.context.view(), solve_closed_form))


@AGENTS.register("optimal-cvx")
class CvxOptimalAgent(ViewAgent):
    """The same problem solved by the cvxpy formulation (closed-form fallback on solver failure)."""

    def __init__(self, context: Any, seed: int | None = None) -> None:
        super().__init__(context, seed)
        self.solver = CvxJointSolver(context.num_devices)

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        return self.apply(self.plan(self.context.view(), self.solver.solve))


@AGENTS.register("min-max-latency")
class MinMaxLatencyAgent(ViewAgent):
    """Every device, no pruning, bandwidth minimising the slowest device's latency (planned at the
    planning gains: the fading's geometric mean where fading is redrawn within a round)."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        view = self.context.view()
        if view.num_resource_blocks is not None:
            # OFDMA: the R devices fastest on one block, blocks added greedily to the slowest
            counts = minmax_block_counts(view, view.num_resource_blocks)
            chosen = counts > 0
            self.last_result, self.last_note = counts, ""
            downlink = float(view.planning_downlink[chosen].max())
            return self.apply_blocks(view, chosen, counts.astype(np.float64), downlink, math.inf, prune=False)
        result = minmax_latency_bandwidth(
            view.planning_snr_bandwidth_hz,
            view.compute_latency_s,
            view.upload_bits,
            view.bandwidth_hz * (1.0 - BANDWIDTH_MARGIN),
            downlink_time_s=float(view.planning_downlink.max()),
        )
        self.last_result = result
        self.last_note = ""
        n = view.num_devices
        bandwidth = result.bandwidth_hz
        if fast_fading(view):
            bandwidth = self.hedge_fast_fading(view, bandwidth)
        action = self.encode(np.ones(n, dtype=bool), np.zeros(n), bandwidth)
        # the planned round latency is that of the decision the env decodes (share floor, float32)
        decision = self.decoded(action)
        upload = view.upload_bits / rate_bps(decision.bandwidth_hz, view.planning_snr_bandwidth_hz)
        latency = float(view.planning_downlink.max()) + view.compute_latency_s + upload
        self.last_deadline_s = max(result.round_latency_s, float(latency.max()))
        return action

    #: Blends between the min-max split (0) and equal shares (1) tried under fast fading.
    hedges: ClassVar[tuple[float, ...]] = (0.0, 0.25, 0.5, 0.75, 1.0)

    def hedge_fast_fading(self, view: SystemView, bandwidth: NDArray[np.float64]) -> NDArray[np.float64]:
        """Under fast fading the split equalising the planned latencies is fragile (the slowest of
        N noisy devices sets the round); pick the blend with equal shares whose round latency,
        averaged over the fading distribution (:mod:`agents.fading_plan`), is least."""
        n = view.num_devices
        equal = np.full(n, view.bandwidth_hz / n)
        seed = int(self.rng.integers(2**62))
        everyone = np.ones(n, dtype=bool)
        expected = [
            float(
                np.mean(
                    sampled_round_latency(
                        view,
                        everyone,
                        view.compute_latency_s,
                        view.upload_bits,
                        (1 - h) * bandwidth + h * equal,
                        seed,
                    )
                )
            )
            for h in self.hedges
        ]
        best = int(np.argmin(expected))
        self.last_hedge = ""
        if self.hedges[best] > 0:
            self.last_hedge = (
                f"fast fading: bandwidth {self.hedges[best]:.0%} of the way to equal shares "
                f"(expected round {expected[best]:.3g} s vs {expected[0]:.3g} s for the min-max split)"
            )
        return np.asarray((1 - self.hedges[best]) * bandwidth + self.hedges[best] * equal)
