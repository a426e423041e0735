"""Command line: ``fedsimenv run | compare | sweep | validate | list | calibrate | train``.

Exit codes (:mod:`fedsimenv.cli.common`): 0 success, 2 bad input (scenario, option, agent name or
file; nothing was run), 1 any other failure (a replay that diverged, a round whose result is NaN or
infinite, an interrupted run).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

import fedsimenv
from channels.checks import WorkLimitError
from fedsimenv.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE
from fedsimenv.cli.experiments import add_experiment_commands
from fedsimenv.cli.recalibrate import add_recalibrate_command
from fedsimenv.cli.rl import add_calibrate_command, add_train_command
from fedsimenv.cli.run import add_run_commands
from fedsimenv.experiments.errors import NonFiniteResultError, ReplayDivergedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsimenv", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fedsimenv {fedsimenv.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_commands(sub)
    add_experiment_commands(sub)
    add_calibrate_command(sub)
    add_train_command(sub)
    add_recalibrate_command(sub)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Warnings as one line on stderr, ``fedsimenv: warning: ...`` (no source location)."""
    print(f"fedsimenv: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "rounds", None) is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code: int = args.func(args)
        return code
    except ValueError as err:  # ScenarioError, RunDirectoryError, unknown registry names, bad --set
        print(f"fedsimenv: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ReplayDivergedError, NonFiniteResultError, WorkLimitError) as err:
        print(f"fedsimenv: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("fedsimenv: interrupted", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
