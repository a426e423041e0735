"""Planner = world: the optimisers' planned deadline holds in the simulator, with exact costs.

The world is the simulator with the trainer's exact costs; the planner is each optimiser's plan from
the :class:`~fedsimenv.view.SystemView`. References: the simulated round latency (an independent
code path: SimPy timeouts over the decoded action and the trainer's per-device plan), the old
planning rule re-implemented here (largest broadcast time over all candidates, one solve), a hand
computation of the affine bound and a Monte Carlo estimate of ``E ln |h|^2``.
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from agents import AgentContext, make_agent
from agents.optimal import solve_closed_form
from agents.optimal.problem import JointProblem
from agents.optimisers import ViewAgent
from agents.planning import (
    CostModel,
    affine_upper_bound,
    full_objective,
    joint_problem,
    step_bound,
    tighten_to_grid,
)
from channels.fading import RayleighFading, RicianFading
from fedsimenv.env import WirelessFLEnv
from fedsimenv.scenario import builtin_scenarios, load_scenario
from fedsimenv.view import CostCurve, SystemView

#: Built-in scenarios whose channel is static within a round, in FDMA with the default action (the
#: guarantee's domain; ``wireless-controls`` plans OFDMA resource blocks, power and CPU frequency).
STATIC = [
    name
    for name in builtin_scenarios()
    if name != "vehicular"
    and load_scenario(name).network.access == "fdma"
    and list(load_scenario(name).action.controls) == ["select", "rho", "bandwidth"]
]


def _context(env: WirelessFLEnv) -> AgentContext:
    assert isinstance(env.action_space, spaces.Box)
    return AgentContext.from_scenario(env.config, env.action_space, system_view=env.system_view)


def _env(name: str, rounds: int) -> WirelessFLEnv:
    """``name``'s network, channel and devices with the digits surrogate's learning settings (the
    surrogate's exact-cost table of the small CNN with magnitude pruning: mask bits included)."""
    learning = load_scenario("default").learning.model_dump(mode="json")
    overrides = {"trainer": "surrogate", "episode.max_rounds": rounds, "learning": learning}
    return WirelessFLEnv(load_scenario(name, overrides))


def _old_rule_objective(agent: ViewAgent, view: SystemView) -> float:
    """Today's planner on the same instance and cost model: the largest broadcast time over every
    candidate, one solve (independent of :func:`agents.planning.solve_with_consistent_downlink`)."""
    deadline = agent.deadline_s(view)
    downlink = view.planning_downlink
    candidates = np.flatnonzero(downlink <= 0.5 * deadline)
    if candidates.size == 0:
        candidates = np.array([int(np.argmin(downlink))])
    costs = CostModel.of(view)
    problem = joint_problem(view, candidates, deadline, float(downlink[candidates].max()), 1.0, costs)
    allocation = tighten_to_grid(
        problem,
        solve_closed_form(problem),
        costs,
        view.compute_latency_s[candidates],
        view.upload_bits[candidates],
    )
    return full_objective(view, problem, allocation, candidates)


def _check_rounds(names: list[str], agents: list[str], rounds: int, seeds: range) -> int:
    """Every round: simulated latency <= planned deadline (rel 1e-6); `optimal`'s objective <= the
    old rule's. Returns the number of rounds checked."""
    checked = 0
    for name in names:
        env = _env(name, rounds)
        for agent_name in agents:
            for seed in seeds:
                agent = make_agent(
                    agent_name,
                    _context(env),
                    seed=0,
                )
                assert isinstance(agent, ViewAgent)
                observation, info = env.reset(seed=seed)
                for _ in range(rounds):
                    view = env.system_view()
                    action = agent.act(observation, info)
                    planned = agent.last_deadline_s
                    if agent_name == "optimal" and agent.last_plan is not None:
                        assert agent.last_plan.objective <= _old_rule_objective(agent, view) + 1e-9
                    observation, _, terminated, truncated, info = env.step(action)
                    latency = env.last_report.round_latency_s  # type: ignore[union-attr]
                    assert np.isfinite(planned), (name, agent_name, seed, agent.last_note)
                    assert latency <= planned * (1 + 1e-6), (name, agent_name, seed, latency / planned)
                    checked += 1
                    if terminated or truncated:
                        break
    return checked


def test_simulated_round_never_exceeds_the_planned_deadline() -> None:
    # Fast slice: two scenarios x two optimisers x 4 rounds (the full sweep is slow).
    checked = _check_rounds(["default", "urban-macro-50"], ["optimal", "min-max-latency"], 4, range(1))
    assert checked == 16


@pytest.mark.slow
@pytest.mark.parametrize("name", STATIC)
def test_simulated_round_never_exceeds_the_planned_deadline_on_every_scenario(name: str) -> None:
    # >= 50 rounds per scenario and optimiser: 5 seeds x 10 rounds, random drops, positions, fades.
    checked = _check_rounds([name], ["optimal", "optimal-cvx", "min-max-latency"], 10, range(5))
    assert checked >= 150


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "old_ratio"), [(0, 1.106)])
def test_issue_case_default_seed_0_round_0_meets_its_deadline(seed: int, old_ratio: float) -> None:
    # The torch trainer's own exact costs (unstructured mask: one bit per prunable weight).
    env = WirelessFLEnv(load_scenario("default"))
    agent = make_agent(
        "optimal",
        _context(env),
        seed=0,
    )
    assert isinstance(agent, ViewAgent)
    observation, info = env.reset(seed=seed)
    action = agent.act(observation, info)
    env.step(action)
    ratio = env.last_report.round_latency_s / agent.last_deadline_s  # type: ignore[union-attr]
    assert ratio <= 1 + 1e-6 < old_ratio


