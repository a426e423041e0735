"""The env passes the peer libraries' own checkers, with no warnings, for every registered id."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import fedsimenv
from fedsimenv.env import WirelessFLEnv

#: Small episodes keep check_env quick; the surrogate keeps real training out of the Discrete check.
ID_KWARGS: dict[str, dict[str, Any]] = {
    fedsimenv.ENV_ID: {"overrides": {"episode.max_rounds": 5}},
    fedsimenv.FAST_ENV_ID: {"overrides": {"episode.max_rounds": 5}},
    fedsimenv.DISCRETE_ENV_ID: {"trainer": "surrogate", "overrides": {"episode.max_rounds": 5}},
}


def test_every_registered_id_is_covered() -> None:
    ours = {env_id for env_id in gym.registry if env_id.startswith("fedsimenv/")}
    assert ours == set(fedsimenv.ENV_IDS) == set(ID_KWARGS)


@pytest.mark.parametrize("env_id", fedsimenv.ENV_IDS)
def test_gymnasium_check_env_passes_without_warnings(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array", **ID_KWARGS[env_id]).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env, skip_render_check=False)


@pytest.mark.parametrize("env_id", fedsimenv.ENV_IDS)
def test_sb3_check_env_passes_without_warnings(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(env_id, disable_env_checker=True, **ID_KWARGS[env_id])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env, warn=True)


def test_registered_id_makes_the_env_with_a_scenario_kwarg() -> None:
    env = gym.make(fedsimenv.ENV_ID, scenario="tiny", overrides={"episode.max_rounds": 2})
    observation, _ = env.reset(seed=3)
    assert env.observation_space.contains(observation)
    steps = 0
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(env.action_space.sample())
        steps += 1
    assert steps == 2 and info["round"] == 2


def test_registered_ids_pass_kwargs_through() -> None:
    fast = gym.make(fedsimenv.FAST_ENV_ID, reward="accuracy-latency-energy").unwrapped
    assert isinstance(fast, WirelessFLEnv)
    assert fast.config.trainer == "surrogate" and fast.config.reward.name == "accuracy-latency-energy"
    discrete = gym.make(fedsimenv.DISCRETE_ENV_ID, levels=3, trainer="surrogate")
    assert isinstance(discrete.action_space, gym.spaces.MultiDiscrete)
    assert discrete.action_space.nvec.tolist() == [4] * 10


def test_observation_keys_do_not_clash_with_torch_module_attributes() -> None:
    # SB3 builds an nn.ModuleDict keyed by the observation keys.
    import torch

    env = WirelessFLEnv("tiny")
    assert isinstance(env.observation_space, gym.spaces.Dict)
    for key in env.observation_space.spaces:
        assert not hasattr(torch.nn.Module(), key), key
        space = env.observation_space[key]
        assert isinstance(space, gym.spaces.Box)
        assert np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))
