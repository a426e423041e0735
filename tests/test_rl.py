"""RL workflow: `fedsimenv train` (behaviour cloning + PPO on the surrogate, evaluations on another
trainer) writes a policy that replays bit-identically and beats `random` on real training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from rl_helpers import assert_agent_acts_as_sb3_predicts

from agents import AgentContext, make_agent
from fedsimenv.cli import main
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.rl_eval import agent_decider, policy_decider, run_real_episode
from fedsimenv.experiments.rl_training import TrainSettings, train_policy
from fedsimenv.scenario import load_scenario

FAST = ["--bc-episodes", "2", "--bc-epochs", "2", "--n-steps", "32", "--batch-size", "32"]


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_train_cli_writes_policy_curves_and_evaluations_and_run_replays_it(algo: str, tmp_path: Path) -> None:
    out = tmp_path / algo
    args = ["train", "tiny", "--algo", algo, "--trainer", "surrogate", "--out", str(out), *FAST]
    args += ["--timesteps", {"ppo": "64", "sac": "40"}[algo], "--set", "episode.max_rounds=5"]
    args += [
        "--eval-every",
        "32",
        "--eval-seeds",
        "1",
        "--eval-trainer",
        "surrogate",
        "--eval-references",
        "optimal",
    ]
    assert main(args) == 0
    for name in (
        "policy.zip",
        "final_policy.zip",
        "train.json",
        "config.yaml",
        "learning_curve.csv",
        "learning_curve.png",
        "evaluations.csv",
        "sb3_log/progress.csv",
        "checkpoints/step_0.zip",  # the behaviour-cloned start
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "learning_curve.csv").open()))
    assert len(rows) >= 5 and {"episode", "timesteps", "return", "length"} <= set(rows[0])
    evaluations = list(csv.DictReader((out / "evaluations.csv").open()))
    assert [int(r["timesteps"]) for r in evaluations][:2] == [0, 32]
    meta = json.loads((out / "train.json").read_text())
    assert (
        meta["algo"] == algo and meta["reward"] == "time-to-target-shaped" and "optimal" in meta["references"]
    )
    if algo == "ppo":  # anchored to the clone by default; drift from it reported at each evaluation
        assert meta["anchor"] == {**meta["anchor"], "coef": 1.0, "active": True}
        assert float(evaluations[0]["kl_to_clone"]) == 0.0 and float(evaluations[-1]["kl_to_clone"]) > 0
    assert main(args) == 2  # policy exists: refused
    run_dir = tmp_path / "run"
    run_args = [
        "run",
        "tiny",
        "--agent",
        f"{algo}:{out}/policy.zip",
        "--rounds",
        "3",
        "--set",
        "trainer=surrogate",
    ]
    assert main([*run_args, "--out", str(run_dir), "--quiet"]) == 0
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3
    assert main(["run", "tiny", "--agent", f"{algo}:{tmp_path}/missing.zip", "--quiet"]) == 2
    assert main(["run", "tiny", "--agent", "dqn:x.zip", "--quiet"]) == 2


def test_train_refuses_bad_flags_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "tiny", "--trainer", "surrogate", "--out", str(tmp_path / "x")]
    assert main([*base, "--algo", "sac", "--anchor-coef", "-1"]) == 2
    assert "--anchor-coef must be a finite number >= 0" in capsys.readouterr().err
    with pytest.raises(
        ValueError, match="--policy 'set' is not available for sac; allowed values: device, mlp"
    ):
        train_policy(load_scenario("tiny"), TrainSettings(algo="sac", policy="set"), tmp_path / "y")
    assert main([*base, "--tensorboard", str(tmp_path / "tb")]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err
    assert main([*base, "--eval-seeds", "0"]) == 2
    assert not (tmp_path / "x" / "policy.zip").exists()


def test_saved_device_policy_replays_bit_identically_and_on_another_n(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    config = load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 4})
    settings = TrainSettings(
        timesteps=64, n_steps=32, batch_size=32, bc_episodes=2, bc_epochs=2, eval_every=0, verbose=False
    )
    train_policy(config, settings, tmp_path)
    trusted = PPO.load(tmp_path / "policy.zip", device="cpu")  # our own file: SB3's loader as reference
    assert_agent_acts_as_sb3_predicts("ppo", trusted, config, tmp_path)
    # The same file acts in a 6-device scenario, without retraining.
    small = load_scenario(config, {"cell.num_devices": 6})
    env6 = WirelessFLEnv(small)
    agent6 = make_agent(
        f"ppo:{tmp_path}/policy.zip",
        AgentContext.from_scenario(small, env6.action_space, env6.system_view),  # type: ignore[arg-type]
    )
    obs, info = env6.reset(seed=1)
    assert agent6.act(obs, info).shape == (18,)


def test_short_ppo_on_the_surrogate_beats_random_on_real_training(tmp_path: Path) -> None:
    config = load_scenario("tiny", {"trainer": "surrogate"})
    settings = TrainSettings(
        timesteps=64, n_steps=32, batch_size=32, bc_episodes=4, bc_epochs=20, eval_every=0, verbose=False
    )
    train_policy(config, settings, tmp_path)
    from agents.rl_policy import load_policy

    policy = load_policy(tmp_path / "policy.zip", json.loads((tmp_path / "train.json").read_text()), 10)
    real = load_scenario("tiny", {"reward.name": "time-to-target-shaped", "episode.max_rounds": 2})
    seed = 4242  # never used in training
    ppo = run_real_episode(real, seed, policy_decider(policy))
    random = run_real_episode(real, seed, agent_decider("random"), factory=True)
    assert ppo["return"] > random["return"], (ppo["return"], random["return"])


@pytest.mark.slow  # 30 real-training episodes
def test_trained_policy_reaches_the_target_on_real_training_on_unseen_seeds(tmp_path: Path) -> None:
    config = load_scenario("tiny", {"trainer": "surrogate"})
    train_policy(config, TrainSettings(timesteps=2048, eval_every=0, verbose=False), tmp_path)
    from agents.rl_policy import load_policy

    policy = load_policy(tmp_path / "policy.zip", json.loads((tmp_path / "train.json").read_text()), 10)
    real = load_scenario("tiny", {"reward.name": "time-to-target-shaped"})
    for seed in range(900, 905):
        ppo = run_real_episode(real, seed, policy_decider(policy))
        greedy = run_real_episode(real, seed, agent_decider("greedy-channel"), factory=True)
        assert ppo["time_to_target_s"] is not None
        assert greedy["time_to_target_s"] is None or ppo["time_to_target_s"] < greedy["time_to_target_s"]
