"""What pinning one torch / BLAS thread per worker saves: two episode workers side by side.

``compare`` and ``sweep`` run episodes in a pool of spawned worker processes, one per core. Each
worker used torch's default intra-op thread count (the core count), so two workers on two cores ran
four spinning threads. This script runs the same two episodes (``tiny``, real training, agent
``equal``) as two concurrent processes, once with torch's default threads and once pinned the way
:func:`fedsimenv.experiments.jobs.map_in_workers` pins its workers, alternating A B A B; it reports
per pair the wall time and the CPU seconds (user + system) the two processes used, CPU seconds per
run (episode), and their ratios. ``--busy K`` keeps K other CPU-bound processes (a pure-Python spin
loop each, standing in for another job) running throughout, so the figures are those of a busy
machine.

    python -m bench.worker_threads [--pairs 2] [--rounds 5] [--busy 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from statistics import median

EPISODE = """
import sys
pinned, rounds, seed = sys.argv[1] == "pinned", int(sys.argv[2]), int(sys.argv[3])
if pinned:
    from fedsimenv.experiments.jobs import _init_worker
    _init_worker()
from fedsimenv.experiments.session import run_episode
from fedsimenv.scenario import load_scenario
run_episode(load_scenario("tiny", {"episode.max_rounds": rounds}), "equal", seed)
"""


def run_pair_of_workers(pinned: bool, rounds: int) -> tuple[float, float]:
    """Two concurrent episode processes; returns (wall s, CPU s of both)."""
    mode = "pinned" if pinned else "default"
    start = time.perf_counter()
    processes = [
        subprocess.Popen([sys.executable, "-c", EPISODE, mode, str(rounds), str(seed)]) for seed in (0, 1)
    ]
    cpu = 0.0
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"episode worker exited with {process.returncode}")
        cpu += usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, cpu


SPIN = "while True: pass"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="A B pairs (default then pinned)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per episode")
    parser.add_argument("--busy", type=int, default=0, help="other CPU-bound processes kept running")
    args = parser.parse_args(argv)
    print(
        f"cores: {os.cpu_count()}; two concurrent workers, tiny, {args.rounds} rounds each; "
        f"{args.busy} other busy process(es); load average at start {os.getloadavg()[0]:.2f}"
    )
    # A timeout's SIGTERM must still end the spinners (the finally below): make it an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    cpu_ratios, wall_ratios = [], []
    try:
        for pair in range(args.pairs):
            wall_default, cpu_default = run_pair_of_workers(False, args.rounds)
            wall_pinned, cpu_pinned = run_pair_of_workers(True, args.rounds)
            cpu_ratios.append(cpu_default / cpu_pinned)
            wall_ratios.append(wall_default / wall_pinned)
            print(
                f"pair {pair + 1}: default threads {wall_default:.1f} s wall, {cpu_default:.1f} CPU s "
                f"({cpu_default / 2:.1f} per run); one thread {wall_pinned:.1f} s wall, {cpu_pinned:.1f} "
                f"CPU s ({cpu_pinned / 2:.1f} per run)",
                flush=True,
            )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(
        f"CPU default / pinned: median {median(cpu_ratios):.2f}x (min {min(cpu_ratios):.2f}, "
        f"max {max(cpu_ratios):.2f}); wall default / pinned: median {median(wall_ratios):.2f}x "
        f"(min {min(wall_ratios):.2f}, max {max(wall_ratios):.2f}); paired A B, same run"
    )


if __name__ == "__main__":
    main()
