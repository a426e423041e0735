"""Paired whole-process runs of the FedAvg-round systems: A B A B ..., each process timed from outside.

Every system (fedsimenv batched, the plain loop, Flower with each resource configuration) runs the
same workload (``bench.fedavg_workload``, same seed) for the same rounds in a process of its own:
``python -m bench.fedavg_systems SYSTEM`` (one torch thread unless told otherwise) or Flower's
``run_simulation`` in ``.venv-bench`` (``bench.fedavg_flower``). One *pair* runs each system once;
the order reverses from pair to pair (A B C D, D C B A, ...), so a load change on the shared machine
hits every system alike, and ratios are formed pair by pair (numerator and denominator from the same
pair), reported as median and min-max over the pairs.

Per process: its wall time from launch to exit, timed here (outside it), its CPU seconds (user +
system of the process and of the descendants reaped under it: Ray's GCS, raylet and workers as far
as they were reaped before the driver exited), its own per-round times (median over the timed rounds: the
first round is warm-up), its start-up (first round less one steady round) and the peak memory of its
process tree.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.fedavg_flower import run_flower
from bench.fedavg_systems import IN_PROCESS, PROBE_TIMEOUT_S, REPO_ROOT, WARMUP_ROUNDS, SystemRun
from bench.memory import TreeMemory, run_sampled

#: Flower configurations: name -> ``client_resources.num_cpus`` (None: Flower's default, 2 CPUs).
FLOWER_CONFIGS: dict[str, float | None] = {"Flower (default resources)": None, "Flower (num_cpus=1)": 1.0}


@dataclass(frozen=True)
class ProcessRun:
    """One system's whole process.

    Attributes:
        wall_s: Launch to exit, timed by the parent.
        cpu_s: User + system CPU seconds of the process (and the children it reaped).
        run: Its own per-round times (warm-up dropped), accuracies and weights.
        startup_s: First round less one steady (median) round; Flower: ``run_simulation``'s call to
            the end of round 1 less one steady round.
        memory: Peak memory of its process tree.
        details: Versions and threads, for the report's notes ("" for the in-process systems).
    """

    wall_s: float
    cpu_s: float
    run: SystemRun
    startup_s: float
    memory: TreeMemory
    details: str = ""

    @property
    def round_ms(self) -> float:
        """The median of its timed rounds."""
        return statistics.median(self.run.round_ms)


def _startup_s(first_round_s: float, round_ms: Sequence[float]) -> float:
    return max(0.0, first_round_s - statistics.median(round_ms) / 1e3)


def run_in_process_system(
    system: str, num_clients: int, rounds: int, workdir: Path, torch_threads: int = 1
) -> ProcessRun:
    """``python -m bench.fedavg_systems SYSTEM`` for ``rounds`` rounds in a fresh process."""
    tag = f"{system.replace(' ', '-')}-{num_clients}"
    json_path, weights_path = workdir / f"{tag}.json", workdir / f"{tag}.pt"
    command = [sys.executable, "-m", "bench.fedavg_systems", system, "--clients", str(num_clients)]
    command += ["--rounds", str(rounds), "--torch-threads", str(torch_threads)]
    command += ["--json", str(json_path), "--weights", str(weights_path)]
    cpu_before = _children_cpu_s()
    start_s = time.perf_counter()
    returncode, stderr, memory = run_sampled(command, REPO_ROOT, PROBE_TIMEOUT_S)
    wall_s = time.perf_counter() - start_s
    if returncode != 0:
        raise RuntimeError(f"{system} N={num_clients} exited {returncode}:\n{stderr.decode()[-2000:]}")
    result = json.loads(json_path.read_text())
    states = torch.load(weights_path, weights_only=True)
    round_ms = tuple(float(t) for t in result["round_ms"])
    run = SystemRun(round_ms[WARMUP_ROUNDS:], tuple(result["accuracies"]), states["first"], states["final"])
    peak = max(memory.peak_rss_mib, float(result["peak_rss_mib"]))
    return ProcessRun(
        wall_s,
        _children_cpu_s() - cpu_before,
        run,
        _startup_s(round_ms[0] / 1e3, run.round_ms),
        dataclasses.replace(memory, peak_rss_mib=peak),
    )


def _children_cpu_s() -> float:
    """User + system CPU seconds of every child this process has reaped so far (and their reaped
    descendants)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_flower_system(num_clients: int, rounds: int, num_cpus: float | None, workdir: Path) -> ProcessRun:
    """Flower's simulation in ``.venv-bench`` for ``rounds`` rounds (see ``bench.fedavg_flower``)."""
    cpu_before = _children_cpu_s()
    start_s = time.perf_counter()
    flower = run_flower(num_clients, rounds, num_cpus, workdir)
    wall_s = time.perf_counter() - start_s
    run = flower.run
    startup = _startup_s(float(flower.measurements["launch_to_first_round_end_s"]), run.round_ms)
    info = flower.measurements
    details = (
        f"flwr {info['flwr']}, ray {info['ray']}, Ray num_cpus {info['ray_num_cpus']}, client torch threads "
        f"{float(info['client_torch_threads']):.3g}"
    )
    return ProcessRun(wall_s, _children_cpu_s() - cpu_before, run, startup, flower.memory, details)


def run_system(name: str, num_clients: int, rounds: int, workdir: Path, torch_threads: int = 1) -> ProcessRun:
    if name in IN_PROCESS:
        return run_in_process_system(name, num_clients, rounds, workdir, torch_threads)
    if name in FLOWER_CONFIGS:
        return run_flower_system(num_clients, rounds, FLOWER_CONFIGS[name], workdir)
    raise ValueError(f"unknown system {name!r}; known: {', '.join([*IN_PROCESS, *FLOWER_CONFIGS])}")


def run_pairs(
    systems: Sequence[str],
    num_clients: int,
    rounds: int,
    pairs: int,
    workdir: Path,
    torch_threads: int = 1,
) -> dict[str, list[ProcessRun]]:
    """Each system once per pair, order reversed every other pair; runs by system, in pair order."""
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    runs: dict[str, list[ProcessRun]] = {name: [] for name in systems}
    for pair in range(pairs):
        for name in systems if pair % 2 == 0 else list(systems)[::-1]:
            print(
                f"fedavg_paired: N={num_clients}, pair {pair + 1}/{pairs}: {name}",
                file=sys.stderr,
                flush=True,
            )
            runs[name].append(run_system(name, num_clients, rounds, workdir, torch_threads))
    return runs


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--systems", nargs="+", default=[*IN_PROCESS, *FLOWER_CONFIGS])
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fpair-", ignore_cleanup_errors=True) as workdir:
        runs = run_pairs(
            args.systems, args.clients, args.rounds, args.pairs, Path(workdir), args.torch_threads
        )
    base = runs[args.systems[0]]
    for name, process_runs in runs.items():
        rounds_ms = [r.round_ms for r in process_runs]
        ratios = [r.round_ms / b.round_ms for r, b in zip(process_runs, base, strict=True)]
        walls = [r.wall_s / b.wall_s for r, b in zip(process_runs, base, strict=True)]
        print(
            f"{name}: round ms per pair {[f'{x:.1f}' for x in rounds_ms]}, wall s "
            f"{[f'{r.wall_s:.1f}' for r in process_runs]}, CPU s {[f'{r.cpu_s:.1f}' for r in process_runs]}; "
            f"/ {args.systems[0]}: round {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}), "
            f"wall {statistics.median(walls):.2f}x ({min(walls):.2f}-{max(walls):.2f}), final accuracy "
            f"{process_runs[-1].run.accuracies[-1]:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
