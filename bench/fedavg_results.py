"""The FedAvg-round section's results (``bench.fedavg_round``): what one N's measurements become.

Holds the section's name, its targets and tolerances, the containers the measuring code fills
(:class:`SectionResults`, :class:`Measured`), and the helpers that turn the measurements into figures,
ratios and notes: round-time, start-up, memory and accuracy figures, the check that the systems
computed the same model (:func:`_agreement`), and the comparison with the compute floor
(:func:`_add_floor`). Running the systems stays in ``bench.fedavg_round``.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from dataclasses import dataclass

import torch

from bench.compute import ComputeFloor
from bench.fedavg_paired import ProcessRun
from bench.fedavg_systems import BATCHED, IN_PROCESS, PLAIN, FloorRun, SystemRun
from bench.fedavg_workload import State
from bench.memory import TreeMemory
from bench.report import Figure, Ratio, figure

SECTION = "FedAvg round (digits, small CNN)"
#: Targets of issue 20 at N = 50: minimum ratio of the plain loop's and Flower's round time to
#: fedsimenv batched's (issue 10's were 3 and 15).
TARGET_CLIENTS = 50
PLAIN_TARGET = 6.0
FLOWER_TARGET = 30.0
# Identity of the workloads is checked on the global weights after round 1: there the systems differ
# only by float rounding (batched vs per-client convolutions, torch vs numpy averaging, Flower's reply
# order), measured <= 4e-7 at N = 10-100, while flipping a single client's order in that round already
# moves them by 8e-5 (N = 50) to 3e-3 (N = 10). Later rounds are no sharp test: rounding differences
# are amplified where a max-pool or ReLU switches (merely permuting the order of the FedAvg sum gives
# 9e-4 after 10 rounds at N = 10), so the final weights are reported, not judged. Final accuracies
# must agree to 0.01 (3.6 of the 359 test samples): the rounding flips at most a sample or two.
ACCURACY_TOLERANCE = 0.01
FIRST_ROUND_WEIGHT_TOLERANCE = 1e-5


@dataclass
class SectionResults:
    figures: list[Figure] = dataclasses.field(default_factory=list)
    ratios: list[Ratio] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    agree: bool = True


def _max_weight_diff(a: State, b: State) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _round_figure(system: str, n: int, run: SystemRun) -> Figure:
    return figure(SECTION, f"round time: {system}, N={n}", "ms/round", run.round_ms)


def _agreement(n: int, runs: dict[str, SystemRun]) -> tuple[str, bool]:
    """A note on how far the systems' accuracies and weights are apart, and whether that is ok."""
    final = {name: run.accuracies[-1] for name, run in runs.items()}
    accuracy_spread = max(final.values()) - min(final.values())
    first, last = runs[PLAIN].first_state, runs[PLAIN].final_state
    others = [name for name in runs if name != PLAIN]
    first_diff = {name: _max_weight_diff(runs[name].first_state, first) for name in others}
    final_diff = {name: _max_weight_diff(runs[name].final_state, last) for name in others}
    ok = accuracy_spread <= ACCURACY_TOLERANCE and max(first_diff.values()) <= FIRST_ROUND_WEIGHT_TOLERANCE
    accuracies = ", ".join(f"{name} {acc:.4f}" for name, acc in final.items())
    verdict = "agree" if ok else "**MISMATCH: the workloads differ**"
    return (
        f"N={n}: final accuracy {accuracies}; max difference {accuracy_spread:.4f} (tolerance "
        f"{ACCURACY_TOLERANCE}); max |w - w_plain| after round 1 {_diffs(first_diff)} (tolerance "
        f"{FIRST_ROUND_WEIGHT_TOLERANCE:g}), after the last round {_diffs(final_diff)}: {verdict}",
        ok,
    )


def _diffs(diff: dict[str, float]) -> str:
    return ", ".join(f"{name} {d:.1e}" for name, d in diff.items())


