"""Compare the analytic optimal agent, an RL policy and heuristics on the same scenario and seeds.

    python scenarios/compare_optimal_rl_heuristics.py --scenario default --seeds 3 --out runs/cmp
    python scenarios/compare_optimal_rl_heuristics.py --policy runs/ppo/policy.zip   # a trained policy

Without ``--policy`` a PPO policy is trained first for ``--rl-timesteps`` rounds (see
train_rl_policy.py). The policy is registered as agent ``ppo`` for this process, and every agent runs
through ``fedsimenv.experiments.compare`` (serially, so the registration is visible), which writes summary.md,
summary.csv and the plots to ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="tiny")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per episode (default: scenario's)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--baselines", default="equal,uniform-pruning,greedy-channel", help="heuristic agents"
    )
    parser.add_argument("--policy", type=Path, default=None, help="a trained SB3 PPO policy.zip")
    parser.add_argument("--rl-timesteps", type=int, default=256, help="PPO training rounds without --policy")
    parser.add_argument("--out", type=Path, default=Path("runs/compare-optimal-rl"))
    return parser.parse_args(argv)


def register_policy_agent(policy_path: Path) -> None:
    """Register agent ``ppo``: greedy actions of the SB3 policy at ``policy_path``."""
    from stable_baselines3 import PPO

    from agents import AGENTS, Agent

    class PolicyAgent(Agent):
        policy: ClassVar[Any] = PPO.load(policy_path, device="cpu")

        def act(
            self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
        ) -> NDArray[np.float32]:
            action, _ = self.policy.predict(dict(observation), deterministic=True)
            return np.asarray(action, dtype=np.float32)

    if "ppo" not in AGENTS.names():
        AGENTS.register("ppo")(PolicyAgent)


def main(argv: list[str] | None = None) -> None:
    from fedsimenv.experiments.compare import compare_agents
    from fedsimenv.scenario import load_scenario

    args = parse_args(argv)
    overrides = {} if args.rounds is None else {"episode.max_rounds": args.rounds}
    config = load_scenario(args.scenario, overrides)

    policy = args.policy
    if policy is None:
        from scenarios.train_rl_policy import main as train_policy

        rl_out = args.out / "ppo"
        rounds = str(config.episode.max_rounds)
        steps = str(args.rl_timesteps)
        train_policy(
            [
                "--scenario",
                args.scenario,
                "--rounds",
                rounds,
                "--total-timesteps",
                steps,
                "--out",
                str(rl_out),
            ]
        )
        policy = rl_out / "policy.zip"
    register_policy_agent(policy)

    agents = ["optimal", "ppo", *(a for a in args.baselines.split(",") if a)]
    seeds = [config.seed + i for i in range(args.seeds)]
    result = compare_agents(config, agents, seeds, args.out / "compare", engine="serial", overwrite=True)
    print((args.out / "compare" / "summary.md").read_text(encoding="utf-8"))
    print(f"{len(result.runs)} runs, {len(result.failed)} failed; plots in {args.out / 'compare'}")


if __name__ == "__main__":
    main()
