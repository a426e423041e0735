"""Command line for experiments over many episodes: ``fedsimenv compare`` and ``fedsimenv sweep``.

Both print a progress bar (``--quiet``: nothing), exit 0 when every run succeeded, 2 on bad input
(before any work and without writing output) and 1 when a run failed (the others still complete and
the tables list the failure).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fedsimenv.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_device_option,
    add_set_option,
    job_progress,
    scenario_overrides,
    seeds,
)

DEFAULT_COMPARE_AGENTS = "optimal,equal,uniform-pruning,greedy-channel,proportional-fair"


def cmd_compare(args: argparse.Namespace) -> int:
    from fedsimenv.experiments.compare import compare_agents
    from fedsimenv.scenario import load_scenario

    config = load_scenario(args.scenario, scenario_overrides(args))
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    seed_list = seeds(config.seed if args.seed is None else args.seed, args.seeds)
    out = Path(args.out)
    if not args.quiet:
        print(
            f"fedsimenv compare scenario={config.name} agents={','.join(agents)} seeds={seed_list} "
            f"rounds={config.episode.max_rounds} out={out}"
        )
    with job_progress(len(agents) * len(seed_list), "runs", args.quiet) as advance:
        result = compare_agents(
            config,
            agents,
            seed_list,
            out,
            target_accuracy=args.target_accuracy,
            engine="local",
            workers=args.workers,
            resume=args.resume,
            overwrite=args.overwrite,
            on_done=advance,
            same_model=args.same_model,
        )
    if not args.quiet:
        print((out / "summary.md").read_text(encoding="utf-8"))
        print(f"wrote {', '.join(str(p) for p in result.files if p.exists())}")
    return EXIT_FAILURE if result.failed else EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from fedsimenv.experiments.errors import RunDirectoryError
    from fedsimenv.experiments.jobs import run_jobs
    from fedsimenv.experiments.rundir import run_dir_lock
    from fedsimenv.experiments.sweep import parse_grid, sweep_jobs, write_sweep_tables
    from fedsimenv.scenario import load_scenario

    overrides = scenario_overrides(args)
    grid = parse_grid(args.grid)
    base = load_scenario(args.scenario, overrides)
    out = Path(args.out)
    with run_dir_lock(out):  # one sweep per output directory
        if (out / "results.csv").exists() and not args.overwrite:
            raise RunDirectoryError(f"{out} already holds a sweep; choose another --out or pass --overwrite")
        seed_list = seeds(base.seed if args.seed is None else args.seed, args.seeds)
        jobs = sweep_jobs(args.scenario, grid, seed_list, out, args.agent, overrides, args.target_accuracy)
        if not args.quiet:
            print(
                f"fedsimenv sweep scenario={base.name} cells={len(jobs) // len(seed_list)} seeds={seed_list} "
                f"engine={args.engine} out={out}"
            )
        with job_progress(len(jobs), "runs", args.quiet) as advance:
            results = run_jobs(jobs, engine=args.engine, workers=args.workers, on_done=advance)
        write_sweep_tables(out, results, list(grid))
        failed = [r for r in results if r["status"] != "ok"]
        if not args.quiet:
            print((out / "results.md").read_text(encoding="utf-8"))
            tables = f"{out / 'results.csv'}, {out / 'results.md'}"
            print(f"wrote {tables}; {len(failed)} of {len(results)} runs failed")
        return EXIT_FAILURE if failed else EXIT_OK


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="built-in scenario name or path to a YAML file")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (seed, seed + 1, ...)")
    parser.add_argument("--seed", type=int, help="first seed (default: the scenario's)")
    parser.add_argument("--rounds", type=int, help="rounds per episode (overrides episode.max_rounds)")
    parser.add_argument("--out", required=True, help="output directory")
    add_set_option(parser)
    parser.add_argument(
        "--target-accuracy",
        type=float,
        help="accuracy for the time / energy to target (default: episode.target_accuracy, else 0.9)",
    )
    parser.add_argument("--workers", type=int, help="parallel episodes (default: the CPU count)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    add_device_option(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing")


def add_experiment_commands(sub: Any) -> None:
    """Add ``compare`` and ``sweep`` to the ``fedsimenv`` sub-command parser."""
    compare = sub.add_parser("compare", help="compare agents on the same scenario and seeds")
    _common(compare)
    compare.add_argument(
        "--agents",
        default=DEFAULT_COMPARE_AGENTS,
        help=f"comma-separated agent names (default: {DEFAULT_COMPARE_AGENTS})",
    )
    compare.add_argument(
        "--resume", action="store_true", help="continue an interrupted comparison in --out (runs resume)"
    )
    compare.add_argument(
        "--same-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="every agent trains the scenario's model (default); --no-same-model lets an agent "
        "switch it (e.g. dwnp's LayerNorm). Agents with other learning settings are flagged either way",
    )
    compare.set_defaults(func=cmd_compare)

    sweep = sub.add_parser("sweep", help="run a grid of scenario variants over seeds")
    _common(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        metavar="KEY=V1,V2",
        help="a dotted scenario key (or 'agent') and its values; repeat for more keys",
    )
    sweep.add_argument("--agent", default="equal", help="agent when the grid does not vary 'agent'")
    sweep.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="local process pool, or Ray (extra 'ray')"
    )
    sweep.set_defaults(func=cmd_sweep)