def test_affine_bound_covers_the_step_bound_and_is_tight_on_a_linear_curve() -> None:
    # The unstructured-mask shape: cost 1 unpruned, keep + 1/32 once pruned (mask bit per weight).
    rho = np.array([0.0, 2.0**-20, 0.2, 0.4, 0.6, 0.8])
    bits = np.where(rho > 0, 1 - rho + 1 / 32, 1.0)
    line = affine_upper_bound(rho, bits)
    # a non-increasing cost between grid points is at most its left value: check on a fine grid
    fine = np.linspace(0.0, 0.8, 2001)
    exact = np.where(fine > 0, 1 - fine + 1 / 32, 1.0)
    assert np.all(line(fine) >= exact - 1e-12)
    curve = CostCurve(rho, np.ones_like(rho), bits)
    assert np.all(step_bound(curve, bits, fine) >= exact - 1e-12)
    # hand computation: the bound must cover (0.2, 1 - 2^-20 + 1/32), (0.4, 0.8 + 1/32), ... ; the
    # least-area line through the last point (0.8, 0.2 + 1/32) with slope 1 in keep covers them all
    # by 0.2 (one grid step) and the LP's optimum lies on that family (slope <= 1 + 1/(32*0.8)).
    assert line.per_keep == pytest.approx(1.0, abs=0.05)
    assert line(0.8) >= 0.2 + 1 / 32 - 1e-12


def test_fixed_parts_are_the_linear_model_shifted() -> None:
    # A problem with fixed parts equals, device by device, the latency formula written out here.
    rng = np.random.default_rng(3)
    n = 6
    problem = JointProblem(
        snr_bandwidth_hz=10 ** rng.uniform(6, 9, n),
        compute_latency_s=rng.uniform(0.05, 0.2, n),
        upload_bits=rng.uniform(2e5, 4e5, n),
        weight=np.full(n, 1 / n),
        bandwidth_hz=10e6,
        deadline_s=0.5,
        downlink_time_s=0.01,
        rho_max=0.8,
        compute_fixed_s=rng.uniform(0.0, 0.02, n),
        upload_fixed_bits=rng.uniform(0.0, 2e4, n),
    )
    allocation = solve_closed_form(problem)
    sel = allocation.selected
    b, rho = allocation.bandwidth_hz[sel], allocation.pruning_rate[sel]
    rate = b * np.log2(1 + problem.snr_bandwidth_hz[sel] / b)
    keep = 1 - rho
    latency = (
        0.01
        + problem.fixed_compute[sel]
        + keep * problem.compute_latency_s[sel]
        + (problem.fixed_bits[sel] + keep * problem.upload_bits[sel]) / rate
    )
    assert np.all(latency <= 0.5 * (1 + 1e-9))
    # where rho > 0 the deadline binds (rho is the least that meets it)
    assert np.allclose(latency[rho > 1e-9], 0.5, rtol=1e-8)


