"""The FedAvg-round benchmark's in-process systems, their alternating timing and fresh-process probes.

Both systems run ``bench.fedavg_workload``'s workload in this process, from the same initial weights
and the same pre-drawn sample orders:

* :class:`BatchedSystem` (``fedsimenv batched``): ``fedsimenv.learning.cohort.train_batched`` with its
  default engine, which for this convolutional model is the grouped layout
  (``fedsimenv.learning.grouped``: the clients' copies side by side in the channel axis, one grouped
  convolution per layer for the whole cohort), then ``fedsimenv.learning.aggregation.fedavg``;
* :class:`PlainLoopSystem` (``plain loop``): what a user writes by hand: per client ``copy.deepcopy``
  of the global model, ``torch.optim.SGD`` over the minibatches, then the weighted mean of the state
  dicts.

:func:`time_in_process` runs both round by round, alternating (who goes first alternates too), so
that load on a shared machine hits both alike. :func:`probe` measures one system's start-up and peak
memory in a fresh process, which runs this module:

    python -m bench.fedavg_systems SYSTEM --clients N [--torch-threads 1] [--rounds R] --json PATH
        [--weights PATH]

(SYSTEM is one of :data:`IN_PROCESS`, or ``none`` for a baseline that only builds the workload.) The
same process, run for all the rounds, is what the paired whole-process comparison
(``bench.fedavg_paired``) alternates with Flower's.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from bench.fedavg_workload import (
    BATCH_SIZE,
    LEARNING_RATE,
    MOMENTUM,
    State,
    Workload,
    build_workload,
    global_accuracy,
    round_flops,
    train_client_plain,
)
from bench.memory import TreeMemory, run_sampled
from fedsimenv.learning.aggregation import fedavg
from fedsimenv.learning.cohort import LocalJob, SGDConfig, train_batched

BATCHED = "fedsimenv batched"
PLAIN = "plain loop"
IN_PROCESS = (BATCHED, PLAIN)
SEED = 0
WARMUP_ROUNDS = 1
PROBE_ROUNDS = 2
PROBE_TIMEOUT_S = 600.0
REPO_ROOT = Path(__file__).resolve().parents[1]


class FedAvgSystem(Protocol):
    """One in-process system: a global model that advances one FedAvg round at a time."""

    model: torch.nn.Module

    def run_round(self, round_index: int) -> float:
        """Train every client, aggregate, evaluate; returns the global test accuracy."""
        ...


def _orders(workload: Workload, rounds: int) -> list[list[torch.Tensor]]:
    # Drawn before timing: the benchmark times training, not seeding.
    return [[workload.order(r, k) for k in range(workload.num_clients)] for r in range(rounds)]


class BatchedSystem:
    """fedsimenv: ``train_batched`` over all clients at once, then the project's ``fedavg``."""

    def __init__(self, workload: Workload, rounds: int) -> None:
        self.workload = workload
        self.model = workload.initial_model()
        self.orders = _orders(workload, rounds)
        self.sgd = SGDConfig(learning_rate=LEARNING_RATE, momentum=MOMENTUM, batch_size=BATCH_SIZE)

    def run_round(self, round_index: int) -> float:
        w = self.workload
        jobs = [
            LocalJob(x, y, {}, [order])
            for x, y, order in zip(w.client_x, w.client_y, self.orders[round_index], strict=True)
        ]
        states = train_batched(self.model, jobs, self.sgd)
        self.model.load_state_dict(fedavg(states, w.num_samples))
        return global_accuracy(self.model, w.test_x, w.test_y)


