"""Compare the analytic optimal agent, an RL policy and heuristics on the same scenario and seeds.

    python scenarios/compare_optimal_rl_heuristics.py --scenario default --seeds 3 --out runs/cmp
    python scenarios/compare_optimal_rl_heuristics.py --policy runs/ppo   # what fedsimenv train wrote

Without ``--policy`` a policy is trained first for ``--rl-timesteps`` rounds with ``fedsimenv train``'s
entry point (:func:`fedsimenv.experiments.rl_training.train_policy`, on the surrogate, without
training-time evaluation). The policy runs as agent ``ALGO:PATH`` (the algorithm read from its
``train.json``) beside the others through ``fedsimenv.experiments.compare``, which writes summary.md,
summary.csv and the plots to ``--out``. ``--policy`` takes what ``fedsimenv train`` writes: its
directory or ``DIR/policy.zip``. Exits 1 when any run failed.
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
    parser.add_argument("--policy", type=Path, default=None, help="fedsimenv train's DIR or DIR/policy.zip")
    parser.add_argument("--rl-timesteps", type=int, default=256, help="PPO training rounds without --policy")
    parser.add_argument(
        "--trainer", default=None, help="trainer to train on without --policy (e.g. surrogate)"
    )
    parser.add_argument(
        "--bc-episodes", type=int, default=40, help="behaviour-cloning episodes without --policy"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/compare-optimal-rl"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import json

    from fedsimenv.experiments.compare import compare_agents
    from fedsimenv.scenario import load_scenario

    args = parse_args(argv)
    overrides = {} if args.rounds is None else {"episode.max_rounds": args.rounds}
    config = load_scenario(args.scenario, overrides)

    policy = args.policy
    if policy is None:
        from fedsimenv.experiments.rl_training import TrainSettings, train_policy

        train_config = config if args.trainer is None else load_scenario(config, {"trainer": args.trainer})
        settings = TrainSettings(
            timesteps=args.rl_timesteps,
            seed=config.seed,
            eval_every=0,
            n_steps=min(128, args.rl_timesteps),
            batch_size=min(64, args.rl_timesteps),
            bc_episodes=args.bc_episodes,
            checkpoint_every=0,
        )
        train_policy(train_config, settings, args.out / "ppo", overwrite=True)
        policy = args.out / "ppo" / "policy.zip"
    elif policy.is_dir():
        policy = policy / "policy.zip"
    meta_path = policy.parent / "train.json"
    if not meta_path.is_file():
        raise SystemExit(f"--policy {args.policy}: {meta_path} (written by fedsimenv train) not found")
    algo = json.loads(meta_path.read_text(encoding="utf-8")).get("algo", "ppo")

    agents = ["optimal", f"{algo}:{policy}", *(a for a in args.baselines.split(",") if a)]
    seeds = [config.seed + i for i in range(args.seeds)]
    result = compare_agents(config, agents, seeds, args.out / "compare", engine="serial", overwrite=True)
    print((args.out / "compare" / "summary.md").read_text(encoding="utf-8"))
    print(f"{len(result.runs)} runs, {len(result.failed)} failed; plots in {args.out / 'compare'}")
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
