"""What every ``fedsimenv`` subcommand shares: exit codes, ``--set`` parsing, options, progress."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fedsimenv.scenario import strict_yaml_load

#: Exit codes of every subcommand: success, a failure while running, bad input (nothing was run).
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as dotted-key scenario overrides (values parsed as YAML scalars).

    Raises:
        ValueError: a pair is not ``KEY=VALUE``.
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(
                f"--set expects KEY=VALUE with a dotted key (e.g. episode.max_rounds=5), got {pair!r}"
            )
        overrides[key] = strict_yaml_load(value)
    return overrides


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a scenario field"
    )


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


def scenario_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides of ``--set``, ``--device`` and ``--rounds`` (where the command has them)."""
    overrides = {**parse_overrides(args.set), **device_overrides(getattr(args, "device", None))}
    if getattr(args, "rounds", None) is not None:
        overrides["episode.max_rounds"] = args.rounds
    return overrides


def seeds(base: int, count: int) -> list[int]:
    """``--seeds K`` from ``base``: ``base, base + 1, ..., base + K - 1``."""
    if count < 1:
        raise ValueError(f"--seeds must be >= 1 (number of seeds), got {count}")
    return [base + i for i in range(count)]


@contextmanager
def job_progress(total: int, title: str, quiet: bool) -> Iterator[Any]:
    """A progress bar on stderr; yields the ``on_done(summary_row)`` callback of the job engine."""
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
