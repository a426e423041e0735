"""Rewards for RL: the degenerate policy (one device at rho_max) scores below ``equal`` under every
reward marked ``rl_safe``; the others are shown to fail that test (so the flag says something)."""

from __future__ import annotations

import numpy as np
import pytest

from agents import AgentContext, make_agent
from fedsimenv.actions import encode_decision
from fedsimenv.env import WirelessFLEnv
from fedsimenv.rewards import REWARDS, RoundOutcome, ShapedTimeToTarget


def _episode_return(reward: str, policy: str, seed: int) -> float:
    # `default`: a 10 MHz band shared by 20 devices, where equal shares make long rounds.
    params = {"target_accuracy": 0.9} if reward == "time-to-target" else {}
    env = WirelessFLEnv("default", trainer="surrogate", reward=reward, overrides={"reward.params": params})
    obs, info = env.reset(seed=seed)
    n, action_cfg = env.num_devices, env.config.action
    agent = None
    if policy != "degenerate":
        context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)  # type: ignore[arg-type]
        agent = make_agent(policy, context, seed)
    total, done = 0.0, False
    while not done:
        if agent is None:  # the strongest channel alone, pruned as far as allowed: short rounds
            selected = np.zeros(n, dtype=bool)
            selected[int(np.argmax(env.system_view().channel_gain_linear))] = True
            action = encode_decision(selected, np.full(n, action_cfg.rho_max), np.ones(n), action_cfg)
        else:
            action = agent.act(obs, info)
        obs, reward_value, terminated, truncated, info = env.step(action)
        total += float(reward_value)
        done = terminated or truncated
    return total


@pytest.mark.parametrize("name", REWARDS.names())
def test_degenerate_policy_scores_below_equal_exactly_under_the_rl_safe_rewards(name: str) -> None:
    degenerate = _episode_return(name, "degenerate", seed=1)
    equal = _episode_return(name, "equal", seed=1)
    if REWARDS.get(name).rl_safe:
        assert degenerate < equal, (name, degenerate, equal)
    else:  # the documented failure of a per-round rate reward
        assert degenerate > equal, (name, degenerate, equal)


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
