"""Where one surrogate env step goes: each part timed in-process on its own (best of 7 x K calls).

The parts are called with the arguments of one real step (the same decision, plan, workload and
report over and over), so each figure is that part's cost with warm caches; a whole step without
resets (``episode.max_rounds`` large) and one reset are timed too. On a shared machine the figures
move with the load: compare parts within one run, not across runs.

    python -m bench.env_parts [--devices 20]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fedsimenv.actions import decode_action
from fedsimenv.env import WirelessFLEnv
from fedsimenv.env_round import round_workload


def best_us(function: Callable[[], Any], calls: int) -> float:
    """Best of 7 repeats of ``calls`` calls, microseconds per call."""
    return min(timeit.repeat(function, number=calls, repeat=7)) / calls * 1e6


def parts(num_devices: int) -> dict[str, float]:
    """Microseconds per call of each part of a surrogate step at ``num_devices`` devices."""
    torch.set_num_threads(1)
    overrides = {"episode.max_rounds": 10**6, "cell.num_devices": num_devices}
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides=overrides)
    width = len(env.config.action.controls) * num_devices
    action = np.random.default_rng(0).uniform(-1, 1, size=width).astype(np.float32)
    env.reset(seed=0)
    cfg, sim, trainer = env.config, env.simulator, env.trainer
    fleet = sim.fleet

    def decode() -> Any:
        return decode_action(
            action,
            num_devices,
            cfg.action,
            cfg.network.bandwidth_hz,
            tx_power_max_w=fleet.tx_power_w,
            cpu_freq_max_hz=fleet.cpu_freq_hz,
            num_resource_blocks=sim.uplink.num_blocks,
        )

    decision = decode()
    idx = decision.selected.nonzero()[0]
    rates = dict(zip(idx.tolist(), decision.pruning_rate[idx].tolist(), strict=True))
    plan = trainer.plan_round(rates)
    epochs = cfg.learning.local_epochs
    workload = round_workload(plan, trainer, num_devices, epochs)
    report = sim.run_round(decision, workload, validated=True)
    arrived = report.arrived.nonzero()[0].tolist()
    history = env._history
    result = {
        "step (no reset)": best_us(lambda: env.step(action), 1000),
        "decode action": best_us(decode, 2000),
        "plan (trainer)": best_us(lambda: trainer.plan_round(rates), 2000),
        "workload": best_us(lambda: round_workload(plan, trainer, num_devices, epochs), 2000),
        "round (simulator)": best_us(lambda: sim.run_round(decision, workload, validated=True), 2000),
        "train (trainer)": best_us(lambda: trainer.train_round(plan, arrived), 2000),
        "history": best_us(
            lambda: history.update(decision.selected, report.compute_time_s, report.upload_time_s, 50), 2000
        ),
        "observation": best_us(env._observation, 2000),
        "round energy": best_us(lambda: report.energy_j, 2000),
    }
    episodes = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": num_devices})
    episodes.reset(seed=0)
    result["reset"] = best_us(episodes.reset, 50)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=20, help="devices N")
    args = parser.parse_args()
    for name, us in parts(args.devices).items():
        print(f"{name:<20} {us:9.1f} us")


if __name__ == "__main__":
    main()
