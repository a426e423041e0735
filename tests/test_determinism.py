"""One seed reproduces a run exactly on CPU; library code leaves the global RNGs alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from exact import assert_identical, state_dicts_identical

from fedsimenv.cli import main
from fedsimenv.env import WirelessFLEnv


def _run(tmp_path: Path, name: str, seed: int, agent: str = "random") -> list[dict[str, object]]:
    out = tmp_path / name
    code = main(
        ["run", "tiny", "--agent", agent, "--rounds", "3", "--seed", str(seed), "--out", str(out), "--quiet"]
    )
    assert code == 0
    # JSON floats round-trip exactly, so the parsed rows are the run's values.
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_same_seed_gives_identical_metrics_and_other_seed_differs(tmp_path: Path) -> None:
    first = _run(tmp_path, "a", seed=7)
    second = _run(tmp_path, "b", seed=7)
    other = _run(tmp_path, "c", seed=8)
    assert len(first) == 3
    assert_identical(first, second)
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    with pytest.raises(AssertionError):
        assert_identical(first, other)


def _rollout(trainer: str, rounds: int, seed: int) -> tuple[list[object], dict[str, Any] | None]:
    """Observations, rewards, flags and infos of ``rounds`` steps under fixed actions, and the
    trainer's final learning state (model weights and generator) where it has one."""
    env = WirelessFLEnv("tiny", trainer=trainer, overrides={"episode.max_rounds": rounds})
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, 30).astype(np.float32) for _ in range(rounds)]
    obs, info = env.reset(seed=seed)
    trace: list[object] = [(obs, info)]
    for action in actions:
        trace.append(env.step(action))
    state = env.trainer.state_dict() if trainer == "torch" else None
    return trace, state


@pytest.mark.parametrize(
    ("trainer", "rounds"),
    [
        ("torch", 4),
        ("surrogate", 20),
        pytest.param("torch", 20, marks=pytest.mark.slow),
    ],
)
def test_rollouts_with_same_seed_and_actions_are_identical(trainer: str, rounds: int) -> None:
    # Rounds of real training (CPU) or of the surrogate: observations, rewards, infos and the final
    # weights match exactly (arrays by value, floats by ==); another seed gives another rollout.
    # Four torch rounds train every device and aggregate several times, so a divergence shows.
    (trace, state), (again, state_again) = (_rollout(trainer, rounds, seed=11) for _ in range(2))
    assert len(trace) == rounds + 1
    assert_identical(trace, again)
    if state is not None:
        assert state_again is not None
        state_dicts_identical(state["model"], state_again["model"])
        assert torch.equal(state["generator"], state_again["generator"])
    other, _ = _rollout(trainer, rounds, seed=12)
    with pytest.raises(AssertionError):
        assert_identical(trace, other)


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
