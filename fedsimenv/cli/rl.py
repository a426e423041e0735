"""``fedsimenv calibrate`` (fit the surrogate to real runs) and ``fedsimenv train`` (an SB3 policy).

The work is done in :mod:`fedsimenv.experiments.calibrate` and :mod:`fedsimenv.experiments.rl_training`,
imported when the command runs (torch and Stable-Baselines3 load only then).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from fedsimenv.cli.common import EXIT_OK, add_set_option, parse_overrides, scenario_overrides


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fedsimenv.atomic import write_text_atomic
    from fedsimenv.experiments.calibrate import calibrate
    from fedsimenv.scenario import load_scenario

    config = load_scenario(args.scenario, scenario_overrides(args))
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} already exists; choose another --out or pass --overwrite")
    seed = config.seed if args.seed is None else args.seed
    print(
        f"fedsimenv calibrate scenario={config.name} runs={args.runs} rounds={config.episode.max_rounds} "
        f"seed={seed} (real training)"
    )

    done = 0

    def on_run(record: Any) -> None:
        nonlocal done
        done += 1
        final = record.rounds[-1]
        print(f"  run {done}/{args.runs}: {len(record.rounds)} rounds, final accuracy {final.accuracy:.4f}")

    calibration = calibrate(config, args.runs, seed, on_run, workers=args.workers)
    write_text_atomic(out, calibration.to_json())
    held, fit = calibration.error["held_out"], calibration.error["fit"]
    print(
        f"fit on {calibration.error['runs_fitted']} runs: accuracy MAE {fit['accuracy_mae']:.4f}; "
        f"held-out ({calibration.error['runs_held_out']} runs, {held['rounds']} rounds): accuracy MAE "
        f"{held['accuracy_mae']:.4f}, RMSE {held['accuracy_rmse']:.4f}, final-round MAE "
        f"{held['final_accuracy_mae']:.4f}, loss MAE {held['loss_mae']:.4f}"
    )
    print(f"wrote {out} (use it with learning.surrogate.calibration_file: {out})")
    return EXIT_OK


def add_calibrate_command(sub: Any) -> None:
    """Register the ``calibrate`` subcommand on the CLI's subparsers."""
    parser = sub.add_parser("calibrate", help="fit the surrogate trainer to real runs of a scenario")
    parser.add_argument("scenario", help="built-in scenario name or path to a YAML file")
    parser.add_argument("--runs", type=int, default=8, help="real runs K (the last K // 4 are held out)")
    parser.add_argument("--out", required=True, help="calibration JSON file to write")
    parser.add_argument("--rounds", type=int, help="rounds per run (overrides episode.max_rounds)")
    parser.add_argument("--seed", type=int, help="seed of the first run (default: the scenario's)")
    parser.add_argument(
        "--workers", type=int, default=1, help="parallel real runs (processes of one thread each)"
    )
    add_set_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=cmd_calibrate)


def cmd_train(args: argparse.Namespace) -> int:
    from fedsimenv.experiments.rl_training import train_policy
    from fedsimenv.scenario import load_scenario

    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise ValueError("fedsimenv train needs stable-baselines3: pip install 'fedsimenv[rl]'") from None
    overrides = parse_overrides(args.set)
    if args.trainer is not None:
        overrides["trainer"] = args.trainer
    config = load_scenario(args.scenario, overrides)
    seed = config.seed if args.seed is None else args.seed
    out = Path(args.out)
    print(
        f"fedsimenv train scenario={config.name} algo={args.algo} timesteps={args.timesteps} "
        f"trainer={config.trainer} seed={seed} out={out}"
    )
    curve = train_policy(
        config, args.algo, args.timesteps, out, seed, args.n_envs, args.vec_env, overwrite=args.overwrite
    )
    tail = [row["return"] for row in curve[-20:]]
    mean = f"{np.mean(tail):.4f}" if tail else "n/a"
    print(f"done: {len(curve)} episodes, mean return of the last {len(tail)}: {mean}")
    print(f"wrote {out}/policy.zip, train.json, config.yaml, learning_curve.csv, learning_curve.png")
    print(f"replay: fedsimenv run {args.scenario} --agent {args.algo}:{out}/policy.zip")
    return EXIT_OK


def add_train_command(sub: Any) -> None:
    """Register the ``train`` subcommand on the CLI's subparsers."""
    from fedsimenv.experiments.rl_training import ALGORITHMS, VEC_ENVS

    parser = sub.add_parser("train", help="train a Stable-Baselines3 policy on a scenario")
    parser.add_argument("scenario", help="built-in scenario name or path to a YAML file")
    parser.add_argument("--algo", choices=ALGORITHMS, default="ppo")
    parser.add_argument("--timesteps", type=int, default=20_000, help="environment steps (rounds)")
    parser.add_argument("--out", required=True, help="directory for the policy and its learning curve")
    parser.add_argument("--trainer", help="trainer override: surrogate (fast) or torch (real)")
    parser.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    parser.add_argument("--n-envs", type=int, default=1, help="parallel environments")
    parser.add_argument("--vec-env", choices=VEC_ENVS, default="dummy", help="SB3 vector env class")
    add_set_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing policy in --out")
    parser.set_defaults(func=cmd_train)
