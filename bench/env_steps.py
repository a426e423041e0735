"""Env steps per second: the surrogate trainer at N = 20 and N = 50 (target >= 5,000 steps/s at
N = 20), and real training on digits (the ``tiny`` scenario, N = 10; target >= 40 steps/s on one
thread), plus where one real-training step spends its time (``--phases``).

Random canonical actions from a seeded generator; the env resets when an episode ends (resets are
counted in the wall time, not as steps). The surrogate's calibration is the digits Dirichlet(0.5)
one, whose partition cannot give 100 devices 8 samples each, so the large case is N = 50. One
torch/BLAS thread (set ``OMP_NUM_THREADS=1`` too for BLAS).
Figures depend on the machine and its load: compare against main in the same session.

    python -m bench.env_steps [--steps 3000] [--real-steps 30] [--phases]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.report import Collected, figure
from fedsimenv.env import WirelessFLEnv

#: Where a real-training step goes: (object attribute path, label); nested phases are indented.
PHASES = (
    ("trainer.plan_round", "plan (masks, exact costs)"),
    ("trainer.train_round", "learning (train + aggregate + evaluate)"),
    ("trainer._train", "  local training (forward/backward/optimizer)"),
    ("trainer._result", "  evaluation (cached test tensor)"),
    ("simulator.run_round", "simulator (timing plane)"),
    ("env._observation", "observation"),
)


def _env(overrides: dict[str, Any], trainer: str) -> tuple[WirelessFLEnv, np.ndarray]:
    env = WirelessFLEnv("tiny", trainer=trainer, overrides=overrides)
    rng = np.random.default_rng(0)
    width = len(env.config.action.controls) * env.num_devices
    actions = rng.uniform(-1, 1, size=(1000, width)).astype(np.float32)
    env.reset(seed=0)
    env.step(actions[0])  # warm-up: lazy imports, first allocations
    env.reset(seed=0)
    return env, actions


def _run(env: WirelessFLEnv, actions: np.ndarray, steps: int, before_step: Callable[[], None]) -> float:
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
        if terminated or truncated:
            env.reset()
            before_step()
    return time.perf_counter() - start


def steps_per_second(overrides: dict[str, Any], steps: int, trainer: str) -> float:
    torch.set_num_threads(1)
    env, actions = _env(overrides, trainer)
    return steps / _run(env, actions, steps, lambda: None)


def phase_breakdown(steps: int = 20) -> tuple[float, dict[str, float]]:
    """Mean ms per real-training step (tiny, one thread) and per phase of :data:`PHASES`."""
    torch.set_num_threads(1)
    env, actions = _env({"episode.max_rounds": 50}, "torch")
    spent: dict[str, float] = dict.fromkeys((label for _, label in PHASES), 0.0)

    def timed(function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        return wrapper

    def instrument() -> None:  # the simulator is rebuilt at each reset
        owners = {"trainer": env.trainer, "simulator": env.simulator, "env": env}
        for path, label in PHASES:
            owner_name, attribute = path.split(".")
            owner = owners[owner_name]
            original = getattr(type(owner), attribute).__get__(owner)
            setattr(owner, attribute, timed(original, label))

    instrument()
    total = _run(env, actions, steps, instrument)
    return 1e3 * total / steps, {label: 1e3 * seconds / steps for label, seconds in spent.items()}


SECTION = "Env steps"


def collect(steps: int = 3000, real_steps: int = 30, repeats: int = 3, quick: bool = False) -> Collected:
    """Steps per second of the surrogate env at N = 20 and 50 and of real training (tiny)."""
    if quick:
        steps, real_steps, repeats = 50, 2, 1
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("surrogate", "N=20", {"cell.num_devices": 20}, steps),
        ("surrogate", "N=50", {"cell.num_devices": 50}, steps),
        ("torch", "N=10 (tiny, digits, real training)", {}, real_steps),
    ]
    figures = []
    for trainer, label, overrides, count in cases:
        rates = [
            steps_per_second({"episode.max_rounds": 50, **overrides}, count, trainer) for _ in range(repeats)
        ]
        figures.append(figure(SECTION, f"{trainer}, {label}", "steps/s", rates, higher_is_better=True))
    return (
        figures,
        [],
        ["env targets: >= 5,000 steps/s with the surrogate at N = 20, >= 40 with real training (tiny)"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000, help="steps per surrogate case")
    parser.add_argument("--real-steps", type=int, default=30, help="steps with real training")
    parser.add_argument("--phases", action="store_true", help="also time the phases of a real step")
    args = parser.parse_args()
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("surrogate", "N = 20", {"cell.num_devices": 20}, args.steps),
        ("surrogate", "N = 50", {"cell.num_devices": 50}, args.steps),
        ("torch", "N = 10 (tiny, digits)", {}, args.real_steps),
    ]
    print(f"{'trainer':<10} {'case':<24} {'steps':>6} {'steps/s':>10}")
    for trainer, label, overrides, steps in cases:
        rate = steps_per_second({"episode.max_rounds": 50, **overrides}, steps, trainer)
        print(f"{trainer:<10} {label:<24} {steps:>6} {rate:>10.1f}")
    print("targets: >= 5,000 steps/s with the surrogate at N = 20, >= 40 with real training (tiny)")
    if args.phases:
        per_step_ms, phases = phase_breakdown(args.real_steps)
        print(f"\none real-training step (tiny, one thread): {per_step_ms:.1f} ms")
        for label, ms in phases.items():
            print(f"  {label:<46} {ms:8.2f} ms ({100 * ms / per_step_ms:4.1f}%)")


if __name__ == "__main__":
    main()
