"""Observation contents, action clipping, rewards, episode end, rendering, wrappers, vector envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import agents  # noqa: F401 - registers the min-max-latency allocator
import fedsimenv
from fedsimenv.actions import decode_action
from fedsimenv.env import WirelessFLEnv
from fedsimenv.wrappers import (
    DictActionWrapper,
    MultiDiscreteActionWrapper,
    ScaledFlatObservation,
    WirelessFLDiscreteEnv,
)


def fast(**overrides: Any) -> WirelessFLEnv:
    return WirelessFLEnv("tiny", trainer="surrogate", overrides=overrides)


def test_observation_tracks_history_budgets_and_devices() -> None:
    env = fast(**{"episode.time_budget_s": 1000.0, "episode.energy_budget_j": 100.0})
    obs, _ = env.reset(seed=0)
    assert obs["rounds_since_selected"].tolist() == [0.0] * 10
    assert obs["battery_level"].tolist() == [1.0] * 10 and obs["available"].tolist() == [1.0] * 10
    n = env.num_devices
    select = np.where(np.arange(n) < 3, 1.0, -1.0)
    action = np.concatenate([select, -np.ones(n), np.zeros(n)]).astype(np.float32)
    obs, _, _, _, info = env.step(action)
    obs, _, _, _, info = env.step(action)
    report = env.last_report
    assert report is not None
    assert obs["rounds_since_selected"].tolist() == [0.0] * 3 + [2.0] * 7
    np.testing.assert_allclose(obs["last_compute_time_s"][:3], report.compute_time_s[:3], rtol=1e-6)
    np.testing.assert_allclose(obs["last_upload_time_s"][:3], report.upload_time_s[:3], rtol=1e-6)
    assert obs["last_compute_time_s"][3:].tolist() == [0.0] * 7
    assert obs["time_fraction"][0] == pytest.approx(info["sim_time_s"] / 1000.0, rel=1e-6)
    assert obs["energy_fraction"][0] == pytest.approx(info["energy_j"] / 100.0, rel=1e-6)
    assert obs["accuracy"][0] == pytest.approx(info["accuracy"], rel=1e-6)
    assert obs["loss"][0] == pytest.approx(info["loss"], rel=1e-6)


def test_battery_level_and_availability_come_from_the_simulator() -> None:
    env = fast(
        **{
            "devices.battery_capacity_j": 0.05,
            "devices.availability": {"on_to_off_rate_per_s": 0.5, "off_to_on_rate_per_s": 0.5},
        }
    )
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        obs, *_ = env.step(np.ones(30, dtype=np.float32))
        np.testing.assert_allclose(obs["battery_level"], env.simulator.battery_j / 0.05, rtol=1e-6)
        assert env.simulator.availability is not None
        assert obs["available"].tolist() == env.simulator.availability.is_on.astype(float).tolist()


def test_1000_random_actions_with_nan_inf_and_out_of_range_values_never_raise() -> None:
    env = fast(**{"episode.max_rounds": 20})
    rng = np.random.default_rng(0)
    specials = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 7.0, -3.0])
    env.reset(seed=0)
    for step in range(1000):
        action = rng.uniform(-2, 2, size=30)
        mask = rng.random(30) < 0.3
        action[mask] = rng.choice(specials, size=int(mask.sum()))
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs), step
        assert np.isfinite(float(reward)) and 1 <= info["num_selected"] <= 10
        # Documented clipping: the env did what the sanitised action decodes to.
        cfg = env.config
        expected = decode_action(action, 10, cfg.action, cfg.network.bandwidth_hz)
        assert env.last_report is not None
        np.testing.assert_array_equal(env.last_report.selected, expected.selected)
        if terminated or truncated:
            env.reset()
    with pytest.raises(ValueError, match="3 \\* num_devices = 30"):
        env.step(np.zeros(29))


def test_all_nan_action_selects_device_0_at_half_rho_max_with_all_bandwidth() -> None:
    env = fast()
    env.reset(seed=0)
    env.step(np.full(30, np.nan))
    report = env.last_report
    assert report is not None
    assert report.selected.tolist() == [True] + [False] * 9
    assert report.pruning_rate[0] == pytest.approx(0.45)
    assert report.bandwidth_hz[0] == pytest.approx(20e6)


@pytest.mark.parametrize(
    ("reward", "terms"),
    [
        ("accuracy-under-budget", {"accuracy_gain"}),
        ("accuracy-latency-energy", {"accuracy", "latency", "energy"}),
        ("time-to-target", {"time", "target_bonus"}),
    ],
)
def test_rewards_are_the_sum_of_their_reported_terms(reward: str, terms: set[str]) -> None:
    env = WirelessFLEnv(
        "tiny", trainer="surrogate", reward=reward, overrides={"episode.target_accuracy": 0.6}
    )
    env.reset(seed=0)
    done, accuracy = False, 0.0
    while not done:
        reference_s = env.system_view().reference_latency_s()  # the coming round's
        _, r, terminated, truncated, info = env.step(np.ones(30, dtype=np.float32))
        assert set(info["reward_terms"]) == terms
        if reward == "accuracy-under-budget":
            gain = info["reward_terms"]["accuracy_gain"]
            assert gain == pytest.approx(info["accuracy"] - accuracy) or accuracy == 0.0
        assert r == pytest.approx(sum(info["reward_terms"].values()))
        accuracy = info["accuracy"]
        done = terminated or truncated
    assert terminated and info["episode_end"] == "target_accuracy" and info["accuracy"] >= 0.6
    if reward == "time-to-target":
        assert info["reward_terms"]["target_bonus"] == 10.0
        assert info["reward_terms"]["time"] == pytest.approx(-0.02 * info["round_latency_s"] / reference_s)


def test_time_to_target_without_a_target_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"episode\.target_accuracy"):
        WirelessFLEnv("tiny", trainer="surrogate", reward="time-to-target")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"episode.time_budget_s": 3.0}, "time_budget"),
        ({"episode.energy_budget_j": 0.2}, "energy_budget"),
        ({"episode.max_rounds": 4}, "max_rounds"),
    ],
)
def test_budgets_and_round_limit_truncate(overrides: dict[str, Any], reason: str) -> None:
    env = fast(**{"episode.max_rounds": 200, **overrides})
    env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(np.ones(30, dtype=np.float32))
        assert not terminated
        done = truncated
        if not done:
            assert info["episode_end"] == ""
    assert info["episode_end"] == reason
    if reason == "time_budget":
        assert info["sim_time_s"] >= 3.0
    if reason == "energy_budget":
        assert info["energy_j"] >= 0.2


def test_rgb_array_frame_shows_the_cell_and_changes_after_a_round() -> None:
    env = WirelessFLEnv("tiny", trainer="surrogate", render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    env.step(np.ones(30, dtype=np.float32))
    after = env.render()
    assert before is not None and after is not None
    assert before.dtype == np.uint8 and before.ndim == 3 and before.shape[2] == 3
    assert before.shape == after.shape and not np.array_equal(before, after)
    with pytest.raises(ValueError, match="rgb_array"):
        WirelessFLEnv("tiny", render_mode="human")


def test_dict_action_wrapper_decodes_readable_actions() -> None:
    env = DictActionWrapper(fast())
    env.reset(seed=0)
    action = {
        "selected": np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
        "pruning_rate": np.array([0.0, 0.5, 0.9, 0, 0, 0, 0, 0, 0, np.nan]),
        "bandwidth_share": np.array([0.5, 0.25, 0, 0, 0, 0, 0, 0, 0, 0.25]),
    }
    env.step(action)
    report = env.unwrapped.last_report  # type: ignore[attr-defined]
    assert np.flatnonzero(report.selected).tolist() == [0, 1, 9]
    np.testing.assert_allclose(report.pruning_rate[[0, 1, 9]], [0.0, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(report.bandwidth_hz[[0, 1, 9]], [10e6, 5e6, 5e6], rtol=1e-5)
    env.step(
        {"selected": np.zeros(10), "pruning_rate": np.full(10, np.inf), "bandwidth_share": np.eye(10)[4]}
    )
    report = env.unwrapped.last_report  # type: ignore[attr-defined]
    assert np.flatnonzero(report.selected).tolist() == [4]
    assert report.pruning_rate[4] == pytest.approx(0.9)


def test_multidiscrete_levels_and_allocators() -> None:
    latency = {}
    for allocator in ("equal", "min-max-latency"):
        env = MultiDiscreteActionWrapper(fast(), levels=4, allocator=allocator)
        env.reset(seed=0)
        env.step(np.array([0, 1, 2, 3, 4, 0, 0, 9, -2, 0], dtype=np.int64))
        report = env.unwrapped.last_report  # type: ignore[attr-defined]
        assert np.flatnonzero(report.selected).tolist() == [1, 2, 3, 4, 7]
        np.testing.assert_allclose(report.pruning_rate[[1, 2, 3, 4, 7]], [0.0, 0.3, 0.6, 0.9, 0.9], atol=1e-6)
        assert report.bandwidth_hz.sum() == pytest.approx(20e6)
        latency[allocator] = report.round_latency_s
        if allocator == "min-max-latency":  # exact level costs: every selected device ends together
            finish = report.upload_finish_s[report.selected]
            assert finish.max() - finish.min() < 1e-4 * finish.max()
        env.step(np.zeros(10, dtype=np.int64))  # nobody on: the strongest channel at rho = 0
        report = env.unwrapped.last_report  # type: ignore[attr-defined]
        assert report.selected.sum() == 1 and report.pruning_rate[report.selected][0] == 0.0
        gain = report.channel_gain_linear
        assert report.selected[int(np.argmax(gain))]
    assert latency["min-max-latency"] < latency["equal"]
    with pytest.raises(ValueError, match="allowed values: equal, min-max-latency"):
        WirelessFLDiscreteEnv(allocator="best", trainer="surrogate")


def test_scaled_flat_observation_is_in_minus_one_one() -> None:
    env = ScaledFlatObservation(fast())
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("vector_cls", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_gymnasium_vector_envs_step_and_autoreset(vector_cls: Any) -> None:
    def make() -> gym.Env[Any, Any]:
        return gym.make(fedsimenv.FAST_ENV_ID, overrides={"episode.max_rounds": 3})

    envs = vector_cls([make, make])
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert obs["channel_gain_db"].shape == (2, 10)
        assert not np.array_equal(obs["distance_m"][0], obs["distance_m"][1])
        for _ in range(4):
            obs, rewards, _terminated, _truncated, _ = envs.step(envs.action_space.sample())
            assert rewards.shape == (2,)
        assert envs.single_observation_space.contains({k: v[0] for k, v in obs.items()})
    finally:
        envs.close()


def test_sb3_subproc_vec_env_runs_the_fast_env() -> None:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from fedsimenv.experiments.rl_training import _EnvFactory
    from fedsimenv.scenario import load_scenario

    config = load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 3})
    venv = SubprocVecEnv([_EnvFactory(config), _EnvFactory(config)])
    try:
        venv.seed(0)
        obs = venv.reset()
        for _ in range(4):
            obs, rewards, dones, _ = venv.step(np.zeros((2, 30), dtype=np.float32))
        assert isinstance(obs, np.ndarray) and obs.shape == (2, 10 * 9 + 5)  # 9 per-device features, 5 global
        assert rewards.shape == (2,) and dones.tolist() == [False, False]  # 4 steps: an episode of 3, + 1
    finally:
        venv.close()
