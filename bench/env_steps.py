"""Env steps per second: the surrogate trainer at N = 20 and N = 100 (target >= 1,000 steps/s at
N = 20), and real training on digits (the ``tiny`` scenario, N = 10).

Random canonical actions from a seeded generator; the env resets when an episode ends (resets are
counted in the wall time, not as steps). Dirichlet partitions need enough samples per device, so the
N = 100 case uses an IID split. Figures depend on the machine and its load.

    python -m bench.env_steps [--steps 3000] [--real-steps 30]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.report import Collected, figure
from fedsimenv.env import WirelessFLEnv


def steps_per_second(overrides: dict[str, Any], steps: int, trainer: str) -> float:
    env = WirelessFLEnv("tiny", trainer=trainer, overrides=overrides)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(min(steps, 1000), 3 * env.num_devices)).astype(np.float32)
    env.reset(seed=0)
    env.step(actions[0])  # warm-up: lazy imports, first allocations
    env.reset(seed=0)
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


SECTION = "Env steps"


def collect(steps: int = 3000, real_steps: int = 30, repeats: int = 3, quick: bool = False) -> Collected:
    """Steps per second of the surrogate env at N = 20 and 100 and of real training (tiny)."""
    if quick:
        steps, real_steps, repeats = 50, 2, 1
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("surrogate", "N=20", {"cell.num_devices": 20}, steps),
        ("surrogate", "N=100 (iid)", {"cell.num_devices": 100, "learning.partition.method": "iid"}, steps),
        ("torch", "N=10 (tiny, digits, real training)", {}, real_steps),
    ]
    figures = []
    for trainer, label, overrides, count in cases:
        rates = [
            steps_per_second({"episode.max_rounds": 50, **overrides}, count, trainer) for _ in range(repeats)
        ]
        figures.append(figure(SECTION, f"{trainer}, {label}", "steps/s", rates, higher_is_better=True))
    return figures, [], ["env target: >= 1,000 steps/s with the surrogate at N = 20"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000, help="steps per surrogate case")
    parser.add_argument("--real-steps", type=int, default=30, help="steps with real training")
    args = parser.parse_args()
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("surrogate", "N = 20", {"cell.num_devices": 20}, args.steps),
        (
            "surrogate",
            "N = 100 (iid)",
            {"cell.num_devices": 100, "learning.partition.method": "iid"},
            args.steps,
        ),
        ("torch", "N = 10 (tiny, digits)", {}, args.real_steps),
    ]
    print(f"{'trainer':<10} {'case':<24} {'steps':>6} {'steps/s':>10}")
    for trainer, label, overrides, steps in cases:
        rate = steps_per_second({"episode.max_rounds": 50, **overrides}, steps, trainer)
        print(f"{trainer:<10} {label:<24} {steps:>6} {rate:>10.1f}")
    print("target: >= 1,000 steps/s with the surrogate at N = 20")


if __name__ == "__main__":
    main()
