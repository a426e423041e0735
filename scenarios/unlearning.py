"""Federated unlearning via class-discriminative pruning (WWW 2022) inside the co-simulation.

Runs the ``unlearning`` agent (``agents/literature/unlearning.py``): FedAvg for the first half of the
rounds, then the server collects the devices' class x channel activation tables, prunes the channels
with the highest TF-IDF relevance to the forget class and the devices fine-tune the pruned model on
their remaining data for the second half. Reports the forget-class and retained-class accuracy
(global test set) before unlearning, right after the pruning and after the fine-tuning, and what the
unlearning cost in the simulator: the activation pass (broadcast, one forward pass over the local
data, upload of the table; from the system view) plus the simulated fine-tuning rounds, beside the
cost of the training phase (what retraining from scratch for as many rounds would cost).

Usage: ``python -m scenarios.unlearning [--scenario tiny] [--rounds 12] [--forget-class 0]
[--prune-ratio 0.1] [--seed 0]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from agents import AgentContext, configure_for_agent, make_agent
from agents.literature.unlearning import UnlearningAgent, UnlearningStrategy, activation_pass_cost
from fedsimenv.env import WirelessFLEnv
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams


def run(scenario: str, rounds: int, forget_class: int, prune_ratio: float, seed: int) -> dict[str, Any]:
    """One episode; the report's numbers."""
    if rounds < 2:
        raise ValueError(f"--rounds must be at least 2 (training, then fine-tuning), got {rounds}")
    config = configure_for_agent(load_scenario(scenario, {"episode.max_rounds": rounds}), "unlearning")
    env = WirelessFLEnv(config)
    assert isinstance(env.action_space, spaces.Box)
    context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)
    agent = make_agent("unlearning", context, EpisodeStreams(np.random.SeedSequence(seed)).int_seed("agent"))
    assert isinstance(agent, UnlearningAgent)
    agent.bind(env)
    strategy = agent.strategy
    assert isinstance(strategy, UnlearningStrategy)
    strategy.forget_class = forget_class
    strategy.prune_ratio = prune_ratio
    observation, info = env.reset(seed=seed)
    agent.reset(info)
    phase_time = {"train": 0.0, "finetune": 0.0}
    phase_energy = {"train": 0.0, "finetune": 0.0}
    activation = (0.0, 0.0)
    done = False
    while not done:
        phase = "finetune" if strategy.pruned else "train"
        observation, _, terminated, truncated, info = env.step(agent.act(observation, info))
        phase_time[phase] += float(info["round_latency_s"])
        phase_energy[phase] += float(info["round_energy_j"])
        if phase == "train" and strategy.pruned:
            # The activation pass happens between this round and the next, on the next round's view.
            bits = strategy.table_values * env.config.learning.bits_per_param
            activation = activation_pass_cost(env.system_view(), env.config.learning.local_epochs, bits)
        done = terminated or truncated
    final = strategy.class_accuracy(env.trainer)  # type: ignore[arg-type]
    return {
        "before": strategy.base_class_accuracy,
        "pruned": strategy.pruned_accuracy,
        "after": final,
        "train_rounds": strategy.train_rounds,
        "finetune_rounds": rounds - strategy.train_rounds,
        "activation_time_s": activation[0],
        "activation_energy_j": activation[1],
        "finetune_time_s": phase_time["finetune"],
        "finetune_energy_j": phase_energy["finetune"],
        "train_time_s": phase_time["train"],
        "train_energy_j": phase_energy["train"],
    }


def report(result: dict[str, Any], forget_class: int) -> str:
    lines = [
        f"| stage | forget-class ({forget_class}) acc | retained-class acc |",
        "|---|---|---|",
    ]
    for label, key in (
        ("before unlearning", "before"),
        ("after pruning", "pruned"),
        ("after fine-tuning", "after"),
    ):
        forget, retained = result[key]
        lines.append(f"| {label} | {100 * forget:.2f}% | {100 * retained:.2f}% |")
    cost_s = result["activation_time_s"] + result["finetune_time_s"]
    cost_j = result["activation_energy_j"] + result["finetune_energy_j"]
    lines += [
        "",
        f"unlearning cost: activation pass {result['activation_time_s']:.4f} s / "
        f"{result['activation_energy_j']:.4f} J + fine-tuning ({result['finetune_rounds']} rounds) "
        f"{result['finetune_time_s']:.4f} s / {result['finetune_energy_j']:.4f} J = {cost_s:.4f} s / "
        f"{cost_j:.4f} J",
        f"training phase ({result['train_rounds']} rounds, the cost of retraining as long): "
        f"{result['train_time_s']:.4f} s / {result['train_energy_j']:.4f} J",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="tiny", help="built-in scenario name or YAML path")
    parser.add_argument("--rounds", type=int, default=12, help="rounds (half training, half fine-tuning)")
    parser.add_argument("--forget-class", type=int, default=0)
    parser.add_argument("--prune-ratio", type=float, default=0.1, help="share of each conv layer pruned")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = run(args.scenario, args.rounds, args.forget_class, args.prune_ratio, args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(report(result, args.forget_class))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