class PlainLoopSystem:
    """A hand-written FedAvg round: deepcopy, ``torch.optim.SGD`` per client, weighted mean."""

    def __init__(self, workload: Workload, rounds: int) -> None:
        self.workload = workload
        self.model = workload.initial_model()
        self.orders = _orders(workload, rounds)

    def run_round(self, round_index: int) -> float:
        w = self.workload
        states: list[State] = []
        for x, y, order in zip(w.client_x, w.client_y, self.orders[round_index], strict=True):
            local = train_client_plain(copy.deepcopy(self.model), x, y, order)
            states.append(local.state_dict())
        total = sum(w.num_samples)
        weights = [n / total for n in w.num_samples]
        averaged = {
            key: sum((s[key] * wk for s, wk in zip(states, weights, strict=True)), torch.tensor(0.0))
            for key in states[0]
        }
        self.model.load_state_dict(averaged)
        return global_accuracy(self.model, w.test_x, w.test_y)


def make_system(name: str, workload: Workload, rounds: int) -> FedAvgSystem:
    if name == BATCHED:
        return BatchedSystem(workload, rounds)
    if name == PLAIN:
        return PlainLoopSystem(workload, rounds)
    raise ValueError(f"unknown in-process system {name!r}; known: {', '.join(IN_PROCESS)}")


@dataclass(frozen=True)
class SystemRun:
    """One system's run over all rounds.

    Attributes:
        round_ms: Wall time of each timed round (the warm-up rounds excluded).
        accuracies: Global test accuracy after every round, warm-up included.
        first_state: The global model's state dict after round 1.
        final_state: The global model's final state dict.
    """

    round_ms: tuple[float, ...]
    accuracies: tuple[float, ...]
    first_state: State
    final_state: State


def time_in_process(workload: Workload, rounds: int) -> dict[str, SystemRun]:
    """Both in-process systems for ``rounds`` rounds, alternating round by round."""
    systems = {name: make_system(name, workload, rounds) for name in IN_PROCESS}
    round_ms: dict[str, list[float]] = {name: [] for name in systems}
    accuracies: dict[str, list[float]] = {name: [] for name in systems}
    first_state: dict[str, State] = {}
    for r in range(rounds):
        # Who goes first alternates too, so neither always runs right after the other's allocations.
        for name in IN_PROCESS if r % 2 == 0 else IN_PROCESS[::-1]:
            start_s = time.perf_counter()
            accuracies[name].append(systems[name].run_round(r))
            elapsed_ms = (time.perf_counter() - start_s) * 1e3
            if r >= WARMUP_ROUNDS:
                round_ms[name].append(elapsed_ms)
            if r == 0:
                first_state[name] = _detached(systems[name].model.state_dict())
    return {
        name: SystemRun(
            tuple(round_ms[name]),
            tuple(accuracies[name]),
            first_state[name],
            _detached(system.model.state_dict()),
        )
        for name, system in systems.items()
    }


def _detached(state: State) -> State:
    return {k: v.detach().clone() for k, v in state.items()}


@dataclass(frozen=True)
class FloorRun:
    """The compute floor's inputs, alternated with rounds of the in-process systems.

    Attributes:
        flops: One round's dense work (:func:`bench.fedavg_workload.round_flops`).
        peak_gflops: Per repeat, the fp32 GEMM peak right then (best of a few ``torch.mm``).
        round_ms: Per system, the round right after each peak sample.
    """

    flops: float
    peak_gflops: tuple[float, ...]
    round_ms: dict[str, tuple[float, ...]]

    @property
    def floor_ms(self) -> tuple[float, ...]:
        return tuple(self.flops / (peak * 1e9) * 1e3 for peak in self.peak_gflops)


def time_floor(workload: Workload, repeats: int, gemm_size: int = 1024) -> FloorRun:
    """GEMM peak samples alternated with rounds of both in-process systems, so that a round and the
    floor it is compared with see the same load (a floor from an idle moment over a round slowed by
    other processes would promise a speed-up no code could give)."""
    systems = {name: make_system(name, workload, repeats + WARMUP_ROUNDS) for name in IN_PROCESS}
    for system in systems.values():
        for r in range(WARMUP_ROUNDS):
            system.run_round(r)
    a, b = torch.randn(gemm_size, gemm_size), torch.randn(gemm_size, gemm_size)
    torch.mm(a, b)
    peaks: list[float] = []
    round_ms: dict[str, list[float]] = {name: [] for name in systems}
    for r in range(WARMUP_ROUNDS, WARMUP_ROUNDS + repeats):
        best_s = float("inf")
        for _ in range(3):
            start_s = time.perf_counter()
            torch.mm(a, b)
            best_s = min(best_s, time.perf_counter() - start_s)
        peaks.append(2 * gemm_size**3 / best_s / 1e9)
        for name, system in systems.items():
            start_s = time.perf_counter()
            system.run_round(r)
            round_ms[name].append((time.perf_counter() - start_s) * 1e3)
    return FloorRun(round_flops(workload), tuple(peaks), {k: tuple(v) for k, v in round_ms.items()})


