"""Run every benchmark and write one report: ``RESULTS.md`` and ``RESULTS.json`` in ``--out``.

    python -m bench                      # everything, written to runs/bench/
    python -m bench --out bench          # refresh the committed bench/RESULTS.md
    python -m bench --only cohort compute --repeats 3
    python -m bench --quick              # tiny sizes: checks the harness, the figures mean nothing
    python -m bench --only fedavg roofline --out bench --merge   # refresh those sections only

Sections, in order: the FedAvg round against a plain PyTorch loop and Flower (Flower only where
``make bench-env`` has created ``.venv-bench``), cohort training (batched vs sequential), compute
efficiency (cohort-step GFLOP/s vs the fp32 GEMM peak), the small CNN's roofline, the simulator, env
steps, solvers, channels, and the GPU section (skipped without CUDA). Every figure keeps all its
repeats (median, min-max); every ratio compares two figures of this run. A section that fails is
reported as failed in the notes, the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.report import Collected, Report, machine_description

#: Section name -> module under bench/ with a ``collect(quick=..., repeats=...)`` function.
SECTIONS: dict[str, str] = {
    "fedavg": "bench.fedavg_round",
    "cohort": "bench.cohort",
    "compute": "bench.compute",
    "roofline": "bench.roofline",
    "simulator": "bench.simulator",
    "env": "bench.env_steps",
    "solvers": "bench.solvers",
    "channels": "bench.channels",
    "gpu": "bench.gpu",
}


def run_section(name: str, quick: bool, repeats: int | None) -> Collected:
    module = importlib.import_module(SECTIONS[name])
    kwargs: dict[str, object] = {"quick": quick}
    if repeats is not None and not quick:
        if "repeats" not in inspect.signature(module.collect).parameters:
            raise TypeError(f"section {name!r} does not take --repeats (its collect() has no 'repeats')")
        kwargs["repeats"] = repeats
    collected: Collected = module.collect(**kwargs)
    return collected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="directory of the report")
    parser.add_argument(
        "--only", nargs="+", choices=list(SECTIONS), metavar="SECTION", help=f"any of: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure (default: per section)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness itself")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other sections of the report already in --out (RESULTS.json), replace these",
    )
    parser.add_argument(
        "--from-json",
        nargs=2,
        action="append",
        default=[],
        metavar=("SECTION", "JSON"),
        help="take SECTION from a report a section's own script wrote (e.g. bench.fedavg_round --out) "
        "instead of running it; with --merge, replaces that section in --out",
    )
    args = parser.parse_args(argv)
    for key, _ in args.from_json:
        if key not in SECTIONS:
            parser.error(f"--from-json: unknown section {key!r}; allowed values: {', '.join(SECTIONS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    report = Report(machine_description())
    machines: dict[str, dict[str, Any]] = {}
    for key, path in args.from_json:
        taken = Report.from_json(json.loads(Path(path).read_text()))
        report.extend((taken.figures, taken.ratios, taken.notes), key)
        machines[key] = taken.machine
    failed = []
    for name in (args.only or list(SECTIONS)) if not args.from_json or args.only else []:
        start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            report.extend(run_section(name, args.quick, args.repeats), name)
        except Exception as error:  # one broken section must not lose the others' figures
            failed.append(name)
            report.extend(([], [], [f"section {name} FAILED: {type(error).__name__}: {error}"]), name)
            traceback.print_exc()
        print(f"[bench] {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    markdown, json_path = args.out / "RESULTS.md", args.out / "RESULTS.json"
    if args.merge and json_path.is_file():
        old = Report.from_json(json.loads(json_path.read_text()))
        regenerated = [key for key, _ in args.from_json] + (
            args.only or ([] if args.from_json else list(SECTIONS))
        )
        report = report.merged_into(old, regenerated, machines)
    report.write(markdown, json_path)
    print(report.to_markdown())
    print(f"[bench] wrote {markdown} and {json_path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
