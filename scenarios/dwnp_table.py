"""Reproduce the format of DWNP's Table 1 (Gao et al., "Device-Wise Federated Network Pruning") inside
the co-simulation: Filter Pruning, FedOSP, FedILP and DWNP at a device FLOPs budget, 10 devices,
Dirichlet(0.5), mean over seeds.

Columns: Base Acc (the unpruned FedAvg model trained for the same number of rounds with the same
seed: one base per seed, as the paper's one base per architecture), delta-Acc, Acc (mean over
devices of each device's deployed sub-network on its own test split: the paper's device-wise
evaluation; for the single-model methods the one pruned model), FLOPs reduction of the
device-side (D, mean over devices) and the server-side (S) sub-networks.

Configurations:

* ``cpu`` (default): digits, small CNN with LayerNorm, 10 devices, rounds given by ``--rounds`` (half
  training, half fine-tuning); the HN steps per round are raised (``r_HN = 1``, Adam lr 3e-3), since
  a CPU-sized run has ~100x fewer weight iterations than the paper's 200 epochs.
* ``cifar100``: CIFAR-100, ResNet-18 with LayerNorm, paper hyperparameters (lr 0.1, momentum 0.9,
  r_W per round, r_theta = 2, r_HN = 10, Adam 1e-3); needs the CIFAR-100 files in ``--data-dir``
  and a GPU to finish in reasonable time.

How the hypernetwork methods' deployed sub-networks are read out of the HN (``--deploy``, see
``agents/literature/dwnp/deploy.py``): ``projection`` (default; ours) keeps the highest-logit
channels up to the FLOPs budget, so FedOSP, FedILP and DWNP are compared at their budgets as the
paper's tables are; ``threshold`` keeps the channels with logit > 0 (the paper read literally;
with the one-sided regulariser of Eq. 6 they can end far below their budgets).

Layouts of the paper's other tables: ``--device-budget`` / ``--server-budget`` (p_d, p_s: Table 3's
budgets), ``--devices`` (N: Table 4) and ``--alpha`` (the Dirichlet label skew). "Acc (physically
pruned)" is the same sub-networks with their channels physically removed
(``agents/literature/physical.py``): with LayerNorm it differs from the soft-masked "Acc", where a
pruned channel still enters the norm's statistics as zeros.

Usage: ``python -m scenarios.dwnp_table [--config cpu|cifar100] [--seeds 0 1 2] [--rounds 16]
[--deploy projection|threshold] [--device-budget 0.5] [--server-budget 0.8] [--devices 10]
[--alpha 0.5]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents import AgentContext, configure_for_agent, make_agent
from agents.literature.common import ScheduledStrategy, StrategyAgent, masked_accuracy
from agents.literature.dwnp.strategy import DWNPStrategy
from agents.literature.physical import physically_pruned
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams

METHODS = ("filter-pruning", "fedosp", "fedilp", "dwnp")


def scenario_overrides(
    config: str, rounds: int, data_dir: str | None, num_devices: int = 10, alpha: float = 0.5
) -> dict[str, Any]:
    common: dict[str, Any] = {
        "cell.num_devices": num_devices,
        "episode.max_rounds": rounds,
        "learning.partition.method": "dirichlet",
        "learning.partition.alpha": alpha,
        "learning.partition.per_device_test": True,
        "learning.norm": "layer",
    }
    if config == "cpu":
        return {**common, "learning.dataset": "digits", "learning.model": "small-cnn"}
    if config == "cifar100":
        return {
            **common,
            "learning.dataset": "cifar100",
            "learning.data_dir": data_dir,
            "learning.model": "resnet18",
            "learning.device": "cuda",
            "learning.learning_rate": 0.1,
            "learning.momentum": 0.9,
            "learning.batch_size": 64,
            "learning.local_epochs": 1,
        }
    raise ValueError(f"unknown config {config!r}; allowed values: cpu, cifar100")


def run_method(
    method: str,
    seed: int,
    overrides: dict[str, Any],
    device_budget: float,
    cpu_sized: bool,
    deploy: str = "projection",
    server_budget: float | None = None,
) -> dict[str, float]:
    """One episode of ``method``; the table's numbers for it."""
    config = configure_for_agent(load_scenario("tiny", overrides), method)
    env = WirelessFLEnv(config)
    assert isinstance(env.action_space, spaces.Box)
    context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)
    agent = make_agent(method, context, EpisodeStreams(np.random.SeedSequence(seed)).int_seed("agent"))
    assert isinstance(agent, StrategyAgent)
    agent.bind(env)
    strategy = agent.strategy
    if isinstance(strategy, DWNPStrategy):
        changes: dict[str, Any] = {"device_budget": device_budget, "deploy": deploy}
        if server_budget is not None:
            changes["server_budget"] = server_budget
        if cpu_sized:
            changes |= {"r_hn": 1, "hn_learning_rate": 3e-3}
        strategy.settings = dataclasses.replace(strategy.settings, **changes)
    else:
        strategy.keep_flops = device_budget  # type: ignore[attr-defined]
    observation, info = env.reset(seed=seed)
    agent.reset(info)
    done = False
    while not done:
        observation, _, terminated, truncated, info = env.step(agent.act(observation, info))
        done = terminated or truncated
    trainer = env.trainer
    assert isinstance(trainer, TorchTrainer)
    return summarise(trainer, strategy)