def test_geometric_mean_of_fading_matches_closed_form_and_monte_carlo() -> None:
    rayleigh = RayleighFading(RayleighFading.Params())
    assert rayleigh.log_mean_power_gain() == pytest.approx(-np.euler_gamma, abs=1e-12)
    # the base class's quadrature (Rician with K = 0 is Rayleigh) against the closed form
    assert RicianFading(RicianFading.Params(k_factor=0.0)).log_mean_power_gain() == pytest.approx(
        -np.euler_gamma, abs=1e-7
    )
    rician = RicianFading(RicianFading.Params(k_factor=5.0))
    draws = rician.sample_power_gain(400_000, np.random.default_rng(0))
    assert rician.log_mean_power_gain() == pytest.approx(float(np.mean(np.log(draws))), abs=3e-3)


def test_view_carries_the_trainers_exact_cost_curve() -> None:
    env = _env("tiny", 2)
    env.reset(seed=0)
    view = env.system_view()
    curve = view.cost_curve
    assert curve is not None
    for rho, flops, bits in zip(
        curve.pruning_rate, curve.forward_flops_per_sample, curve.upload_bits, strict=True
    ):
        cost = env.trainer.cost_at(float(rho))
        assert (cost.forward_flops_per_sample, cost.upload_bits) == (flops, bits)
    assert view.planning_gain_linear is None  # block fading: the snapshot is the round's channel


# --- OFDMA: integer resource blocks, per-RB gains, packet errors (agents/ofdma_plan.py) -------------


def _check_ofdma_rounds(agents: list[str], rounds: int, seeds: range) -> tuple[int, int]:
    """``wireless-controls``: at most R devices selected, none without a block, and the simulated
    round <= the planned deadline in every round whose uploads all got through on the first try.
    ``optimal-arq`` plans for every try: all its rounds are checked. Returns (rounds checked, rounds
    with a retransmission left unchecked)."""
    env = WirelessFLEnv(
        load_scenario("wireless-controls", {"trainer": "surrogate", "episode.max_rounds": rounds})
    )
    blocks = env.config.network.resource_blocks
    assert blocks is not None
    checked = retried = 0
    for agent_name in agents:
        for seed in seeds:
            agent = make_agent(agent_name, _context(env), seed=0)
            assert isinstance(agent, ViewAgent)
            observation, info = env.reset(seed=seed)
            for _ in range(rounds):
                action = agent.act(observation, info)
                planned = agent.last_deadline_s
                observation, _, terminated, truncated, info = env.step(action)
                report = env.last_report
                assert report is not None
                assert 1 <= int(report.selected.sum()) <= blocks.count, agent_name
                assert not np.any(report.reason == "no-resource-block"), agent_name
                if report.transmissions.max() > 1 and agent_name != "optimal-arq":
                    retried += 1  # ARQ re-sent an update: one more upload time, not planned for
                else:  # `optimal-arq` plans every try
                    assert report.round_latency_s <= planned * (1 + 1e-6), (agent_name, seed)
                    checked += 1
                if terminated or truncated:
                    break
    return checked, retried


def test_ofdma_plans_at_most_r_devices_and_meets_its_deadline_on_first_tries() -> None:
    checked, retried = _check_ofdma_rounds(["optimal", "min-max-latency", "optimal-arq"], 4, range(2))
    assert checked + retried == 24 and checked >= 16


