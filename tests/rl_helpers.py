"""Shared checks of the RL tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents import AgentContext, make_agent
from agents.rl_features import flat_features
from fedsimenv.config import ScenarioConfig
from fedsimenv.env import WirelessFLEnv


def assert_agent_acts_as_sb3_predicts(algo: str, trusted: Any, config: ScenarioConfig, run_dir: Path) -> None:
    """``make_agent(f"{algo}:{run_dir}/policy.zip")`` takes, for 4 steps of seed 77, exactly the
    deterministic actions of ``trusted`` (the same file loaded by SB3's own loader, the reference)."""
    env = WirelessFLEnv(config)
    agent = make_agent(
        f"{algo}:{run_dir}/policy.zip",
        AgentContext.from_scenario(config, env.action_space, env.system_view),  # type: ignore[arg-type]
    )
    obs, info = env.reset(seed=77)
    for _ in range(4):
        action = agent.act(obs, info)
        expected, _ = trusted.predict(flat_features(obs, env.system_view(), 4), deterministic=True)
        assert np.array_equal(action, expected)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
