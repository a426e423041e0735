"""Env steps per second: the surrogate trainer at N = 20 and N = 50 (target >= 5,000 steps/s at
N = 20), and real training on digits (the ``tiny`` scenario, N = 10; target >= 40 steps/s on one
thread), plus where one real-training step spends its time and its compute floor (``--phases``: the
step's training and evaluation FLOPs at the single-thread fp32 GEMM peak, hence the most steps/s
this machine allows; :class:`bench.compute.ComputeFloor`).

Random canonical actions from a seeded generator; the env resets when an episode ends (resets are
counted in the wall time, not as steps). The surrogate's calibration is the digits Dirichlet(0.5)
one, whose partition cannot give 100 devices 8 samples each, so the large case is N = 50. One
torch/BLAS thread (set ``OMP_NUM_THREADS=1`` too for BLAS).
Figures depend on the machine and its load: compare against main in the same session.

    python -m bench.env_steps [--steps 3000] [--real-steps 30] [--phases]
    python -m bench.env_steps --ab OTHER_CHECKOUT [--pairs 5] [--steps 3000] [--real-steps 30]
    valgrind --tool=callgrind python -m bench.env_steps --loop STEPS [--devices 20]

``--loop`` runs STEPS surrogate steps (resets included, as timed) untimed, for an outside profiler:
callgrind's instruction count of ``--loop K`` minus that of ``--loop 0`` is the work of K steps,
the same on a loaded machine as on an idle one (wall and CPU time are not, on a shared core).

``--ab`` measures this checkout against another one (e.g. a ``git worktree`` of main) in pairs of
whole processes, alternating which goes first (A B, B A, ...), each timed by itself over the same
seeded actions with one thread; a pair's ratio is this checkout's steps/s over the other's, so a
load spike on a shared machine hits both sides of most pairs. Each pair is also given per CPU
second of the child (``time.process_time``): time spent waiting for a core is left out, so on a
loaded machine that ratio is the steadier one. Only the env's public API is used in the child
processes, so any checkout with ``fedsimenv.env.WirelessFLEnv`` can be the other side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.compute import ComputeFloor, gemm_peak_gflops, training_flops
from bench.report import Collected, figure
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.cohort import LocalJob
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.trainer import TorchTrainer

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


#: The real-training env's target (issue 20), steps/s on one thread.
REAL_TARGET_STEPS_PER_S = 40.0


@dataclass
class StepWork:
    """What the timed real-training steps computed: per local training its sample passes (epochs
    included) and masks, and how many test samples the evaluations ran."""

    jobs: list[tuple[int, Mapping[str, torch.Tensor]]] = field(default_factory=list)
    test_samples: int = 0


def _torch_trainer(env: WirelessFLEnv) -> TorchTrainer:
    if not isinstance(env.trainer, TorchTrainer):
        raise TypeError(f"the phases need the torch trainer, got {type(env.trainer).__name__}")
    return env.trainer


def phase_breakdown(steps: int = 20) -> tuple[float, dict[str, float], StepWork, WirelessFLEnv]:
    """Mean ms per real-training step (tiny, one thread) and per phase of :data:`PHASES`, the work
    those steps did (recorded, FLOPs counted afterwards so the count costs no step time) and the env."""
    torch.set_num_threads(1)
    env, actions = _env({"episode.max_rounds": 50}, "torch")
    spent: dict[str, float] = dict.fromkeys((label for _, label in PHASES), 0.0)
    work = StepWork()

    def timed(function: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        return wrapper

    def recorded(train: Callable[..., Any], result: Callable[..., Any]) -> tuple[Callable[..., Any], ...]:
        def train_wrapper(model: torch.nn.Module, jobs: list[LocalJob]) -> Any:
            work.jobs.extend((sum(len(order) for order in job.orders), job.masks) for job in jobs)
            return train(model, jobs)

        def result_wrapper(*args: Any, **kwargs: Any) -> Any:
            work.test_samples += len(trainer._test_y)
            return result(*args, **kwargs)

        return train_wrapper, result_wrapper

    def instrument() -> None:  # the simulator is rebuilt at each reset
        owners = {"trainer": env.trainer, "simulator": env.simulator, "env": env}
        for path, label in PHASES:
            owner_name, attribute = path.split(".")
            owner = owners[owner_name]
            original = getattr(type(owner), attribute).__get__(owner)
            setattr(owner, attribute, timed(original, label))
        # Recorded inside the timed wrappers; instance attributes over the methods, like them.
        train_wrapper, result_wrapper = recorded(trainer._train, trainer._result)
        setattr(trainer, "_train", train_wrapper)  # noqa: B010
        setattr(trainer, "_result", result_wrapper)  # noqa: B010

    trainer = _torch_trainer(env)
    instrument()
    total = _run(env, actions, steps, instrument)
    return 1e3 * total / steps, {label: 1e3 * seconds / steps for label, seconds in spent.items()}, work, env


def print_floor(
    per_step_ms: float,
    phases: dict[str, float],
    work: StepWork,
    env: WirelessFLEnv,
    steps: int,
    peak_gflops: float | None = None,
) -> float:
    """Print the compute floor of one real-training step and the steps/s it allows (vs the target);
    returns that bound. ``peak_gflops``: measured here (one thread) unless given."""
    trainer = _torch_trainer(env)
    model, shape = trainer.model, trainer.input_shape
    peak = gemm_peak_gflops() if peak_gflops is None else peak_gflops
    dense = sum(training_flops(model, shape, samples) for samples, _ in work.jobs) / steps
    kept = sum(training_flops(model, shape, samples, masks) for samples, masks in work.jobs) / steps
    evaluation = forward_flops_per_sample(model, shape) * work.test_samples / steps
    train_floor, eval_floor = ComputeFloor(dense, peak), ComputeFloor(evaluation, peak)
    step_floor = ComputeFloor(dense + evaluation, peak)
    train_ms = phases["  local training (forward/backward/optimizer)"]
    eval_ms = phases["  evaluation (cached test tensor)"]
    rest_ms = per_step_ms - train_ms - eval_ms
    samples = sum(s for s, _ in work.jobs) / steps
    print(f"\ncompute floor (fp32 GEMM peak on one thread, best of 5: {peak:.1f} GFLOP/s):")
    print(
        f"  local training {dense / 1e9:.3f} GFLOP/step ({samples:.0f} sample passes, dense as run; "
        f"{kept / 1e9:.3f} counting only kept weights) -> {train_floor.seconds * 1e3:.1f} ms at peak; "
        f"measured {train_ms:.1f} ms = {train_floor.seconds * 1e3 / train_ms:.0%} of peak"
    )
    print(
        f"  evaluation {evaluation / 1e9:.3f} GFLOP/step -> {eval_floor.seconds * 1e3:.2f} ms at peak; "
        f"measured {eval_ms:.2f} ms"
    )
    best = 1.0 / step_floor.seconds
    with_rest = 1e3 / (step_floor.seconds * 1e3 + rest_ms)
    print(
        f"  step floor {step_floor.seconds * 1e3:.1f} ms -> at most {best:.1f} steps/s from compute "
        f"alone; {with_rest:.1f} steps/s with the rest as measured ({rest_ms:.1f} ms: plan, simulator, "
        f"aggregation, observation, env)"
    )
    print("  " + step_floor.verdict("real-training env, N = 10", best, REAL_TARGET_STEPS_PER_S))
    return best


#: What one A/B child process runs (this checkout's or the other's code, by ``PYTHONPATH``):
#: steps/s of ``{steps}`` seeded random actions after a warm-up step, one thread, resets included.
CHILD = """
import time, numpy as np, torch
torch.set_num_threads(1)
from fedsimenv.env import WirelessFLEnv
env = WirelessFLEnv("tiny", trainer={trainer!r}, overrides={overrides!r})
width = len(env.config.action.controls) * env.num_devices
actions = np.random.default_rng(0).uniform(-1, 1, size=(1000, width)).astype(np.float32)
env.reset(seed=0); env.step(actions[0]); env.reset(seed=0)
start, cpu = time.perf_counter(), time.process_time()
for i in range({steps}):
    _, _, terminated, truncated, _ = env.step(actions[i % 1000])
    if terminated or truncated:
        env.reset()
