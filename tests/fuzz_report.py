"""Print the fuzz campaigns' outcome counts (issue 17): ``python -m tests.fuzz_report [--quick]``.

Exit status 1 if any traceback, NaN or data-loss count is not 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the test helpers import each other by name

import fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the default test run's sizes")
    parser.add_argument("--mutants", type=int, default=320, help="mutated scenario files (default 320)")
    args = parser.parse_args()
    mutants = 24 if args.quick else args.mutants
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("muts", "resume", "files", "out", "conc"):
            (root / name).mkdir()
        results = {
            "env actions (every env id)": fuzz.env_actions(steps_per_env=1 if args.quick else 3),
            f"scenario mutants ({mutants})": fuzz.scenario_mutations(mutants, root / "muts", run_every=1),
            "damaged --resume": fuzz.damaged_resumes(root / "resume", repeats=1 if args.quick else 3),
            "malicious files": fuzz.malicious_files(root / "files"),
            "--out directories": fuzz.output_dirs(root / "out"),
            "concurrent writers": fuzz.concurrent_writers(root / "conc", pairs=1 if args.quick else 3),
        }
    print(fuzz.format_report(results))
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if any(t.bad() for t in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
