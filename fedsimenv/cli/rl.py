"""``fedsimenv calibrate`` (fit the surrogate to real runs) and ``fedsimenv train`` (an SB3 policy).

The work is done in :mod:`fedsimenv.experiments.calibrate` and :mod:`fedsimenv.experiments.rl_training`,
imported when the command runs (torch and Stable-Baselines3 load only then).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fedsimenv.cli.common import EXIT_OK, add_set_option, parse_overrides, scenario_overrides


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fedsimenv.atomic import write_text_atomic
    from fedsimenv.experiments.calibrate import calibrate
    from fedsimenv.learning.surrogate_fit import records_to_json
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

    records_path = Path(args.records) if args.records else out.with_suffix(".runs.json")
    calibration, records = calibrate(config, args.runs, seed, on_run, workers=args.workers, noise=args.noise)
    write_text_atomic(records_path, records_to_json(records))
    write_text_atomic(out, calibration.to_json())
    held, fit = calibration.error["held_out"], calibration.error["fit"]
    print(
        f"fit on {calibration.error['runs_fitted']} runs: accuracy MAE {fit['accuracy_mae']:.4f}; "
        f"held-out ({calibration.error['runs_held_out']} runs, {held['rounds']} rounds): accuracy MAE "
        f"{held['accuracy_mae']:.4f}, RMSE {held['accuracy_rmse']:.4f}, final-round MAE "
        f"{held['final_accuracy_mae']:.4f}, loss MAE {held['loss_mae']:.4f}"
    )
    print_region_errors(calibration.error["held_out_by_region"])
    if calibration.curve.accuracy_noise_std > 0:
        print(f"accuracy noise (spread around the fit): std {calibration.curve.accuracy_noise_std:.4f}")
    print(f"wrote {out} (use it with learning.surrogate.calibration_file: {out}) and {records_path}")
    return EXIT_OK


def print_region_errors(by_region: dict[str, dict[str, float]]) -> None:
    """The held-out accuracy error per region of the action space, one line each."""
    print("held-out accuracy error per region (region: rounds, MAE[, bias = predicted - real]):")
    for name, err in by_region.items():
        bias = f", bias {err['accuracy_bias']:+.4f}" if "accuracy_bias" in err else ""
        print(f"  {name}: {err['rounds']} rounds, MAE {err['accuracy_mae']:.4f}{bias}")


def add_calibrate_command(sub: Any) -> None:
    """Register the ``calibrate`` subcommand on the CLI's subparsers."""
    parser = sub.add_parser("calibrate", help="fit the surrogate trainer to real runs of a scenario")
    parser.add_argument("scenario", help="built-in scenario name or path to a YAML file")
    parser.add_argument(
        "--runs",
        type=int,
        default=12,
        help="real runs K, regions round-robin (held out: one per region if K >= 12, else the last K // 4)",
    )
    parser.add_argument("--out", required=True, help="calibration JSON file to write")
    parser.add_argument("--records", help="where to keep the recorded runs (default: OUT with .runs.json)")
    parser.add_argument(
        "--noise", action="store_true", help="fit accuracy noise from the spread around the curve"
    )
    parser.add_argument("--rounds", type=int, help="rounds per run (overrides episode.max_rounds)")
    parser.add_argument("--seed", type=int, help="seed of the first run (default: the scenario's)")
    parser.add_argument(
        "--workers", type=int, default=1, help="parallel real runs (processes of one thread each)"
    )
    add_set_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=cmd_calibrate)


def cmd_train(args: argparse.Namespace) -> int:
    from fedsimenv.experiments.rl_training import TrainSettings, train_policy
    from fedsimenv.scenario import load_scenario

    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise ValueError("fedsimenv train needs stable-baselines3: pip install 'fedsimenv[rl]'") from None
    overrides = parse_overrides(args.set)
    if args.trainer is not None:
        overrides["trainer"] = args.trainer
    if args.calibration is not None:
        if not Path(args.calibration).is_file():
            raise ValueError(
                f"--calibration {args.calibration}: file not found (write it with fedsimenv calibrate)"
            )
        overrides["learning.surrogate.calibration_file"] = str(Path(args.calibration).resolve())
    config = load_scenario(args.scenario, overrides)
    seed = config.seed if args.seed is None else args.seed
    policy = args.policy or "device"
    settings = TrainSettings(
        algo=args.algo,
        policy=policy,
        timesteps=args.timesteps,
        seed=seed,
        num_envs=args.n_envs,
        vec_env=args.vec_env,
        reward=None if args.reward == "scenario" else args.reward,
        learning_rate=args.learning_rate,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        gamma=args.gamma,
        ent_coef=args.ent_coef,
        clip_range=args.clip_range,
        log_std_init=args.log_std_init,
        hidden=args.hidden,
        bc_episodes=args.bc_episodes,
        bc_epochs=args.bc_epochs,
        teacher=args.teacher,
        anchor_coef=args.anchor_coef,
        anchor_anneal=args.anchor_anneal,
        eval_every=args.eval_every,
        eval_seeds=args.eval_seeds,
        eval_trainer=args.eval_trainer,
        reference_agents=tuple(a for a in args.eval_references.split(",") if a),
        checkpoint_every=args.checkpoint_every,
        tensorboard=args.tensorboard,
        verbose=not args.quiet,
    )
    out = Path(args.out)
    print(
        f"fedsimenv train scenario={config.name} algo={args.algo} policy={policy} timesteps={args.timesteps} "
        f"trainer={config.trainer} reward={settings.reward or config.reward.name} seed={seed} out={out}"
    )
    meta = train_policy(config, settings, out, overwrite=args.overwrite)
    print(
        f"done in {meta['wall_s']:.0f} s; policy.zip = the model at {meta['best_timesteps']} steps "
        "(best real-training evaluation)"
    )
    print(f"wrote {out}/policy.zip, final_policy.zip, train.json, evaluations.csv, learning_curve.csv/.png")
    print(
        f"replay: fedsimenv compare {args.scenario} --agents optimal,{args.algo}:{out}/policy.zip --seeds 5"
    )
    return EXIT_OK


