"""Where the wall time of one env step goes: timing plane (SimPy) vs learning plane (torch).

Runs the ``tiny`` scenario with the ``equal`` agent and times each phase of a step separately.
Figures are medians over rounds; ratios are computed within this run (the machine is shared and
noisy). The simulator alone at large N is in ``bench/simulator.py``.

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

from fedsimenv.env import WirelessFLEnv

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    tiny_breakdown(args.rounds)


if __name__ == "__main__":
    main()
