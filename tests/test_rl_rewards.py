"""Rewards for RL: the degenerate policy (one device at rho_max) scores below ``equal`` under every
registered reward, on surrogate episodes (fast) and on real training (slow), and each reward's terms
match a hand computation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents import AgentContext, make_agent
from fedsimenv.actions import encode_decision
from fedsimenv.env import WirelessFLEnv
from fedsimenv.rewards import (
    REWARDS,
    AccuracyLatencyEnergy,
    AccuracyUnderBudget,
    RoundOutcome,
    ShapedTimeToTarget,
    TimeToTarget,
)

#: Reward params the tests need (time-to-target has no target of its own).
PARAMS: dict[str, dict[str, float]] = {"time-to-target": {"target_accuracy": 0.9}}


def _outcomes(scenario: str, trainer: str, policy: str, seed: int, rounds: int = 20) -> list[RoundOutcome]:
    """Every round of one episode of ``policy`` (no target: the full ``rounds``), as rewards see them."""
    env = WirelessFLEnv(scenario, trainer=trainer, overrides={"episode.max_rounds": rounds})
    obs, info = env.reset(seed=seed)
    n, action_cfg = env.num_devices, env.config.action
    agent = None
    if policy != "degenerate":
        context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)  # type: ignore[arg-type]
        agent = make_agent(policy, context, seed)
    outcomes, done, previous = [], False, float(info["accuracy"])
    while not done:
        view = env.system_view()
        if agent is None:  # the strongest channel alone, pruned as far as allowed: short rounds
            selected = np.zeros(n, dtype=bool)
            selected[int(np.argmax(view.channel_gain_linear))] = True
            action = encode_decision(selected, np.full(n, action_cfg.rho_max), np.ones(n), action_cfg)
        else:
            action = agent.act(obs, info)
        reference_s = view.reference_latency_s()
        obs, _, terminated, truncated, info = env.step(action)
        outcomes.append(
            RoundOutcome(
                accuracy=float(info["accuracy"]),
                previous_accuracy=previous,
                round_latency_s=float(info["round_latency_s"]),
                round_energy_j=float(env.last_report.energy_j),  # type: ignore[union-attr]
                reference_latency_s=reference_s,
            )
        )
        previous = float(info["accuracy"])
        done = terminated or truncated
    return outcomes


def _return(name: str, outcomes: list[RoundOutcome]) -> float:
    """The episode return under reward ``name``, ending where the env would (at the reward's target)."""
    reward = REWARDS.get(name)(**PARAMS.get(name, {}))
    target = reward.episode_target(None)
    total = 0.0
    for outcome in outcomes:
        value, _ = reward(RoundOutcome(**{**outcome.__dict__, "target_accuracy": target}))
        total += value
        if target is not None and outcome.accuracy >= target:
            break
    return total


@pytest.fixture(scope="module")
def surrogate_episodes() -> dict[tuple[str, str], list[RoundOutcome]]:
    return {
        (scenario, policy): _outcomes(scenario, "surrogate", policy, seed=1)
        for scenario in ("tiny", "default")
        for policy in ("degenerate", "equal")
    }


@pytest.mark.parametrize("scenario", ["tiny", "default"])
@pytest.mark.parametrize("name", REWARDS.names())
def test_degenerate_policy_scores_below_equal_on_the_surrogate(
    name: str, scenario: str, surrogate_episodes: dict[tuple[str, str], list[RoundOutcome]]
) -> None:
    degenerate = _return(name, surrogate_episodes[(scenario, "degenerate")])
    equal = _return(name, surrogate_episodes[(scenario, "equal")])
    assert degenerate < equal, (name, scenario, degenerate, equal)


@pytest.mark.slow
def test_degenerate_policy_scores_below_equal_on_real_training() -> None:
    episodes: dict[tuple[str, str], Any] = {
        (scenario, policy): _outcomes(scenario, "torch", policy, seed=101)
        for scenario in ("tiny", "default")
        for policy in ("degenerate", "equal")
    }
    for scenario in ("tiny", "default"):
        for name in REWARDS.names():
            degenerate = _return(name, episodes[(scenario, "degenerate")])
            equal = _return(name, episodes[(scenario, "equal")])
            assert degenerate < equal, (name, scenario, degenerate, equal)


def test_offline_return_is_the_envs_return() -> None:
    """:func:`_return` replays the env's own reward computation (so the tests above test the env)."""
    for name in REWARDS.names():
        env = WirelessFLEnv(
            "tiny", trainer="surrogate", reward=name, overrides={"reward.params": PARAMS.get(name, {})}
        )
        obs, info = env.reset(seed=3)
        context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)  # type: ignore[arg-type]
        agent = make_agent("equal", context, 3)
        total, done = 0.0, False
        while not done:
            obs, value, terminated, truncated, info = env.step(agent.act(obs, info))
            total += float(value)
            done = terminated or truncated
        assert _return(name, _outcomes("tiny", "surrogate", "equal", seed=3)) == pytest.approx(total), name