def add_train_command(sub: Any) -> None:
    """Register the ``train`` subcommand on the CLI's subparsers."""
    from fedsimenv.experiments.rl_training import ALGORITHMS, VEC_ENVS, TrainSettings

    d = TrainSettings()
    parser = sub.add_parser("train", help="train a Stable-Baselines3 policy on a scenario")
    parser.add_argument("scenario", help="built-in scenario name or path to a YAML file")
    parser.add_argument("--algo", choices=ALGORITHMS, default="ppo")
    parser.add_argument(
        "--policy",
        choices=("device", "mlp"),
        help="device (default): permutation-equivariant per-device network, any N; mlp: SB3's flat MLP",
    )
    parser.add_argument("--timesteps", type=int, default=d.timesteps, help="environment steps (rounds)")
    parser.add_argument("--out", required=True, help="directory for the policy and its learning curve")
    parser.add_argument("--trainer", help="trainer override: surrogate (fast) or torch (real)")
    parser.add_argument("--calibration", help="surrogate calibration JSON written by fedsimenv calibrate")
    parser.add_argument(
        "--reward",
        default=d.reward,
        help=f"training reward (default {d.reward}; 'scenario' = the scenario's)",
    )
    parser.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    parser.add_argument("--n-envs", type=int, default=1, help="parallel environments")
    parser.add_argument("--vec-env", choices=VEC_ENVS, default="dummy", help="SB3 vector env class")
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate)
    parser.add_argument("--n-steps", type=int, default=d.n_steps, help="PPO rollout length per env")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--n-epochs", type=int, default=d.n_epochs, help="PPO epochs per rollout")
    parser.add_argument("--gamma", type=float, default=d.gamma)
    parser.add_argument(
        "--ent-coef", type=float, default=d.ent_coef, help="PPO entropy bonus (SAC tunes its own)"
    )
    parser.add_argument("--clip-range", type=float, default=d.clip_range)
    parser.add_argument(
        "--log-std-init",
        type=float,
        default=d.log_std_init,
        help="initial exploration log std (SAC: the behaviour-cloning target of its log std output)",
    )
    parser.add_argument("--hidden", type=int, default=d.hidden, help="hidden units per layer")
    parser.add_argument(
        "--bc-episodes", type=int, default=d.bc_episodes, help="teacher episodes (0 = no warm start)"
    )
    parser.add_argument("--bc-epochs", type=int, default=d.bc_epochs)
    parser.add_argument("--teacher", default=d.teacher, help="agent to clone (default optimal)")
    parser.add_argument(
        "--anchor-coef",
        type=float,
        default=d.anchor_coef,
        help=f"PPO/SAC: weight of the KL penalty toward the behaviour-cloned policy on the visited "
        f"observations (default {d.anchor_coef}; 0 = plain PPO/SAC, free to drift from the teacher)",
    )
    parser.add_argument(
        "--anchor-anneal",
        action="store_true",
        help="decay the anchor coefficient linearly to 0 over the run (keep the best real-training "
        "evaluation: policy.zip)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="steps between real-training evaluations (0 = off)",
    )
    parser.add_argument("--eval-seeds", type=int, default=d.eval_seeds, help="held-out seeds per evaluation")
    parser.add_argument(
        "--eval-trainer", default=d.eval_trainer, help="trainer of the evaluations (torch = real)"
    )
    parser.add_argument(
        "--eval-references", default=",".join(d.reference_agents), help="agents drawn as reference lines"
    )
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (0 = off)")
    parser.add_argument("--tensorboard", help="TensorBoard log directory (needs the tensorboard package)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_set_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing policy in --out")
    parser.set_defaults(func=cmd_train)
