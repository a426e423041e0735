"""Train an RL pruning / selection / bandwidth policy with PPO (Stable-Baselines3) and evaluate it.

    python scenarios/train_rl_policy.py --scenario tiny --total-timesteps 2000 --out runs/ppo-tiny

Each env step is one federated round; with the real torch trainer that is real training, so long
runs are slow on a CPU. The surrogate trainer (``--trainer``, once registered) makes them cheap.
Writes ``policy.zip`` (SB3 format) and ``eval.jsonl`` (one greedy evaluation episode).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fedsimenv.env import WirelessFLEnv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="tiny", help="built-in scenario name or YAML path")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per training episode")
    parser.add_argument("--total-timesteps", type=int, default=2000, help="env steps (rounds) to train")
    parser.add_argument("--n-steps", type=int, default=64, help="PPO rollout length")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--trainer", default=None, help="trainer name (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/ppo"))
    return parser.parse_args(argv)


def make_env(scenario: str, rounds: int, trainer: str | None) -> WirelessFLEnv:
    return WirelessFLEnv(scenario, trainer=trainer, overrides={"episode.max_rounds": rounds})


def main(argv: list[str] | None = None) -> None:
    from stable_baselines3 import PPO

    from fedsimenv.experiments.rundir import METRIC_KEYS

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = make_env(args.scenario, args.rounds, args.trainer)

    # 1. Train: Dict observation -> MultiInputPolicy; the Box(-1, 1, 3N) action is decoded by the env.
    n_steps = max(2, min(args.n_steps, args.total_timesteps))
    model = PPO(
        "MultiInputPolicy",
        env,
        n_steps=n_steps,
        batch_size=n_steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=args.total_timesteps)
    model.save(args.out / "policy.zip")

    # 2. Evaluate greedily on a fresh episode with a held-out seed.
    eval_env = make_env(args.scenario, args.rounds, args.trainer)
    observation, info = eval_env.reset(seed=args.seed + 1000)
    rows, done = [], False
    while not done:
        action, _ = model.predict(observation, deterministic=True)
        observation, reward, terminated, truncated, info = eval_env.step(np.asarray(action))
        rows.append({key: info[key] for key in METRIC_KEYS if key in info} | {"reward": float(reward)})
        done = terminated or truncated
    (args.out / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(
        f"trained PPO for {args.total_timesteps} rounds; evaluation: {len(rows)} rounds, final accuracy "
        f"{rows[-1]['accuracy']:.4f}, simulated {rows[-1]['sim_time_s']:.2f} s; wrote {args.out}/policy.zip"
    )


if __name__ == "__main__":
    main()