def _trajectory(gains: list[float], latency_refs: float, energy_j: float) -> list[RoundOutcome]:
    accuracy, out = 0.1, []
    for gain in gains:
        out.append(RoundOutcome(accuracy + gain, accuracy, latency_refs * 0.2, energy_j, 0.9, 0.2))
        accuracy += gain
    return out


@pytest.mark.parametrize(
    "reward",
    [
        AccuracyLatencyEnergy(),
        TimeToTarget(target_accuracy=0.89),
        ShapedTimeToTarget(target_accuracy=0.89),
        AccuracyUnderBudget(),
    ],
)
def test_hand_made_degenerate_and_equal_episodes(reward: Any) -> None:
    """Shapes as measured on real training on ``default`` (fedsimenv/rewards.py): degenerate =
    20 rounds of 0.07 reference latencies and 0.06 J gaining 0.0125 each (0.25 in all); equal =
    rounds of 26 reference latencies and 2.9 J gaining 0.25, 0.2, 0.15, 0.1, 0.05, 0.05 (0.89 in
    round 6), then 0."""
    degenerate = _trajectory([0.0125] * 20, 0.07, 0.06)
    equal = _trajectory([0.25, 0.2, 0.15, 0.1, 0.05, 0.05] + [0.0] * 14, 26.0, 2.9)

    def total(outcomes: list[RoundOutcome]) -> float:
        target = reward.episode_target(None)
        value = 0.0
        for o in outcomes:
            value += reward(o)[0]
            if target is not None and o.accuracy >= target:
                break
        return value

    assert total(degenerate) < total(equal)


def test_reward_terms_hand_computed() -> None:
    outcome = RoundOutcome(
        accuracy=0.6, previous_accuracy=0.2, round_latency_s=3.0, round_energy_j=2.0, reference_latency_s=2.0
    )
    value, terms = AccuracyLatencyEnergy(accuracy_weight=2.0, latency_weight=0.1, energy_weight_per_j=0.5)(
        outcome
    )
    # 2 * 0.4 - 0.1 * 3 / 2 - 0.5 * 2
    assert value == pytest.approx(0.8 - 0.15 - 1.0) and terms["latency"] == pytest.approx(-0.15)
    value, terms = TimeToTarget(time_weight=0.5, bonus=4.0, target_accuracy=0.6)(outcome)
    assert value == pytest.approx(-0.75 + 4.0) and terms["target_bonus"] == 4.0
    value, _ = AccuracyUnderBudget()(outcome)
    assert value == pytest.approx(0.4)
    with pytest.raises(ValueError, match="reference latency"):
        TimeToTarget(target_accuracy=0.5)(RoundOutcome(0.5, 0.2, 1.0, 0.0))
    with pytest.raises(ValueError, match="latency_weight"):
        AccuracyLatencyEnergy(latency_weight=-1.0)


def test_shaped_time_to_target_hand_computed() -> None:
    reward = ShapedTimeToTarget(time_weight=0.5, progress_weight=10.0, bonus=4.0, target_accuracy=0.8)
    value, terms = reward(
        RoundOutcome(
            accuracy=0.6,
            previous_accuracy=0.2,
            round_latency_s=3.0,
            round_energy_j=1.0,
            reference_latency_s=2.0,
        )
    )
    # 10 (0.6/0.8 - 0.2/0.8) - 0.5 * 3 / 2 = 5 - 0.75; no bonus below the target.
    assert value == pytest.approx(4.25) and terms["target_bonus"] == 0.0
    value, terms = reward(
        RoundOutcome(
            accuracy=0.95,
            previous_accuracy=0.6,
            round_latency_s=1.0,
            round_energy_j=1.0,
            reference_latency_s=1.0,
        )
    )
    # The potential is capped at the target: 10 (1 - 0.75) - 0.5 + 4.
    assert value == pytest.approx(6.0) and terms["target_bonus"] == 4.0
    with pytest.raises(ValueError, match="reference latency"):
        reward(RoundOutcome(accuracy=0.5, previous_accuracy=0.2, round_latency_s=1.0, round_energy_j=0.0))
    with pytest.raises(ValueError, match="time_weight"):
        ShapedTimeToTarget(time_weight=-1.0)
