"""Run one agent on a scenario and write a resumable run directory.

    python scenarios/run_scenario.py --scenario default --agent optimal --rounds 10 --out runs/demo
    python scenarios/run_scenario.py --resume runs/demo          # after an interruption (even kill -9)

The run directory holds config.yaml, metrics.jsonl (one row per round), timeline.jsonl, gantt.png
and a checkpoint every ``--checkpoint-every`` rounds (see fedsimenv.experiments.replay).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="tiny", help="built-in scenario name or YAML path")
    parser.add_argument("--agent", default="optimal", help="agent name (fedsimenv list)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/run-scenario"))
    parser.add_argument("--checkpoint-every", type=int, default=5, help="rounds between checkpoints")
    parser.add_argument("--resume", type=Path, default=None, help="continue the run in this directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from fedsimenv.experiments.session import resume_run, run_episode
    from fedsimenv.scenario import load_scenario

    args = parse_args(argv)

    def show(row: Mapping[str, Any]) -> None:
        print(
            f"round {row['round']:3d}  t={row['sim_time_s']:8.3f} s  E={row['energy_j']:8.4f} J  "
            f"acc={row['accuracy']:.4f}  selected={row['num_selected']}  rho={row['mean_rho']:.2f}"
        )

    if args.resume is not None:
        session, rows = resume_run(args.resume, on_round=show)
        print(f"resumed {args.resume}: replayed {session.replayed_rounds} rounds, {len(rows)} in all")
        return
    overrides = {} if args.rounds is None else {"episode.max_rounds": args.rounds}
    config = load_scenario(args.scenario, overrides)
    rows = run_episode(
        config,
        args.agent,
        args.seed,
        args.out,
        overwrite=True,
        on_round=show,
        timeline=True,
        checkpoint_every=args.checkpoint_every,
    )
    print(f"{len(rows)} rounds, final accuracy {rows[-1]['accuracy']:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
