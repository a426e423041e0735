"""Command line for experiments over many episodes: ``fedsimenv compare`` and ``fedsimenv sweep``.

Both print a progress bar (``--quiet``: nothing), exit 0 when every run succeeded, 2 on bad input
(before any work and without writing output) and 1 when a run failed (the others still complete and
the tables list the failure).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE = 0, 1

DEFAULT_COMPARE_AGENTS = "optimal,equal,uniform-pruning,greedy-channel,proportional-fair"


def device_overrides(device: str | None) -> dict[str, Any]:
    """``--device`` as a scenario override; ``cuda`` is refused where CUDA is not available."""
    if device is None:
        return {}
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available on this machine; allowed values here: cpu")
    return {"learning.device": device}


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="torch device for training (overrides learning.device)"
    )


@contextmanager
def _progress(total: int, title: str, quiet: bool) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(quiet=quiet, highlight=False, soft_wrap=True, stderr=True)
    with Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task(title, total=total)

        def advance(row: Mapping[str, Any]) -> None:
            status = "ok" if row.get("status") == "ok" else f"FAILED: {row.get('error')}"
            progress.console.print(f"  {row.get('label')} seed {row.get('seed')}: {status}")
            progress.advance(task)

        yield advance


def _seeds(base: int, count: int) -> list[int]:
    if count < 1:
        raise ValueError(f"--seeds must be >= 1 (number of seeds), got {count}")
    return [base + i for i in range(count)]


def cmd_compare(args: argparse.Namespace) -> int:
    from fedsimenv.cli import _parse_overrides
    from fedsimenv.compare import compare_agents
    from fedsimenv.scenario import load_scenario

    overrides = {**_parse_overrides(args.set), **device_overrides(args.device)}
    if args.rounds is not None:
        overrides["episode.max_rounds"] = args.rounds
    config = load_scenario(args.scenario, overrides)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    seeds = _seeds(config.seed if args.seed is None else args.seed, args.seeds)
    out = Path(args.out)
    if not args.quiet:
        print(
            f"fedsimenv compare scenario={config.name} agents={','.join(agents)} seeds={seeds} "
            f"rounds={config.episode.max_rounds} out={out}"
        )
    with _progress(len(agents) * len(seeds), "runs", args.quiet) as advance:
        result = compare_agents(
            config,
            agents,
            seeds,
            out,
            target_accuracy=args.target_accuracy,
            engine="local",
            workers=args.workers,
            resume=args.resume,
            overwrite=args.overwrite,
            on_done=advance,
        )
    if not args.quiet:
        print((out / "summary.md").read_text(encoding="utf-8"))
        print(f"wrote {', '.join(str(p) for p in result.files if p.exists())}")
    return EXIT_FAILURE if result.failed else EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from fedsimenv.cli import _parse_overrides
    from fedsimenv.runner import RunDirectoryError
    from fedsimenv.scenario import load_scenario
    from fedsimenv.sweep import parse_grid, run_jobs, sweep_jobs, write_sweep_tables

    overrides = {**_parse_overrides(args.set), **device_overrides(args.device)}
    if args.rounds is not None:
        overrides["episode.max_rounds"] = args.rounds
    grid = parse_grid(args.grid)
    base = load_scenario(args.scenario, overrides)
    out = Path(args.out)
    if (out / "results.csv").exists() and not args.overwrite:
        raise RunDirectoryError(f"{out} already holds a sweep; choose another --out or pass --overwrite")
    seeds = _seeds(base.seed if args.seed is None else args.seed, args.seeds)
    jobs = sweep_jobs(args.scenario, grid, seeds, out, args.agent, overrides, args.target_accuracy)
    if not args.quiet:
        print(
            f"fedsimenv sweep scenario={base.name} cells={len(jobs) // len(seeds)} seeds={seeds} "
            f"engine={args.engine} out={out}"
        )
    with _progress(len(jobs), "runs", args.quiet) as advance:
        results = run_jobs(jobs, engine=args.engine, workers=args.workers, on_done=advance)
    write_sweep_tables(out, results, list(grid))
    failed = [r for r in results if r["status"] != "ok"]
    if not args.quiet:
        print((out / "results.md").read_text(encoding="utf-8"))
        print(
            f"wrote {out / 'results.csv'}, {out / 'results.md'}; {len(failed)} of {len(results)} runs failed"
        )
    return EXIT_FAILURE if failed else EXIT_OK


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="built-in scenario name or path to a YAML file")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (seed, seed + 1, ...)")
    parser.add_argument("--seed", type=int, help="first seed (default: the scenario's)")
    parser.add_argument("--rounds", type=int, help="rounds per episode (overrides episode.max_rounds)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a scenario field"
    )
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
