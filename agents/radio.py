"""Agents that decide radio and CPU settings beyond selection and bandwidth, and Liu et al.'s joint
pruning + bandwidth allocation without device selection.

* ``energy-yang``: Yang et al. (IEEE TWC 2021) energy minimisation; applies its whole answer
  (bandwidth, transmit power, CPU frequency) through the ``power`` and ``cpu_freq`` action controls
  (added to the scenario's action by :func:`agents.configure_for_agent`).
* ``chen-selection``: Chen et al. (IEEE TWC 2021) packet-error-aware selection with a Hungarian
  device-to-RB assignment and per-pair power; in OFDMA mode on the scenario's own resource blocks
  and their per-RB gains (``rb`` and ``power`` controls), in FDMA mode on ``ceil(N / 2)`` equal
  virtual blocks.
* ``liu-no-selection``: Liu et al. (IEEE WCL 2021) joint pruning and bandwidth allocation with every
  device taking part: the KKT solver of :mod:`agents.optimal.closed_form` with the selection fixed
  to all devices.

Every agent plans the downlink of the set it actually selects (the broadcast runs at the weakest
selected device's rate) and says in ``last_note`` when it had to deviate from its paper's plan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import AGENTS
from agents.energy import EnergyProblem, EnergyResult, minimise_energy
from agents.optimal.closed_form import allocate_fixed, min_bandwidth_hz, solve_closed_form
from agents.optimal.problem import JointProblem, rate_bps
from agents.optimisers import OptimalAgent, ViewAgent
from agents.packet_error import assign_resource_blocks, pair_values
from fedsimenv.actions import encode_decision
from fedsimenv.view import SystemView

#: Downlink thresholds tried by the energy agent's set search (quantiles of the devices' times).
_MAX_THRESHOLDS = 256


def _alone_latency_s(view: SystemView) -> NDArray[np.float64]:
    """Compute + upload latency of each device alone: whole band, maximum power and frequency."""
    return np.asarray(
        view.compute_latency_s + view.upload_bits / rate_bps(view.bandwidth_hz, view.snr_bandwidth_hz)
    )


def largest_feasible_set(view: SystemView, deadline_s: float) -> tuple[NDArray[np.intp], float]:
    """The largest set whose members each meet the deadline alone, with the set's own downlink.

    For a candidate weakest-downlink time t (the broadcast time of the set), the members are the
    devices with downlink time <= t whose compute + upload alone fits ``deadline - t``; the t with
    the most members wins (ties: smaller t). Returns the members and their downlink time.
    """
    dl = np.asarray(view.downlink_time_s)
    alone = _alone_latency_s(view)
    thresholds = np.unique(dl)
    if thresholds.size > _MAX_THRESHOLDS:
        thresholds = np.unique(np.quantile(dl, np.linspace(0, 1, _MAX_THRESHOLDS), method="higher"))
    counts = ((dl[None, :] <= thresholds[:, None]) & (alone[None, :] < deadline_s - thresholds[:, None])).sum(
        1
    )
    best = int(np.argmax(counts))
    if counts[best] == 0:
        return np.array([], dtype=np.intp), 0.0
    t_best = float(thresholds[best])
    members = np.flatnonzero((dl <= t_best) & (alone < deadline_s - t_best))
    return members, float(dl[members].max())


@AGENTS.register("energy-yang")
class EnergyAgent(ViewAgent):
    """Yang et al.-style energy minimisation over (bandwidth, power, CPU frequency) under the default
    deadline, no pruning. In OFDMA mode at most R devices (the fastest) are planned for, and the
    bandwidth split becomes RB counts by the action's proportional rule.

    Plan: the largest set of devices that each meet the deadline alone with the set's own broadcast
    time (:func:`largest_feasible_set`); the slowest members are dropped until the set is jointly
    feasible, re-budgeting the downlink of the remaining set each time. Where no device meets the
    deadline even alone (a fast-fading snapshot, a tight scenario), the deadline is relaxed to the
    median over devices of their best standalone latency and the note says so. The answer is applied
    in full where the action has the ``power`` and ``cpu_freq`` controls (added by
    :func:`agents.configure_for_agent`), else only its bandwidth split (noted).
    """

    wanted_controls: ClassVar[tuple[str, ...]] = ("power", "cpu_freq")

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        view = self.context.view()
        deadline = self.deadline_s(view)
        notes: list[str] = []
        members, _ = largest_feasible_set(view, deadline)
        if members.size == 0:
            relaxed = float(np.median(view.downlink_time_s + _alone_latency_s(view)))
            notes.append(
                f"no device meets the {deadline:.4g} s deadline alone; relaxed it to {relaxed:.4g} s"
            )
            deadline = relaxed * (1 + 1e-6)
            members, _ = largest_feasible_set(view, deadline)
        order = members[np.argsort(_alone_latency_s(view)[members], kind="stable")]
        if view.num_resource_blocks is not None and order.size > view.num_resource_blocks:
            # OFDMA: the plan is FDMA shares; more devices than blocks would leave some without one
            order = order[: view.num_resource_blocks]
            notes.append(f"kept the {view.num_resource_blocks} fastest devices (one RB each at least)")
        result, chosen = self._solve(view, list(order), deadline, notes)
        n = view.num_devices
        selected = np.zeros(n, dtype=bool)
        bandwidth, power, freq = np.zeros(n), view.tx_power_w.copy(), view.cpu_freq_hz.copy()
        if result is not None:
            selected[chosen] = True
            bandwidth[chosen] = result.bandwidth_hz
            power[chosen] = result.tx_power_w
            freq[chosen] = result.cpu_freq_hz
            self.last_result = result
        self.last_note = "; ".join(notes)
        if not selected.any():
            return self.encode(selected, np.zeros(n), bandwidth)
        return self._encode_settings(selected, bandwidth, power / view.tx_power_w, freq / view.cpu_freq_hz)

    def _solve(
        self, view: SystemView, members: list[int], deadline: float, notes: list[str]
    ) -> tuple[EnergyResult | None, NDArray[np.intp]]:
        dropped = 0
        while members:
            idx = np.array(sorted(members))
            t_dl = float(view.downlink_time_s[idx].max())  # the broadcast of this very set
            problem = EnergyProblem(
                channel_gain_linear=view.channel_gain_linear[idx],
                noise_psd_w_per_hz=view.noise_psd_w_per_hz,
                tx_power_max_w=view.tx_power_w[idx],
                compute_cycles=view.compute_cycles[idx],
                cpu_freq_max_hz=view.cpu_freq_hz[idx],
                kappa=max(view.kappa, 1e-40),
                upload_bits=view.upload_bits[idx],
                bandwidth_hz=view.bandwidth_hz,
                latency_budget_s=max(deadline - t_dl, 1e-9),
            )
            try:
                result = minimise_energy(problem)
            except Exception:  # infeasible together or a solver failure: drop the slowest
                members.pop()
                dropped += 1
                continue
            if dropped:
                notes.append(f"dropped the {dropped} slowest device(s) to fit the band")
            return result, idx
        return None, np.array([], dtype=np.intp)

    def _encode_settings(
        self,
        selected: NDArray[np.bool_],
        bandwidth: NDArray[np.float64],
        power_fraction: NDArray[np.float64],
        freq_fraction: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        config = self.context.action
        missing = [c for c in ("power", "cpu_freq") if c not in config.controls]
        if missing:
            note = f"applied the bandwidth split only (action.controls lacks {', '.join(missing)})"
            self.last_note = "; ".join(filter(None, [self.last_note, note]))
        floor_p = 10 ** (-config.power_range_db / 20)
        if np.any(power_fraction[selected] < floor_p * (1 - 1e-9)) or np.any(
            freq_fraction[selected] < config.cpu_freq_min_fraction * (1 - 1e-9)
        ):
            note = "some powers/frequencies raised to the action's encodable floor"
            self.last_note = "; ".join(filter(None, [self.last_note, note]))
        share = np.where(selected, np.maximum(bandwidth, 1e-300), 1.0)
        return encode_decision(
            selected, np.zeros(len(selected)), share, config,
            tx_power_fraction=power_fraction, cpu_freq_fraction=freq_fraction,
        )  # fmt: skip


@AGENTS.register("chen-selection")
class ChenAgent(ViewAgent):
    """Chen et al.-style packet-error-aware selection: the Hungarian device-to-RB assignment maximising
    the expected arriving data under the deadline and an energy limit of ``energy_factor`` x the
    median unpruned compute energy, each pair at its best power.

    In OFDMA mode the RBs are the scenario's, with each RB's own gain when the channel draws per-RB
    fading; the assignment and powers are applied through the ``rb`` and ``power`` controls (with
    fewer assigned devices than RBs, the leftover RBs are spread by the action's proportional rule).
    In FDMA mode R = ceil(N / 2) equal virtual blocks become equal bandwidth shares. The waterfall
    threshold m is the world's (``network.packet_error``) when packet errors are on, else 0.023.
    RB interference is zero (the env has none per RB).
    """

    wanted_controls: ClassVar[tuple[str, ...]] = ("power", "rb")
    energy_factor: ClassVar[float] = 3.0
    waterfall: ClassVar[float] = 0.023

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        view = self.context.view()
        n = view.num_devices
        ofdma = view.num_resource_blocks is not None
        num_rb = (
            view.num_resource_blocks if view.num_resource_blocks is not None else max(1, math.ceil(n / 2))
        )
        rb_hz = view.rb_bandwidth_hz if ofdma else view.bandwidth_hz / num_rb
        gains = view.rb_gain_linear if view.rb_gain_linear is not None else view.channel_gain_linear
        compute_energy = view.kappa * view.compute_cycles * view.cpu_freq_hz**2
        deadline = self.deadline_s(view)
        power, value = pair_values(
            view.num_samples,
            gains,
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
            view.packet_error_waterfall or self.waterfall,
        )
        result = assign_resource_blocks(power, value)
        self.last_result = result
        self.last_note = ""
        selected = result.rb_of_device >= 0
        if not selected.any():
            return self.encode(selected, np.zeros(n), np.zeros(n))
        config = self.context.action
        extra: dict[str, Any] = {}
        if "power" in config.controls:
            extra["tx_power_fraction"] = np.where(selected, result.tx_power_w / view.tx_power_w, 1.0)
        if "rb" in config.controls:
            extra["first_resource_block"] = np.maximum(result.rb_of_device, 0)
            extra["num_resource_blocks"] = num_rb
        elif ofdma:
            self.last_note = "action.controls lacks rb: the RBs are placed contiguously, not as assigned"
        if int(selected.sum()) < num_rb and ofdma:
            self.last_note = "; ".join(
                filter(None, [self.last_note, f"{num_rb - int(selected.sum())} RB(s) left over, spread"])
            )
        share = np.where(selected, 1.0, 0.0)
        return encode_decision(selected, np.zeros(n), share, config, **extra)


def smallest_feasible_deadline_s(problem: JointProblem, iterations: int = 100) -> float:
    """Least deadline at which every device of ``problem`` fits the band at rho_max (bisection)."""

    def fits(tau: float) -> bool:
        trial = _with_deadline(problem, tau)
        need = min_bandwidth_hz(trial, np.full(trial.num_devices, trial.rho_max))
        return bool(np.all(np.isfinite(need)) and need.sum() <= trial.bandwidth_hz)

    lo = problem.downlink_time_s * (1 + 1e-9) + 1e-12
    hi = max(problem.deadline_s, 2 * lo)
    for _ in range(200):
        if fits(hi):
            break
        lo, hi = hi, 2 * hi
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def _with_deadline(problem: JointProblem, deadline_s: float) -> JointProblem:
    return JointProblem(
        snr_bandwidth_hz=problem.snr_bandwidth_hz,
        compute_latency_s=problem.compute_latency_s,
        upload_bits=problem.upload_bits,
        weight=problem.weight,
        bandwidth_hz=problem.bandwidth_hz,
        deadline_s=deadline_s,
        downlink_time_s=problem.downlink_time_s,
        rho_max=problem.rho_max,
        exclusion_penalty=problem.exclusion_penalty,
    )


@AGENTS.register("liu-no-selection")
class LiuNoSelectionAgent(ViewAgent):
    """Liu et al. (IEEE WCL 2021) joint model pruning and bandwidth allocation without device
    selection: every device takes part; minimise ``sum_k w_k rho_k`` subject to each device's
    latency ``t_dl + (1 - rho_k)(A_k + L_k / r_k(b_k)) <= tau`` and ``sum b_k <= B``.

    The structure of :mod:`agents.optimal.problem` (closed-form rho given b, convex separable
    problem in b solved by its KKT conditions) with the selection fixed to all devices
    (:func:`agents.optimal.closed_form.allocate_fixed`); the downlink is the weakest device's, as
    everyone takes part. Where the default deadline cannot be met by all devices even at rho_max,
    the deadline is raised to the least one that can (bisection on tau; the note gives both).
    """

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        view = self.context.view()
        n = view.num_devices
        t_dl = float(view.downlink_time_s.max())
        deadline = self.deadline_s(view)
        problem = JointProblem(
            snr_bandwidth_hz=view.snr_bandwidth_hz,
            compute_latency_s=view.compute_latency_s,
            upload_bits=view.upload_bits,
            weight=view.num_samples / view.num_samples.sum(),
            bandwidth_hz=view.bandwidth_hz,
            deadline_s=max(deadline, t_dl * (1 + 1e-9) + 1e-12),
            downlink_time_s=t_dl,
            rho_max=view.rho_max,
            exclusion_penalty=max(self.exclusion_penalty, view.rho_max),
        )
        allocation = allocate_fixed(problem)
        self.last_note = ""
        if allocation is None:
            tau = smallest_feasible_deadline_s(problem) * (1 + 1e-6)
            allocation = allocate_fixed(_with_deadline(problem, tau))
            self.last_note = f"deadline {deadline:.4g} s infeasible for all devices; raised to {tau:.4g} s"
        if allocation is None:  # numerically at the edge: everyone at rho_max, bandwidth by need
            need = min_bandwidth_hz(_with_deadline(problem, tau), np.full(n, view.rho_max))
            share = np.where(np.isfinite(need), need, view.bandwidth_hz / n)
            self.last_note += "; KKT solve failed at the raised deadline, rho_max with bandwidth by need"
            return self.encode(np.ones(n, dtype=bool), np.full(n, view.rho_max), share)
        self.last_result = allocation
        if view.num_resource_blocks is not None and n > view.num_resource_blocks:
            # no selection by definition: the devices left without a block fail (reported)
            self.last_note = "; ".join(
                filter(None, [self.last_note, f"OFDMA: {n} devices for {view.num_resource_blocks} RBs"])
            )
        return self.encode(np.ones(n, dtype=bool), allocation.pruning_rate, allocation.bandwidth_hz)


@AGENTS.register("optimal-arq")
class OptimalArqAgent(OptimalAgent):
    """`optimal` planned for the worst case of ARQ: every upload budgeted for all
    ``max_transmissions`` tries (upload bits x tries), so the simulated round never exceeds the
    planned deadline even when updates are re-sent, at the price of more pruning. The deadline is
    `optimal`'s (single tries). Without packet errors it is `optimal`."""

    def planning_view(self) -> SystemView:
        view = self.context.view()
        if view.packet_error_waterfall is None or view.max_transmissions <= 1:
            return view
        return dataclasses.replace(view, upload_bits=view.upload_bits * view.max_transmissions)

    def deadline_s(self, view: SystemView) -> float:
        return super().deadline_s(self.context.view())

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        return self.apply(self.plan(self.planning_view(), solve_closed_form))
