"""RL workflow: `fedsimenv train` writes a replayable policy; PPO on the fast env beats random."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from agents import AgentContext, make_agent
from fedsimenv.cli import main
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.rl_training import train_policy
from fedsimenv.scenario import load_scenario


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_train_cli_writes_policy_curve_and_config_and_run_replays_it(algo: str, tmp_path: Path) -> None:
    out = tmp_path / algo
    args = [
        "train",
        "tiny",
        "--algo",
        algo,
        "--timesteps",
        {"ppo": "150", "sac": "60"}[algo],  # SAC is ~30x slower per step
        "--trainer",
        "surrogate",
        "--out",
        str(out),
    ]
    assert main([*args, "--set", "episode.max_rounds=5"]) == 0
    for name in ("policy.zip", "train.json", "config.yaml", "learning_curve.csv", "learning_curve.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "learning_curve.csv").open()))
    assert len(rows) >= 10 and {"episode", "timesteps", "return", "length"} <= set(rows[0])
    assert json.loads((out / "train.json").read_text())["algo"] == algo
    assert main([*args, "--set", "episode.max_rounds=5"]) == 2  # policy exists: refused
    run_dir = tmp_path / "run"
    agent = f"{algo}:{out}/policy.zip"
    run_args = ["run", "tiny", "--agent", agent, "--rounds", "3", "--set", "trainer=surrogate"]
    assert main([*run_args, "--out", str(run_dir), "--quiet"]) == 0
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3
    assert main(["run", "tiny", "--agent", f"{algo}:{tmp_path}/missing.zip", "--quiet"]) == 2
    assert main(["run", "tiny", "--agent", "dqn:x.zip", "--quiet"]) == 2


def _mean_return(env: WirelessFLEnv, agent_name: str, seeds: range) -> float:
    import gymnasium as gym

    assert isinstance(env.action_space, gym.spaces.Box)
    returns = []
    for seed in seeds:
        agent = make_agent(agent_name, AgentContext.from_scenario(env.config, env.action_space), seed=seed)
        obs, info = env.reset(seed=seed)
        agent.reset(info)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.slow  # learning quality: 3000 PPO steps; the CLI test above trains and replays a policy fast
def test_ppo_briefly_trained_on_the_fast_tiny_scenario_beats_random(tmp_path: Path) -> None:
    config = load_scenario("tiny", {"trainer": "surrogate"})
    train_policy(config, "ppo", 3000, tmp_path, seed=0)
    env = WirelessFLEnv(config)
    seeds = range(500, 520)  # evaluation episodes the policy never trained on
    ppo = _mean_return(env, f"ppo:{tmp_path}/policy.zip", seeds)
    random = _mean_return(env, "random", seeds)
    print(f"mean return over {len(seeds)} episodes: PPO {ppo:.4f}, random {random:.4f}")
    assert ppo > random