@pytest.mark.slow
def test_ofdma_deadline_on_every_optimiser_over_many_rounds() -> None:
    agents = ["optimal", "optimal-cvx", "min-max-latency", "optimal-arq"]
    checked, retried = _check_ofdma_rounds(agents, 10, range(6))
    assert checked + retried == 240 and checked >= 150


def test_block_counts_and_windows_hand_cases() -> None:
    from agents.ofdma_plan import block_counts, place_windows

    everyone = np.ones(3, dtype=bool)
    # largest remainder: 5, 3, 2 exactly; a tiny share still gets one block (from the largest)
    assert block_counts(np.array([0.5, 0.3, 0.2]), everyone, 10).tolist() == [5, 3, 2]
    assert block_counts(np.array([0.9, 0.1, 0.001]), everyone, 10).tolist() == [8, 1, 1]
    with pytest.raises(ValueError, match="3 devices selected for 2 resource blocks"):
        block_counts(np.ones(3), everyone, 2)
    # device 0 (2 blocks) is strong on RBs 3-4, device 1 (1 block) on RB 0: each gets its window
    env = WirelessFLEnv(load_scenario("wireless-controls", {"trainer": "surrogate"}))
    env.reset(seed=0)
    view = env.system_view()
    gains = np.full((2, 6), 1e-13)
    gains[0, 3:5] = 1e-10
    gains[1, 0] = 1e-10
    owner, first = place_windows(np.array([2, 1]), gains, view)
    assert owner.tolist() == [1, -1, -1, 0, 0, -1] and first.tolist() == [3, 0]


def test_expected_tries_match_the_simulated_arq_within_binomial_error() -> None:
    # Independent reference: the simulator draws each try's outcome from its own stream; with two
    # tries a device needs 2 with probability q, so the count of second tries is a sum of Bernoullis.
    env = WirelessFLEnv(
        load_scenario("wireless-controls", {"trainer": "surrogate", "episode.max_rounds": 10})
    )
    agent = make_agent("optimal", _context(env), seed=0)
    assert isinstance(agent, ViewAgent)
    predicted = observed = variance = 0.0
    for seed in range(3):
        observation, info = env.reset(seed=seed)
        for _ in range(10):
            action = agent.act(observation, info)
            assert agent.last_expected_tries is not None
            q = agent.last_expected_tries - 1.0  # E[T] = 1 + q with two tries
            observation, _, terminated, truncated, info = env.step(action)
            report = env.last_report
            assert report is not None
            sent = report.transmissions > 0
            predicted += float(q[sent].sum())
            variance += float((q[sent] * (1 - q[sent])).sum())
            observed += float((report.transmissions[sent] - 1).sum())
            if terminated or truncated:
                break
    assert predicted > 1.0  # packet errors do happen in this scenario
    assert abs(observed - predicted) <= 4.0 * np.sqrt(variance) + 1.0


def test_pruned_devices_own_downloads_are_planned_as_the_trainer_charges_them() -> None:
    # Torch trainer, magnitude pruning (a server-side mask): a pruned device downloads its own pruned
    # model, mask included, so at rho -> 0+ it downloads ~1/32 more than the broadcast. Reference:
    # the trainer's plan_round (what the simulator is given) and the simulated round latency.
    env = WirelessFLEnv(load_scenario("tiny", {"episode.max_rounds": 1}))
    agent = make_agent("optimal", _context(env), seed=0)
    assert isinstance(agent, ViewAgent)
    observation, info = env.reset(seed=0)
    curve = env.system_view().cost_curve
    assert curve is not None and curve.download_bits is not None
    plan = env.trainer.plan_round({0: float(curve.pruning_rate[1]), 1: float(curve.pruning_rate[-1])})
    assert plan.costs[0].download_bits == pytest.approx(float(curve.download_bits[1]), rel=1e-12)
    assert plan.costs[1].download_bits == pytest.approx(float(curve.download_bits[-1]), rel=1e-12)
    assert curve.download_ratio[1] > 1.0 > curve.download_ratio[-1]
    env.step(agent.act(observation, info))
    assert env.last_report is not None
    assert env.last_report.round_latency_s <= agent.last_deadline_s * (1 + 1e-6)
