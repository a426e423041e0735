"""Compare the analytic optimal agent, an RL policy and heuristics on the same scenario and seeds.

    python scenarios/compare_optimal_rl_heuristics.py --scenario default --seeds 3 --out runs/cmp
    python scenarios/compare_optimal_rl_heuristics.py --policy runs/ppo/policy.zip   # a trained policy

Without ``--policy`` a PPO policy is trained first for ``--rl-timesteps`` rounds with
``fedsimenv train``'s entry point (:func:`fedsimenv.experiments.rl_training.train_policy`). The policy
runs as agent ``ppo:PATH`` beside the others through ``fedsimenv.experiments.compare``, which writes
summary.md, summary.csv and the plots to ``--out``. ``--policy`` takes what ``fedsimenv train`` writes
(``DIR/policy.zip`` with its ``train.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


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


def main(argv: list[str] | None = None) -> None:
    from fedsimenv.experiments.compare import compare_agents
    from fedsimenv.scenario import load_scenario

    args = parse_args(argv)
    overrides = {} if args.rounds is None else {"episode.max_rounds": args.rounds}
    config = load_scenario(args.scenario, overrides)

    policy = args.policy
    if policy is None:
        from fedsimenv.experiments.rl_training import train_policy

        train_policy(config, "ppo", args.rl_timesteps, args.out / "ppo", seed=config.seed, overwrite=True)
        policy = args.out / "ppo" / "policy.zip"

    agents = ["optimal", f"ppo:{policy}", *(a for a in args.baselines.split(",") if a)]
    seeds = [config.seed + i for i in range(args.seeds)]
    result = compare_agents(config, agents, seeds, args.out / "compare", engine="serial", overwrite=True)
    print((args.out / "compare" / "summary.md").read_text(encoding="utf-8"))
    print(f"{len(result.runs)} runs, {len(result.failed)} failed; plots in {args.out / 'compare'}")


if __name__ == "__main__":
    main()
