"""One seed reproduces a run exactly on CPU; library code leaves the global RNGs alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fedsimenv.cli import main
from fedsimenv.env import WirelessFLEnv


def _run(tmp_path: Path, name: str, seed: int, agent: str = "random") -> bytes:
    out = tmp_path / name
    code = main(
        ["run", "tiny", "--agent", agent, "--rounds", "3", "--seed", str(seed), "--out", str(out), "--quiet"]
    )
    assert code == 0
    return (out / "metrics.jsonl").read_bytes()


def test_same_seed_gives_identical_metrics_and_other_seed_differs(tmp_path: Path) -> None:
    first = _run(tmp_path, "a", seed=7)
    second = _run(tmp_path, "b", seed=7)
    other = _run(tmp_path, "c", seed=8)
    assert first == second
    assert first != other
    assert len(first.splitlines()) == 3


@pytest.mark.parametrize("trainer", ["torch", "surrogate"])
def test_rollouts_with_same_seed_and_actions_are_identical(trainer: str) -> None:
    # 20 rounds of real training (CPU) or of the surrogate: observations, rewards and infos match.
    envs = [WirelessFLEnv("tiny", trainer=trainer, overrides={"episode.max_rounds": 20}) for _ in range(2)]
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, 30).astype(np.float32) for _ in range(20)]
    traces = []
    for env in envs:
        obs, _ = env.reset(seed=11)
        trace: list[object] = [obs]
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            trace.append((obs, reward, terminated, truncated, info))
        traces.append(trace)
    assert repr(traces[0]) == repr(traces[1])


def test_reset_without_seed_starts_a_new_episode_not_a_repeat() -> None:
    env = WirelessFLEnv("tiny")
    first, _ = env.reset(seed=1)
    second, _ = env.reset()
    assert not np.array_equal(first["distance_m"], second["distance_m"])
    again, _ = env.reset(seed=1)
    np.testing.assert_array_equal(first["distance_m"], again["distance_m"])


def test_library_code_does_not_touch_global_rngs() -> None:
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 - checking the global state itself
    torch_state = torch.random.get_rng_state()
    env = WirelessFLEnv("tiny", overrides={"episode.max_rounds": 2})
    env.reset(seed=5)
    env.step(np.zeros(3 * env.num_devices, dtype=np.float32))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state(legacy=False)  # noqa: NPY002
    assert np.array_equal(after["state"]["key"], np_state["state"]["key"])
    assert after["state"]["pos"] == np_state["state"]["pos"]