print({steps} / (time.perf_counter() - start), {steps} / (time.process_time() - cpu))
"""


def child_rate(checkout: str, trainer: str, overrides: dict[str, Any], steps: int) -> tuple[float, float]:
    """Steps per wall second and per CPU second of one child process running ``checkout``'s code.

    The CPU-time rate leaves out the time the process waited for a core, which on a loaded machine
    is most of the noise of the wall-time one (it still feels shared caches)."""
    code = CHILD.format(trainer=trainer, overrides=overrides, steps=steps)
    env = dict(os.environ, PYTHONPATH=checkout, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=checkout, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the run in {checkout} failed: {done.stderr.strip().splitlines()[-1:]}")
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def ab_pairs(
    other: str, trainer: str, overrides: dict[str, Any], steps: int, pairs: int
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """``pairs`` of ((wall, CPU) steps/s of this checkout, the same of the other), alternating which
    process runs first."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = []
    for i in range(pairs):
        order = [here, other] if i % 2 == 0 else [other, here]
        rates = {checkout: child_rate(checkout, trainer, overrides, steps) for checkout in order}
        result.append((rates[here], rates[other]))
    return result


def run_ab(other: str, cases: list[tuple[str, str, dict[str, Any], int]], pairs: int) -> None:
    """Print each case's pairs, their ratios and min / median / max, and the load average."""
    print(
        f"A/B against {other}: this checkout / other, {pairs} pairs per case (steps per wall second; "
        "in brackets per CPU second of the process)"
    )
    for trainer, label, overrides, steps in cases:
        rows = ab_pairs(other, trainer, {"episode.max_rounds": 50, **overrides}, steps, pairs)
        ratios = [a[0] / b[0] for a, b in rows]
        cpu_ratios = [a[1] / b[1] for a, b in rows]
        for i, (a, b) in enumerate(rows, 1):
            print(
                f"  {trainer:<10} {label:<24} pair {i}: {a[0]:9.1f} vs {b[0]:9.1f}  ratio "
                f"{a[0] / b[0]:5.2f}  (CPU: {a[1]:9.1f} vs {b[1]:9.1f}  ratio {a[1] / b[1]:5.2f})"
            )
        print(
            f"  {trainer:<10} {label:<24} ratio min {min(ratios):.2f} median "
            f"{statistics.median(ratios):.2f} max {max(ratios):.2f} (CPU: min {min(cpu_ratios):.2f} median "
            f"{statistics.median(cpu_ratios):.2f} max {max(cpu_ratios):.2f}); load {os.getloadavg()[0]:.1f}"
        )


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
    parser.add_argument("--ab", metavar="CHECKOUT", help="measure against another checkout, in pairs")
    parser.add_argument("--pairs", type=int, default=5, help="process pairs per case with --ab")
    parser.add_argument("--loop", type=int, metavar="STEPS", help="only run STEPS untimed surrogate steps")
    parser.add_argument("--devices", type=int, default=20, help="devices N with --loop")
    args = parser.parse_args()
    if args.loop is not None:
        env, actions = _env({"episode.max_rounds": 50, "cell.num_devices": args.devices}, "surrogate")
        _run(env, actions, args.loop, lambda: None)
        return
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("surrogate", "N = 20", {"cell.num_devices": 20}, args.steps),
        ("surrogate", "N = 50", {"cell.num_devices": 50}, args.steps),
        ("torch", "N = 10 (tiny, digits)", {}, args.real_steps),
    ]
    if args.ab:
        run_ab(os.path.abspath(args.ab), [case for case in cases if case[3] > 0], args.pairs)
        return
    print(f"{'trainer':<10} {'case':<24} {'steps':>6} {'steps/s':>10}")
    for trainer, label, overrides, steps in cases:
        rate = steps_per_second({"episode.max_rounds": 50, **overrides}, steps, trainer)
        print(f"{trainer:<10} {label:<24} {steps:>6} {rate:>10.1f}")
    print("targets: >= 5,000 steps/s with the surrogate at N = 20, >= 40 with real training (tiny)")
    if args.phases:
        per_step_ms, phases, work, env = phase_breakdown(args.real_steps)
        print(f"\none real-training step (tiny, one thread): {per_step_ms:.1f} ms")
        for label, ms in phases.items():
            print(f"  {label:<46} {ms:8.2f} ms ({100 * ms / per_step_ms:4.1f}%)")
        print_floor(per_step_ms, phases, work, env, args.real_steps)


if __name__ == "__main__":
    main()