def summarise(trainer: TorchTrainer, strategy: ScheduledStrategy) -> dict[str, float]:
    total = forward_flops_per_sample(trainer.model, trainer.input_shape)
    devices = range(trainer.num_devices)
    accuracy, physical, device_flops = [], [], []
    example = trainer.client_data(0)[0][:1]
    for n in devices:
        masks = strategy.device_masks(trainer, n) or {}
        accuracy.append(masked_accuracy(trainer, masks, n))
        physical.append(_accuracy(trainer, physically_pruned(trainer.model, masks, example), n))
        device_flops.append(forward_flops_per_sample(trainer.model, trainer.input_shape, masks) / total)
    server = forward_flops_per_sample(trainer.model, trainer.input_shape, strategy.server_masks or {}) / total
    base = float(np.mean(strategy.base_device_accuracy)) if strategy.base_device_accuracy else math.nan
    return {
        "base": base,
        "acc": float(np.mean(accuracy)),
        "acc_physical": float(np.mean(physical)),
        "flops_d": 1.0 - float(np.mean(device_flops)),
        "flops_s": 1.0 - server,
    }


@torch.no_grad()
def _accuracy(trainer: TorchTrainer, model: torch.nn.Module, device: int) -> float:
    """``model``'s accuracy on device ``device``'s test split (the global test set without splits)."""
    model.eval()
    x, y = trainer._test_x, trainer._test_y
    if trainer.device_tests:
        index = torch.from_numpy(trainer.device_tests[device]).to(x.device)
        x, y = x[index], y[index]
    return float((model(x).argmax(dim=1) == y).float().mean())


def run_base(seed: int, overrides: dict[str, Any]) -> float:
    """Mean per-device test accuracy of unpruned FedAvg (every device, every round) after the run."""
    env = WirelessFLEnv(load_scenario("tiny", overrides))
    n = env.num_devices
    action = np.concatenate([np.ones(n), -np.ones(n), np.ones(n)]).astype(np.float32)
    env.reset(seed=seed)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    trainer = env.trainer
    assert isinstance(trainer, TorchTrainer)
    return float(np.mean([trainer.evaluate_device(k) for k in range(n)]))


def table(results: dict[str, list[dict[str, float]]], base_acc: Sequence[float]) -> str:
    """DWNP's Table 1 format (delta-Acc per seed against that seed's base, then averaged)."""
    base = np.asarray(base_acc)
    lines = [
        "| Method | Base Acc | delta-Acc | Acc | Acc (physically pruned) | FLOPs red. (D) | FLOPs red. (S) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, rows in results.items():
        acc = np.array([r["acc"] for r in rows])
        delta = acc - base
        lines.append(
            f"| {method} | {100 * base.mean():.2f}% | {100 * delta.mean():+.2f}% "
            f"(sd {100 * delta.std():.2f}) | {100 * acc.mean():.2f}% | "
            f"{100 * np.mean([r['acc_physical'] for r in rows]):.2f}% | "
            f"{100 * np.mean([r['flops_d'] for r in rows]):.0f}% | "
            f"{100 * np.mean([r['flops_s'] for r in rows]):.0f}% |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="cpu", choices=["cpu", "cifar100"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=16, help="rounds per run (half train, half fine-tune)")
    parser.add_argument("--device-budget", type=float, default=0.5, help="p_d: kept FLOPs of device models")
    parser.add_argument(
        "--server-budget", type=float, default=None, help="p_s: kept FLOPs of DWNP's server model (0.8)"
    )
    parser.add_argument("--devices", type=int, default=10, help="N, devices in the cell")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet alpha of the label split")
    parser.add_argument("--data-dir", default=None, help="CIFAR-100 directory (config cifar100)")
    parser.add_argument(
        "--deploy",
        default="projection",
        choices=["projection", "threshold"],
        help="how FedOSP/FedILP/DWNP read their deployed sub-networks out of the hypernetwork",
    )
    args = parser.parse_args(argv)
    for name, value in (("--device-budget", args.device_budget), ("--server-budget", args.server_budget)):
        if value is not None and not 0.0 < value <= 1.0:
            parser.error(f"{name} must be in (0, 1], got {value}")
    if args.devices < 1 or args.alpha <= 0:
        parser.error("--devices must be >= 1 and --alpha > 0")
    overrides = scenario_overrides(args.config, args.rounds, args.data_dir, args.devices, args.alpha)
    results: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    base: list[float] = []
    for seed in args.seeds:
        base.append(run_base(seed, overrides))
        print(f"seed {seed} base (unpruned FedAvg): {base[-1]:.4f}", flush=True)
        for method in METHODS:
            row = run_method(
                method,
                seed,
                overrides,
                args.device_budget,
                args.config == "cpu",
                args.deploy,
                args.server_budget,
            )
            results[method].append(row)
            print(f"seed {seed} {method}: {row}", flush=True)
    print(table(results, base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
