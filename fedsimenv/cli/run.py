"""``fedsimenv run`` (one agent, one episode, resumable), ``validate`` and ``list``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsimenv.cli.common import EXIT_OK, add_device_option, add_set_option, scenario_overrides

TABLE_COLUMNS = (
    ("round", "round", "{:>5d}"),
    ("sim_time_s", "sim time s", "{:>10.3f}"),
    ("round_latency_s", "latency s", "{:>9.3f}"),
    ("energy_j", "energy J", "{:>9.4f}"),
    ("num_selected", "sel", "{:>3d}"),
    ("num_arrived", "arr", "{:>3d}"),
    ("mean_rho", "rho", "{:>5.2f}"),
    ("accuracy", "accuracy", "{:>8.4f}"),
    ("loss", "loss", "{:>7.4f}"),
)


def _format_row(row: Mapping[str, Any]) -> str:
    return "  ".join(fmt.format(row[key]) for key, _, fmt in TABLE_COLUMNS)


def _header() -> str:
    widths = [len(fmt.format(0 if "d" in fmt else 0.0)) for _, _, fmt in TABLE_COLUMNS]
    return "  ".join(title.rjust(w) for (_, title, _), w in zip(TABLE_COLUMNS, widths, strict=True))


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agents import check_agent_name
    from fedsimenv.experiments.session import run_episode
    from fedsimenv.scenario import load_scenario

    if args.resume is not None:
        return _resume(args)
    if args.scenario is None:
        raise ValueError("run needs a SCENARIO (a built-in name or a YAML path), or --resume DIR")
    config = load_scenario(args.scenario, scenario_overrides(args))
    check_agent_name(args.agent)  # fail on a bad name before any work
    seed = config.seed if args.seed is None else args.seed
    out = Path(args.out) if args.out else None
    checkpoint_every = args.checkpoint_every if out is not None and args.checkpoint_every > 0 else None

    console = Console(quiet=args.quiet, highlight=False, soft_wrap=True)
    console.print(
        f"[bold]fedsimenv run[/bold] scenario={config.name} agent={args.agent} seed={seed} "
        f"devices={config.cell.num_devices} rounds={config.episode.max_rounds}"
        + (f" out={out}" if out else "")
    )
    console.print(_header(), style="bold")
    with Progress(
        TextColumn("rounds"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=args.quiet,
    ) as progress:
        task = progress.add_task("rounds", total=config.episode.max_rounds)

        def on_round(row: Mapping[str, Any]) -> None:
            progress.console.print(_format_row(row))
            progress.advance(task)

        rows = run_episode(
            config,
            args.agent,
            seed,
            out,
            overwrite=args.overwrite,
            on_round=on_round,
            timeline=args.timeline,
            checkpoint_every=checkpoint_every,
        )
    last = rows[-1]
    console.print(
        f"done: {len(rows)} rounds, accuracy {last['accuracy']:.4f}"
        + (f", top-5 {last['top5_accuracy']:.4f}" if "top5_accuracy" in last else "")
        + f", simulated {last['sim_time_s']:.2f} s, "
        f"energy {last['energy_j']:.4f} J"
        + (f"; wrote {out}/config.yaml, {out}/metrics.jsonl" if out else "")
    )
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    from fedsimenv.experiments.session import EpisodeSession

    session = EpisodeSession.from_run_dir(Path(args.resume))
    if not args.quiet:
        print(f"fedsimenv run --resume {args.resume}: agent={session.agent_name} seed={session.seed}")
        session.on_round = lambda row: print(_format_row(row))
    rows = session.run(resume=True)
    if not args.quiet:
        last = rows[-1]
        print(
            f"done: replayed {session.replayed_rounds} checkpointed rounds without training, "
            f"{len(rows)} rounds in all, accuracy {last['accuracy']:.4f}"
        )
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from fedsimenv.scenario import load_scenario

    for path in args.files:
        config = load_scenario(path)
        print(f"{path}: OK (scenario {config.name!r}, {config.cell.num_devices} devices)")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from agents import AGENTS
    from channels import FADING_MODELS, PATH_LOSS_MODELS
    from fedsimenv.learning.datasets import DATASETS
    from fedsimenv.learning.models import MODELS
    from fedsimenv.learning.partition import PARTITIONS
    from fedsimenv.learning.pruning import PRUNING_METHODS
    from fedsimenv.learning.trainer import TRAINERS
    from fedsimenv.rewards import REWARDS
    from fedsimenv.scenario import builtin_scenarios
    from fedsimenv.sim.protocols import PROTOCOLS

    sections = {
        "scenarios": builtin_scenarios(),
        "agents": AGENTS.names(),
        "path-loss models": PATH_LOSS_MODELS.names(),
        "fading models": FADING_MODELS.names(),
        "pruning methods": PRUNING_METHODS.names(),
        "models": MODELS.names(),
        "rewards": REWARDS.names(),
        "trainers": TRAINERS.names(),
        "datasets": DATASETS.names(),
        "partition methods": PARTITIONS.names(),
        "protocols": PROTOCOLS.names(),
    }
    for title, names in sections.items():
        print(f"{title}: {', '.join(names)}")
    return EXIT_OK


def add_run_commands(sub: Any) -> None:
    """Register ``run``, ``validate`` and ``list`` on the CLI's subparsers."""
    run = sub.add_parser("run", help="run an agent on a scenario")
    run.add_argument("scenario", nargs="?", help="built-in scenario name or path to a YAML file")
    run.add_argument("--agent", default="equal", help="agent name (see `fedsimenv list`)")
    run.add_argument("--rounds", type=int, help="number of rounds (overrides episode.max_rounds)")
    run.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    run.add_argument("--out", help="run directory for config.yaml and metrics.jsonl")
    add_set_option(run)
    run.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    run.add_argument(
        "--timeline",
        action="store_true",
        help="also write timeline.jsonl and gantt.png (last round) to --out",
    )
    run.add_argument(
        "--checkpoint-every", type=int, default=5, metavar="K", help="checkpoint every K rounds (0: never)"
    )
    run.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR")
    add_device_option(run)
    run.add_argument("--quiet", action="store_true", help="print nothing")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="validate scenario files")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_validate)

    lister = sub.add_parser("list", help="list the registered components")
    lister.set_defaults(func=cmd_list)