def _memory_figure(system: str, n: int, memory: TreeMemory) -> Figure:
    note = f"PSS {memory.peak_pss_mib:.0f} MiB, {memory.max_processes} process(es)"
    return figure(SECTION, f"peak memory: {system}, N={n}", "MiB", [memory.peak_rss_mib], note=note)


@dataclass
class Measured:
    """One N's results per system, filled in by the in-process part and then by Flower."""

    runs: dict[str, SystemRun]
    round_figures: dict[str, Figure]
    startup_s: dict[str, float] = dataclasses.field(default_factory=dict)
    memory: dict[str, TreeMemory] = dataclasses.field(default_factory=dict)
    #: Each system's own-process round figure (``bench.fedavg_round._measure_processes``), Flower's included.
    process_rounds: dict[str, Figure] = dataclasses.field(default_factory=dict)


def _process_figures(name: str, n: int, runs: list[ProcessRun]) -> list[Figure]:
    """Round time (each run's median round), whole-process wall time and CPU time, one sample per pair."""
    return [
        figure(SECTION, f"round time, own process: {name}, N={n}", "ms/round", [r.round_ms for r in runs]),
        figure(SECTION, f"whole process (timed outside): {name}, N={n}", "s", [r.wall_s for r in runs]),
        figure(SECTION, f"CPU time of the process: {name}, N={n}", "s", [r.cpu_s for r in runs]),
    ]


def _add_figures(n: int, measured: Measured, out: SectionResults) -> None:
    out.figures.extend(measured.round_figures.values())
    out.figures.extend(
        figure(SECTION, f"start-up: {name}, N={n}", "s", [s]) for name, s in measured.startup_s.items()
    )
    out.figures.extend(_memory_figure(name, n, m) for name, m in measured.memory.items())
    out.figures.extend(
        figure(
            SECTION, f"final accuracy: {name}, N={n}", "fraction", [r.accuracies[-1]], higher_is_better=True
        )
        for name, r in measured.runs.items()
    )
    note, ok = _agreement(n, measured.runs)
    out.notes.append(note)
    out.agree = out.agree and ok
    if not ok:
        print(f"fedavg_round: {note}", file=sys.stderr)


def _add_floor(n: int, run: FloorRun, measured: Measured, out: SectionResults) -> None:
    """The floor figure (alternated with both in-process systems' rounds) and per slower system the
    best ratio over it that the floor allows, against the targets."""
    threads = torch.get_num_threads()
    floor_figure = figure(
        SECTION,
        f"compute floor: the round at 100% of the fp32 GEMM peak, N={n}",
        "ms/round",
        run.floor_ms,
        note=f"{run.flops / 1e9:.3f} GFLOP; peak {statistics.median(run.peak_gflops):.1f} GFLOP/s "
        f"(median of {len(run.peak_gflops)}), {threads} thread(s)",
    )
    alternated = {
        name: figure(SECTION, f"round time, alternated with the floor: {name}, N={n}", "ms/round", ms)
        for name, ms in run.round_ms.items()
    }
    out.figures += [floor_figure, *alternated.values()]
    out.ratios.append(
        Ratio(f"{BATCHED} / compute floor, N={n} (1 / share of peak)", alternated[BATCHED], floor_figure)
    )
    floor = ComputeFloor(run.flops, statistics.median(run.peak_gflops))
    # The plain loop is paired with the floor repeat by repeat; Flower ran in other processes at
    # other times, so its ratio is one of medians (and the floor's median peak is its best guess).
    others = [(PLAIN, alternated[PLAIN], True)]
    others += [(k, f, False) for k, f in measured.process_rounds.items() if k not in IN_PROCESS]
    for name, slower, paired in others:
        target = None
        if n == TARGET_CLIENTS:
            target = PLAIN_TARGET if name == PLAIN else FLOWER_TARGET
        ratio = Ratio(f"best possible: {name} / compute floor, N={n}", slower, floor_figure, target, paired)
        out.ratios.append(ratio)
        if target is not None:
            out.notes.append(floor.verdict(f"{name} / {BATCHED}, N={n}", ratio.median, target))
