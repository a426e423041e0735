"""The env passes the peer libraries' own checkers, with no warnings."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env as gym_check_env

import fedsimenv
from fedsimenv.env import WirelessFLEnv


def test_gymnasium_check_env_passes_without_warnings() -> None:
    env = WirelessFLEnv("tiny", overrides={"episode.max_rounds": 5})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env, skip_render_check=True)


def test_sb3_check_env_passes_without_warnings() -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = WirelessFLEnv("tiny", overrides={"episode.max_rounds": 5})
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