# --- fresh-process probes: start-up and peak memory of one in-process system ------------------------


@dataclass(frozen=True)
class Probe:
    """A fresh process that ran one system (or none, ``system=None``) for :data:`PROBE_ROUNDS` rounds.

    Attributes:
        first_round_s: Wall time of its first round (NaN for the baseline process).
        memory: Peak memory of the process.
    """

    first_round_s: float
    memory: TreeMemory


def probe(system: str | None, num_clients: int, workdir: Path) -> Probe:
    """Run ``python -m bench.fedavg_systems SYSTEM`` in a fresh process and sample its memory."""
    out = workdir / f"probe-{(system or 'none').replace(' ', '-')}-{num_clients}.json"
    command = [sys.executable, "-m", "bench.fedavg_systems", system or "none"]
    # The probe uses this process's torch threads, which the in-process timings ran with.
    command += ["--clients", str(num_clients), "--torch-threads", str(torch.get_num_threads())]
    command += ["--json", str(out)]
    returncode, stderr, memory = run_sampled(command, REPO_ROOT, PROBE_TIMEOUT_S)
    if returncode != 0:
        raise RuntimeError(f"probe {system} N={num_clients} failed:\n{stderr.decode()[-2000:]}")
    result = json.loads(out.read_text())
    # The process's own high-water mark is exact; the sampler may have missed its last moments.
    peak_rss_mib = max(memory.peak_rss_mib, float(result["peak_rss_mib"]))
    return Probe(float(result["first_round_s"]), dataclasses.replace(memory, peak_rss_mib=peak_rss_mib))


def run_probe(
    system: str,
    num_clients: int,
    json_path: Path,
    rounds: int = PROBE_ROUNDS,
    weights_path: Path | None = None,
) -> None:
    """The probe process's work: build the workload, run ``system`` (unless "none") for ``rounds``
    rounds, write the JSON (first round's time, every round's time and accuracy, peak RSS) and, with
    ``weights_path``, the global weights after round 1 and at the end (``{"first": ..., "final": ...}``).
    """
    workload = build_workload(num_clients, SEED)
    round_s: list[float] = []
    accuracies: list[float] = []
    states: dict[str, State] = {}
    if system != "none":
        instance = make_system(system, workload, rounds)
        for r in range(rounds):
            start_s = time.perf_counter()
            accuracies.append(instance.run_round(r))
            round_s.append(time.perf_counter() - start_s)
            if r == 0:
                states["first"] = _detached(instance.model.state_dict())
        states["final"] = _detached(instance.model.state_dict())
    if weights_path is not None:
        torch.save(states, weights_path)
    result = {
        "first_round_s": round_s[0] if round_s else float("nan"),
        "round_ms": [s * 1e3 for s in round_s],
        "accuracies": accuracies,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": own_peak_rss_mib(),
    }
    json_path.write_text(json.dumps(result))


def own_peak_rss_mib() -> float:
    """This process's peak RSS: the kernel's VmHWM, which starts afresh at exec. (``ru_maxrss`` does
    not: Linux carries the parent's peak over fork and exec, so a probe spawned by a big benchmark
    process would report the parent's peak.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One FedAvg-round system in a fresh process (a probe).")
    parser.add_argument("system", choices=[*IN_PROCESS, "none"])
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--rounds", type=int, default=PROBE_ROUNDS)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    run_probe(args.system, args.clients, args.json, args.rounds, args.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
