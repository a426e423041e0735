"""Where the wall time goes: one FedAvg round by phase, and one env step (timing vs learning plane).

``--fedavg N`` (default 50): the FedAvg-round benchmark's workload (``bench.fedavg_workload``: digits,
small CNN, one local epoch, batch 16) through fedsimenv's batched round, phase by phase: the cohort's
set-up (stacked parameters, concatenated data, step plan), data (each step's batch gather), forward,
backward, optimizer (``fedsimenv.learning.cohort.PhaseClock``), aggregation (``fedavg`` and loading the
global model), evaluation (centralised test accuracy), the simulator (the timing plane's round for the
same N, ``bench.simulator``'s synchronous configuration, timed apart: the benchmark's round has no
simulator, an env step adds it), and Python overhead (the round's wall time less the phases: building
the jobs, the clock's own calls, the loop). Medians over rounds after a warm-up round.

The env step (``--env``): the ``tiny`` scenario with the ``equal`` agent, each part of a step timed.
Figures are medians over rounds; ratios are computed within this run (the machine is shared and
noisy). The simulator alone at large N is in ``bench/simulator.py``.

    python -m bench.round_breakdown [--fedavg 50] [--env] [--rounds 10] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np
import torch

from bench.fedavg_systems import BatchedSystem
from bench.fedavg_workload import build_workload, global_accuracy
from bench.simulator import time_rounds
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.aggregation import fedavg
from fedsimenv.learning.cohort import LocalJob, PhaseClock, train_batched

P = ParamSpec("P")
R = TypeVar("R")


def _timed(fn: Callable[P, R], bucket: list[float]) -> Callable[P, R]:
    """Wrap ``fn`` so that each call's wall time is appended to ``bucket``."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        bucket.append(time.perf_counter() - start)
        return result

    return wrapper


def tiny_breakdown(rounds: int) -> None:
    env = WirelessFLEnv("tiny", overrides={"episode.max_rounds": rounds})
    env.reset(seed=0)
    n = env.num_devices
    action = np.concatenate([np.ones(n), -np.ones(n), np.zeros(n)]).astype(np.float32)
    step_s: list[float] = []
    sim_s: list[float] = []
    train_s: list[float] = []
    env.simulator.run_round = _timed(env.simulator.run_round, sim_s)  # type: ignore[method-assign]
    env.trainer.train_round = _timed(env.trainer.train_round, train_s)  # type: ignore[method-assign]
    for _ in range(rounds):
        start = time.perf_counter()
        env.step(action)
        step_s.append(time.perf_counter() - start)
    step, sim, train = (statistics.median(x) * 1e3 for x in (step_s, sim_s, train_s))
    print(f"tiny (N={n}, torch threads={torch.get_num_threads()}), median over {rounds} rounds:")
    print(f"  env.step            {step:8.2f} ms")
    print(f"  SimPy round         {sim:8.3f} ms  ({sim / step:6.2%} of the step)")
    print(f"  train + aggregate   {train:8.2f} ms  ({train / step:6.2%} of the step)")
    print(f"  other (prune, FLOPs, reward) {step - sim - train:8.2f} ms")


#: Phases of one FedAvg round, in the order they run (``PhaseClock``'s, then the round's own).
FEDAVG_PHASES = (
    "setup",
    "data",
    "forward",
    "backward",
    "optimizer",
    "aggregation",
    "evaluation",
    "simulator",
    "python overhead",
)


def fedavg_phases(num_clients: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per phase of each timed round of the benchmark's batched FedAvg round (warm-up dropped).

    The cohort's phases come from :class:`fedsimenv.learning.cohort.PhaseClock`; ``round`` is the whole
    round's wall time (simulator excluded) and ``python overhead`` what the phases leave of it.
    """
    workload = build_workload(num_clients)
    system = BatchedSystem(workload, rounds)
    phases: dict[str, list[float]] = {name: [] for name in (*FEDAVG_PHASES, "round")}
    simulator_s = time_rounds(num_clients, rounds, {})
    for r in range(rounds):
        clock = PhaseClock()
        start = time.perf_counter()
        jobs = [
            LocalJob(x, y, {}, [order])
            for x, y, order in zip(workload.client_x, workload.client_y, system.orders[r], strict=True)
        ]
        clock.mark("outside")
        states = train_batched(system.model, jobs, system.sgd, clock=clock)
        clock.mark("outside")
        system.model.load_state_dict(fedavg(states, workload.num_samples))
        clock.mark("aggregation")
        global_accuracy(system.model, workload.test_x, workload.test_y)
        clock.mark("evaluation")
        total = time.perf_counter() - start
        if r == 0:
            continue  # warm-up: first-call allocations and the model's trace
        seconds = clock.seconds
        for name in FEDAVG_PHASES[:7]:
            phases[name].append(seconds.get(name, 0.0))
        phases["simulator"].append(simulator_s[r])
        phases["round"].append(total)
        phases["python overhead"].append(total - sum(seconds.get(n, 0.0) for n in FEDAVG_PHASES[:7]))
    return phases


def print_fedavg_breakdown(num_clients: int, rounds: int) -> None:
    phases = fedavg_phases(num_clients, rounds)
    medians = {name: statistics.median(values) * 1e3 for name, values in phases.items()}
    round_ms = medians["round"]
    print(
        f"FedAvg round, fedsimenv batched (digits, small CNN, N={num_clients}, torch threads="
        f"{torch.get_num_threads()}), median over {rounds - 1} rounds after one warm-up:"
    )
    for name in FEDAVG_PHASES:
        share = "" if name == "simulator" else f"  ({medians[name] / round_ms:6.1%} of the round)"
        print(f"  {name:<16} {medians[name]:9.3f} ms{share}")
    print(f"  {'round':<16} {round_ms:9.3f} ms  (simulator excluded: timed apart, an env step adds it)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--fedavg", type=int, default=50, metavar="N", help="clients of the FedAvg round")
    parser.add_argument("--env", action="store_true", help="also break down the tiny env step")
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error(f"--rounds must be >= 2 (the first is warm-up), got {args.rounds}")
    torch.set_num_threads(args.torch_threads)
    print_fedavg_breakdown(args.fedavg, args.rounds)
    if args.env:
        tiny_breakdown(args.rounds)


if __name__ == "__main__":
    main()
