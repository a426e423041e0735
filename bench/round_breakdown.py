"""Where the wall time of one env step goes: timing plane (SimPy) vs learning plane (torch).

Runs the ``tiny`` scenario with the ``equal`` agent and times each phase of a step separately, then
times the SimPy round alone at larger N with synthetic workloads. Figures are medians over rounds;
ratios are computed within this run (the machine is shared and noisy).

    python -m bench.round_breakdown [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np
import torch

from channels import ChannelModel
from channels.fading import RayleighFading
from channels.pathloss import MacroCellParams, MacroCellPathLoss
from fedsimenv.config import NetworkConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.sim import DeviceFleet, DeviceWorkload, RoundDecision, RoundSimulator

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


def simpy_scaling(sizes: list[int], repeats: int) -> None:
    print("SimPy synchronous round alone (synthetic workload), median over repeats:")
    baseline = None
    for n in sizes:
        rng = np.random.default_rng(0)
        fleet = DeviceFleet(
            distance_m=rng.uniform(10, 500, n),
            angle_rad=np.zeros(n),
            shadowing_db=np.zeros(n),
            cpu_freq_hz=rng.uniform(0.5e9, 2e9, n),
            flops_per_cycle=np.full(n, 4.0),
            tx_power_w=np.full(n, 0.01),
            kappa=1e-28,
        )
        channel = ChannelModel(
            MacroCellPathLoss(MacroCellParams()), RayleighFading(RayleighFading.Params()), 0
        )
        sim = RoundSimulator(fleet, channel, NetworkConfig(), rng)
        decision = RoundDecision(np.ones(n, bool), np.zeros(n), np.full(n, 20e6 / n))
        workload = DeviceWorkload(np.full(n, 6e5), np.full(n, 3.2e5), 3.2e5, np.full(n, 150), 1)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            sim.run_round(decision, workload)
            times.append(time.perf_counter() - start)
        median_ms = statistics.median(times) * 1e3
        baseline = baseline or median_ms / n
        print(
            f"  N={n:>6}: {median_ms:9.2f} ms/round, {median_ms / n * 1e3:7.2f} us/device "
            f"(x{median_ms / n / baseline:.2f} per device vs N={sizes[0]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tiny_breakdown(args.rounds)
    simpy_scaling([100, 1000, 10000], args.repeats)


if __name__ == "__main__":
    main()
