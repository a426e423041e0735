"""Wall time of one simulated round at N = 100, 1,000 and 10,000 devices (target <= 0.2 s at 10,000).

The timing plane alone: no training, synthetic per-device workloads (small-CNN FLOPs and model size),
the ``tiny`` scenario's radio and devices scaled up. Two configurations: the synchronous round of the
walking skeleton (one fading block per round), and a harder one with 0.1 s coherence blocks, Markov
availability, batteries and a deadline. Medians over repeats; the per-device cost ratio against the
smallest N shows how cost grows.

    python -m bench.simulator [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from bench.report import Collected, figure
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim import DeviceWorkload, RoundDecision
from fedsimenv.sim.builder import build_simulator

HARD = {
    "channel.coherence_time_s": 0.1,
    "devices.availability": {"on_to_off_rate_per_s": 0.05, "off_to_on_rate_per_s": 0.5},
    "devices.battery_capacity_j": {"distribution": "uniform", "low": 5.0, "high": 50.0},
    "devices.idle_power_w": 0.01,
    "protocol.name": "deadline",
    "protocol.deadline_s": 1.0,
}


def time_rounds(n: int, repeats: int, overrides: dict[str, Any]) -> list[float]:
    config = load_scenario("tiny", {"cell.num_devices": n, **overrides})
    sim = build_simulator(config, EpisodeStreams(np.random.SeedSequence(0)))
    decision = RoundDecision(np.ones(n, bool), np.zeros(n), np.full(n, config.network.bandwidth_hz / n))
    # Small CNN on digits: 0.62 MFLOP forward, 9,930 params x 32 bits, ~144 samples, 2 epochs.
    workload = DeviceWorkload(np.full(n, 6.2e5), np.full(n, 3.2e5), 3.2e5, np.full(n, 144), 2)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sim.run_round(decision, workload)
        times.append(time.perf_counter() - start)
    return times


SECTION = "Simulator (timing plane, one round)"


def collect(repeats: int = 5, quick: bool = False) -> Collected:
    """ms per round at N = 100 / 1,000 / 10,000 for both configurations (target <= 200 ms at 10,000)."""
    sizes = (100,) if quick else (100, 1_000, 10_000)
    repeats = 1 if quick else repeats
    figures = []
    for label, overrides in (("synchronous", {}), ("deadline+blocks+availability+battery", HARD)):
        for n in sizes:
            times = time_rounds(n, repeats, overrides)
            figures.append(figure(SECTION, f"{label}, N={n}", "ms/round", [t * 1e3 for t in times]))
    return figures, [], ["simulator target: <= 200 ms per synchronous round at N = 10,000"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for label, overrides in (
        ("synchronous, block per round", {}),
        ("deadline+blocks+availability+battery", HARD),
    ):
        print(f"{label}:")
        base = None
        for n in (100, 1_000, 10_000):
            times = time_rounds(n, args.repeats, overrides)
            median = statistics.median(times)
            per_device = median / n
            base = base or per_device
            print(
                f"  N={n:>6}: median {median * 1e3:8.2f} ms/round (min {min(times) * 1e3:8.2f}, "
                f"max {max(times) * 1e3:8.2f}), {per_device * 1e6:6.2f} us/device, "
                f"x{per_device / base:.2f} per device vs N=100"
            )


if __name__ == "__main__":
    main()
