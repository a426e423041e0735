"""FedAvg round: fedsimenv's batched cohort training vs a plain PyTorch loop vs Flower's simulation.

The workload (``bench.fedavg_workload``) is identical for every system: sklearn digits with the
trainer's stratified train/test split, the training set dealt IID to N clients, the small CNN
(conv16-conv32-pool-fc) from one seeded initialisation, one local epoch of SGD (batch 16, lr 0.05,
momentum 0.9, a fresh optimiser per client and round), FedAvg weighted by samples, and centralised
evaluation of the global model on the whole test set after every round. Each client's sample order
in each round comes from its own seeded ``torch.Generator``, so all systems compute the same model
up to float rounding; the benchmark checks that their weights after round 1 and their final
accuracies agree (see the tolerances in ``bench.fedavg_results`` for why not the final weights).

Systems (the in-process two in ``bench.fedavg_systems``, Flower's runner in ``bench.fedavg_flower``):

* ``fedsimenv batched``: ``fedsimenv.learning.cohort.train_batched`` with its default engine, which
  for this CNN runs the whole cohort in the grouped layout (``fedsimenv.learning.grouped``: the
  clients' copies side by side in the channel axis, one grouped convolution per layer), then
  ``fedsimenv.learning.aggregation.fedavg``;
* ``plain loop``: what a user writes by hand: per client ``copy.deepcopy`` of the global model,
  ``torch.optim.SGD`` over the minibatches, then the weighted mean of the state dicts;
* ``Flower``: ``flwr.simulation.run_simulation`` (Ray backend) running ``bench.peers.flower_fedavg``
  in ``.venv-bench`` (``make bench-env``), with Flower's default client resources and with
  ``num_cpus=1`` per client; skipped with a note when that environment is absent.

Measured per system and N:

* round time (ms/round), two ways, both paired:
  - in one process: the two in-process systems alternate round by round (who goes first alternates
    too), so load changes on a shared machine hit both alike; ratio formed round by round;
  - as whole processes (``bench.fedavg_paired``): every system, Flower included, runs the same
    workload in a process of its own, A B C D, D C B A, ... (``--pairs``), each process timed from
    outside (launch to exit) as well as by its own round clock (the median of its rounds after the
    warm-up); every ratio is formed pair by pair and reported as median and min-max over the pairs.
    Flower's round is the time between two calls of its centralised ``evaluate_fn`` (Flower calls it
    after each round);
* whole-process wall time and CPU time per run;
* start-up (s): time from a ready workload (data, split and model built) to the end of the first
  round, less one steady round, in each system's first process: the first-call set-up for the
  in-process systems, Ray and Flower start (``run_simulation`` to the end of round 1) for Flower;
* peak memory (MiB): peak resident memory of each system's process tree (for Flower the driver plus
  every Ray process), see ``bench.memory``; the note gives the proportional (PSS) figure;
* final accuracy after the last round;
* compute floor (ms/round): the round's dense training FLOPs (3x forward, every training sample once)
  plus the evaluation's forward FLOPs, at the fp32 GEMM peak measured in this process at its torch
  threads (``bench.compute.ComputeFloor``), peak samples alternated with rounds of both in-process
  systems so both see the same load. No system can run the round faster, so a system's round time
  over the floor is the largest speed-up over it that fedsimenv could ever show here: the "best
  possible" ratios, against the same targets, say whether a target is reachable at all.

    python -m bench.fedavg_round [--clients 10 50 100] [--rounds 10] [--pairs 3] [--no-flower]
        [--out DIR] [--torch-threads 1]

Threads: the in-process systems run one torch thread by default (``--torch-threads``): on a shared
2-core machine, with two threads per process another busy process makes torch's OpenMP threads wait
for each other, and a round can take 10-200x longer (measured here under load 4: plain loop at
N = 50, 106 ms/round with one thread, 0.4-21 s with two). Flower's clients get ``num_cpus`` threads
from Ray (2 with its default resources), its driver one.

``--out DIR`` writes ``DIR/fedavg_round.md`` and ``DIR/fedavg_round.json``. The exit status is 1 when
the systems' round-1 weights or final accuracies disagree beyond those tolerances.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.fedavg_flower import flower_unavailable
from bench.fedavg_paired import FLOWER_CONFIGS, run_pairs
from bench.fedavg_results import (
    FLOWER_TARGET,
    PLAIN_TARGET,
    SECTION,
    TARGET_CLIENTS,
    Measured,
    SectionResults,
    _add_figures,
    _add_floor,
    _process_figures,
    _round_figure,
)
from bench.fedavg_systems import (
    BATCHED,
    IN_PROCESS,
    PLAIN,
    SEED,
    WARMUP_ROUNDS,
    probe,
    run_probe,
    time_floor,
    time_in_process,
)
from bench.fedavg_workload import (
    BATCH_SIZE,
    LEARNING_RATE,
    MOMENTUM,
    build_workload,
)
from bench.report import Figure, Ratio, Report, machine_description

# SECTION lives with the figures that carry it (bench.fedavg_results); every bench section module
# names its section, and tests import it from here.
__all__ = ["DEFAULT_PAIRS", "DEFAULT_ROUNDS", "SECTION", "collect", "main"]

DEFAULT_ROUNDS = 10
#: Whole-process pairs per N (each system once per pair, order reversed every other pair).
DEFAULT_PAIRS = 3
QUICK_CLIENTS = (10,)
QUICK_ROUNDS = 3


def _measure_in_process(n: int, rounds: int, out: SectionResults) -> Measured:
    print(f"fedavg_round: N={n}, {rounds} rounds: in-process systems", file=sys.stderr, flush=True)
    runs = time_in_process(build_workload(n, SEED), rounds)
    measured = Measured(runs, {name: _round_figure(name, n, run) for name, run in runs.items()})
    out.ratios.append(
        Ratio(
            f"plain loop / fedsimenv batched, N={n} (rounds alternated in one process)",
            measured.round_figures[PLAIN],
            measured.round_figures[BATCHED],
            target=PLAIN_TARGET if n == TARGET_CLIENTS else None,
            paired=True,
        )
    )
    return measured


def _measure_processes(
    n: int, rounds: int, pairs: int, flower: bool, workdir: Path, measured: Measured, out: SectionResults
) -> None:
    """Every system as a whole process, A B A B (``bench.fedavg_paired``); ratios pair by pair."""
    systems = [*IN_PROCESS, *(FLOWER_CONFIGS if flower else ())]
    try:
        runs = run_pairs(systems, n, rounds, pairs, workdir, torch.get_num_threads())
    except RuntimeError as error:
        out.notes.append(f"paired processes, N={n} failed: {error}")
        print(f"fedavg_round: {error}", file=sys.stderr)
        return
    per_run = {name: _process_figures(name, n, process_runs) for name, process_runs in runs.items()}
    measured.process_rounds = {name: figures[0] for name, figures in per_run.items()}
    for name, process_runs in runs.items():
        out.figures.extend(per_run[name])
        # Start-up and memory: the first run (a fresh process, like a user's first call), memory the peak.
        measured.startup_s[name] = process_runs[0].startup_s
        measured.memory[name] = max((r.memory for r in process_runs), key=lambda m: m.peak_rss_mib)
        if name not in measured.runs:
            measured.runs[name] = process_runs[-1].run
        if process_runs[0].details:
            out.notes.append(f"{name}, N={n}: {process_runs[0].details}")
    batched_round, batched_wall = per_run[BATCHED][0], per_run[BATCHED][1]
    for name in systems[1:]:
        target = None
        if n == TARGET_CLIENTS:
            target = PLAIN_TARGET if name == PLAIN else FLOWER_TARGET
        out.ratios.append(
            Ratio(
                f"{name} / {BATCHED}, N={n} (processes A B A B)",
                per_run[name][0],
                batched_round,
                target,
                True,
            )
        )
        out.ratios.append(
            Ratio(f"whole process: {name} / {BATCHED}, N={n}", per_run[name][1], batched_wall, paired=True)
        )


def _collect(
    clients: Sequence[int], rounds: int, quick: bool, flower: bool, pairs: int = DEFAULT_PAIRS
) -> SectionResults:
    if quick:
        clients, rounds = QUICK_CLIENTS, QUICK_ROUNDS
    if rounds <= WARMUP_ROUNDS:
        raise ValueError(f"need more than {WARMUP_ROUNDS} round(s): the first is warm-up, got {rounds}")
    out = SectionResults()
    skip = (
        "Flower skipped: quick mode"
        if quick
        else (None if flower else "Flower skipped: not requested (--no-flower)")
    )
    skip = skip or flower_unavailable()
    if skip is not None:
        out.notes.append(skip)
        print(f"fedavg_round: {skip}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fbench-", ignore_cleanup_errors=True) as workdir:
        if not quick:
            baseline = probe(None, min(clients), Path(workdir))
            out.notes.append(
                f"Baseline for the memory figures: a process that only imports torch and fedsimenv and "
                f"builds the workload peaks at {baseline.memory.peak_rss_mib:.0f} MiB RSS"
            )
        for n in clients:
            measured = _measure_in_process(n, rounds, out)
            if not quick:
                _measure_processes(n, rounds, pairs, skip is None, Path(workdir), measured, out)
            _add_figures(n, measured, out)
            if not quick:
                _add_floor(n, time_floor(build_workload(n, SEED), rounds - WARMUP_ROUNDS), measured, out)
    out.notes += _method_notes(rounds, quick, pairs)
    return out


def _method_notes(rounds: int, quick: bool, pairs: int) -> list[str]:
    notes = [
        f"Workload: digits (trainer's split, seed {SEED}), IID over N clients, small CNN, {rounds} rounds "
        f"(the first is warm-up, not timed), one local epoch, batch {BATCH_SIZE}, lr {LEARNING_RATE}, "
        f"momentum {MOMENTUM}, FedAvg weighted by samples, centralised test accuracy every round (timed); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads in-process",
        "Round times: 'round time' figures come from fedsimenv batched and the plain loop alternating "
        "round by round in one process (paired: ratio per round); 'own process' figures from every system "
        f"as a whole process, A B A B ({pairs} pairs, order reversed every other pair), one sample per "
        "process (the median of its rounds after the warm-up round); every ratio in this section is "
        "paired (formed pair by pair, median and min-max over the pairs); "
        "'whole process' is launch to exit timed by the parent (imports, workload, Ray start for Flower)",
        "Threads: the in-process systems' processes run this run's torch threads; Flower's clients get "
        "num_cpus threads from Ray (default resources: 2), its driver one thread",
        "Start-up: first round minus one steady round (median), from a ready workload, in the first "
        "process of each system: a fresh process for the in-process systems, run_simulation's call for "
        "Flower (Ray start, actors, their imports)",
        "Peak memory: peak of the summed RSS of the process tree running the system, sampled every 0.2 s "
        "from /proc (a single process: its VmHWM); the note's PSS splits shared pages between processes",
    ]
    if quick:
        notes.append("Quick mode: start-up and memory probes skipped")
    return notes


def collect(
    clients: Sequence[int] = (10, 50, 100),
    rounds: int = DEFAULT_ROUNDS,
    quick: bool = False,
    flower: bool = True,
    repeats: int | None = None,
    pairs: int = DEFAULT_PAIRS,
) -> tuple[list[Figure], list[Ratio], list[str]]:
    """Figures, ratios and notes of the FedAvg-round benchmark (section :data:`SECTION`).

    Args:
        clients: The N to measure.
        rounds: FedAvg rounds per system and N (the first is warm-up).
        quick: A small, fast version for tests: N = 10, 3 rounds, no Flower, no fresh-process probes.
        flower: Run the Flower peer when ``.venv-bench`` has it.
        repeats: Timed rounds per system and N (``python -m bench --repeats``); when given it sets
            ``rounds`` to ``repeats`` plus the warm-up round(s).
    """
    if repeats is not None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        rounds = repeats + WARMUP_ROUNDS
    out = _collect(clients, rounds, quick, flower, pairs)
    return out.figures, out.ratios, out.notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--quick", action="store_true", help="N = 10, 3 rounds, no Flower, no probes")
    parser.add_argument("--no-flower", action="store_true", help="skip the Flower peer")
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="whole-process pairs per N")
    parser.add_argument("--out", type=Path, default=None, help="write fedavg_round.md and .json here")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads of the in-process systems (default 1)"
    )
    # Internal: one in-process system in a fresh process, for start-up and memory (what the probe's
    # process does; bench.fedavg_systems spawns it as `python -m bench.fedavg_systems`).
    parser.add_argument("--probe", choices=[*IN_PROCESS, "none"], help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    if args.probe is not None:
        run_probe(args.probe, args.clients[0], args.json)
        return 0
    machine = machine_description()
    out = _collect(args.clients, args.rounds, args.quick, not args.no_flower, args.pairs)
    report = Report(machine, out.figures, out.ratios, out.notes)
    print(report.to_markdown("fedsimenv benchmark: FedAvg round"), end="")
    if args.out is not None:
        report.write(args.out / "fedavg_round.md", args.out / "fedavg_round.json")
    return 0 if out.agree else 1


if __name__ == "__main__":
    sys.exit(main())
