"""Train an RL pruning / selection / bandwidth policy and evaluate it on a held-out seed.

    python scenarios/train_rl_policy.py --scenario tiny --total-timesteps 2000 --out runs/ppo-tiny

The script is ``fedsimenv train`` (:func:`fedsimenv.experiments.rl_training.train_policy`: the one RL
training entry point) followed by one greedy evaluation episode through the same agent that
``fedsimenv run --agent ppo:DIR/policy.zip`` uses. Each env step is one federated round; with the real
torch trainer that is real training, so long runs are slow on a CPU: ``--trainer surrogate`` makes
them cheap. Writes what ``fedsimenv train`` writes (``policy.zip``, ``train.json``, ``config.yaml``,
the learning curve) and ``eval.jsonl`` (the evaluation episode's metric rows).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="tiny", help="built-in scenario name or YAML path")
    parser.add_argument("--algo", default="ppo", choices=("ppo", "sac"))
    parser.add_argument("--rounds", type=int, default=10, help="rounds per training episode")
    parser.add_argument("--total-timesteps", type=int, default=2000, help="env steps (rounds) to train")
    parser.add_argument("--trainer", default=None, help="trainer name (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bc-episodes", type=int, default=40, help="behaviour-cloning episodes from optimal")
    parser.add_argument("--out", type=Path, default=Path("runs/ppo"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from fedsimenv.experiments.rl_training import TrainSettings, train_policy
    from fedsimenv.experiments.session import run_episode
    from fedsimenv.scenario import load_scenario

    args = parse_args(argv)
    overrides: dict[str, object] = {"episode.max_rounds": args.rounds}
    if args.trainer is not None:
        overrides["trainer"] = args.trainer
    config = load_scenario(args.scenario, overrides)

    # 1. Train (behaviour cloning from optimal, then RL; real-training evaluation is left to step 2).
    settings = TrainSettings(
        algo=args.algo,
        policy="device",  # the per-device policy (PPO and SAC)
        timesteps=args.total_timesteps,
        seed=args.seed,
        n_steps=min(128, args.total_timesteps),
        batch_size=min(64, args.total_timesteps),
        eval_every=0,
        bc_episodes=args.bc_episodes,
        checkpoint_every=0,
    )
    train_policy(config, settings, args.out, overwrite=True)

    # 2. Evaluate greedily on a held-out seed, as `fedsimenv run --agent ppo:DIR/policy.zip` would.
    rows = run_episode(config, f"{args.algo}:{args.out / 'policy.zip'}", seed=args.seed + 1000)
    (args.out / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(
        f"trained {args.algo.upper()} for {args.total_timesteps} rounds; evaluation: {len(rows)} rounds, "
        f"final accuracy {rows[-1]['accuracy']:.4f}, simulated {rows[-1]['sim_time_s']:.2f} s; "
        f"wrote {args.out}/policy.zip"
    )


if __name__ == "__main__":
    main()
