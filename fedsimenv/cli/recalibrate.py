"""``fedsimenv recalibrate``: train on the surrogate -> run the policy on real training -> add those runs
-> refit, as one command (:mod:`fedsimenv.experiments.recalibrate`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fedsimenv.cli.common import EXIT_OK, add_set_option, scenario_overrides


def cmd_recalibrate(args: argparse.Namespace) -> int:
    from fedsimenv.cli.rl import print_region_errors
    from fedsimenv.experiments.recalibrate import recalibrate
    from fedsimenv.experiments.rl_training import TrainSettings
    from fedsimenv.scenario import load_scenario

    config = load_scenario(args.scenario, scenario_overrides(args))
    out = Path(args.out)
    if (out / "recalibrate.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a recalibration; choose another --out or pass --overwrite")
    for name in ("calibration", "records"):
        value = getattr(args, name)
        if value is not None and not Path(value).is_file():
            raise ValueError(f"--{name} {value}: file not found (write it with fedsimenv calibrate)")
    seed = config.seed if args.seed is None else args.seed
    settings = TrainSettings(
        timesteps=args.timesteps,
        seed=seed,
        eval_every=args.eval_every,
        bc_episodes=args.bc_episodes,
        verbose=not args.quiet,
    )
    print(
        f"fedsimenv recalibrate scenario={config.name} iterations={args.iterations} "
        f"timesteps={args.timesteps} policy_runs={args.policy_runs} out={out}"
    )
    result = recalibrate(
        config,
        out,
        iterations=args.iterations,
        runs=args.runs,
        policy_runs=args.policy_runs,
        settings=settings,
        seed=seed,
        noise=args.noise,
        calibration=None if args.calibration is None else Path(args.calibration),
        records=None if args.records is None else Path(args.records),
    )
    print_region_errors(result["iterations"][-1]["held_out_by_region"])
    print(
        f"wrote {out}/recalibrate.json; train on it: fedsimenv train {args.scenario} --trainer surrogate "
        f"--calibration {result['calibration']} --out DIR"
    )
    return EXIT_OK


def add_recalibrate_command(sub: Any) -> None:
    """Register the ``recalibrate`` subcommand on the CLI's subparsers."""
    parser = sub.add_parser(
        "recalibrate",
        help="re-calibration loop: train on the surrogate, run the policy for real, add the runs, refit",
    )
    parser.add_argument("scenario", help="built-in scenario name or path to a YAML file")
    parser.add_argument("--out", required=True, help="directory for calibrations, policies and the report")
    parser.add_argument("--iterations", type=int, default=1, help="train -> real runs -> refit cycles")
    parser.add_argument(
        "--runs", type=int, default=12, help="initial calibration runs (as fedsimenv calibrate)"
    )
    parser.add_argument("--policy-runs", type=int, default=4, help="real runs of each policy (>= 2)")
    parser.add_argument("--calibration", help="start from this calibration (with --records) instead")
    parser.add_argument("--records", help="the runs --calibration was fitted on (calibrate's .runs.json)")
    parser.add_argument("--noise", action="store_true", help="fit accuracy noise (as calibrate --noise)")
    parser.add_argument("--timesteps", type=int, default=4096, help="PPO steps per iteration")
    parser.add_argument("--eval-every", type=int, default=2048, help="real-training evaluations (0 = off)")
    parser.add_argument("--bc-episodes", type=int, default=40, help="behaviour-cloning episodes")
    parser.add_argument("--rounds", type=int, help="rounds per episode (overrides episode.max_rounds)")
    parser.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    parser.add_argument("--quiet", action="store_true", help="no training progress output")
    add_set_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing recalibration in --out")
    parser.set_defaults(func=cmd_recalibrate)
