"""Reproduce the format of DWNP's Table 1 (Gao et al., "Device-Wise Federated Network Pruning") inside
the co-simulation: Filter Pruning, FedOSP, FedILP and DWNP at a device FLOPs budget, 10 devices,
Dirichlet(0.5), mean over seeds.

Columns: Base Acc (the unpruned FedAvg model, same seed, trained for the paper's base protocol: as
many rounds as the methods' training phase, i.e. half of ``--rounds``, as the paper's base is
trained 200 epochs and the methods 200 + 200 fine-tuning; one base per seed, as the paper's one base
per architecture), delta-Acc, Acc (mean over devices of each device's deployed sub-network on its
own test split: the paper's device-wise evaluation; for the single-model methods the one pruned
model), the same two for top-5 (Table 2's columns; tasks with over 5 classes), FLOPs reduction of
the device-side (D, mean over devices) and the server-side (S) sub-networks.

Alg. 1 for every method and for the base (Sec. 4.1: "for all methods ... r_W = 5"): W averaged every
``--r-w`` local iterations inside each round (one round = one local epoch in the GPU configurations:
Alg. 1 is one epoch), DWNP's and FedILP's HN steps every r_HN iterations inside the round, their
traffic timed by the simulator (``fedsimenv.learning.local_sgd``, ``agents/literature/dwnp/interleave.py``).
Training recipe (``--augment``, ``--lr-schedule``, ``--weight-decay``; the paper gives SGD, momentum
0.9 and a start rate 0.1, the rest is in its unavailable supplement): the schedule runs over the
training phase and restarts for fine-tuning (the base: over its rounds).

Configurations:

* ``cpu`` (default): digits, small CNN with LayerNorm, 10 devices, rounds given by ``--rounds`` (half
  training, half fine-tuning; 2 local epochs a round); the HN steps are raised (``r_HN = 1``, Adam
  lr 3e-3), since a CPU-sized run has ~100x fewer weight iterations than the paper's 200 epochs.
  Recipe defaults: no augmentation (a flip changes a digit), constant rate.
* ``cifar100`` / ``tinyimagenet``: CIFAR-100 (``cifar-100-python`` files) or TinyImageNet
  (``tiny-imagenet-200``, see ``fedsimenv.learning.datasets.load_tiny_imagenet``) in
  ``--data-dir``, ResNet-18 with LayerNorm, paper hyperparameters (lr 0.1, momentum 0.9, batch 64,
  one local epoch a round, r_W = 5, r_theta = 2, r_HN = 10, Adam 1e-3) and, unless given, the
  recipe crop-flip / cosine / weight decay 5e-4; 400 rounds = the paper's 200 + 200 epochs. Needs
  a GPU to finish in reasonable time: ``python scenarios/dwnp_table.py --config cifar100 --data-dir
  PATH/cifar-100-python --rounds 400 --seeds 0``.

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

Usage: ``python -m scenarios.dwnp_table [--config cpu|cifar100|tinyimagenet] [--seeds 0 1 2]
[--rounds 16] [--deploy projection|threshold] [--device-budget 0.5] [--server-budget 0.8]
[--devices 10] [--alpha 0.5] [--r-w 5] [--augment none|crop-flip] [--lr-schedule
constant|cosine|step] [--weight-decay 0]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents import AgentContext, configure_for_agent, make_agent
from agents.literature.common import ScheduledStrategy, StrategyAgent, masked_accuracy, schedule_rounds
from agents.literature.dwnp.strategy import DWNPStrategy
from agents.literature.physical import physically_pruned
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.local_sgd import PeriodicAveraging, PeriodicFedAvg
from fedsimenv.learning.pruning import apply_masks
from fedsimenv.learning.recipe import AUGMENTATIONS, LR_SCHEDULES, TrainingRecipe
from fedsimenv.learning.topk import topk_accuracy
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams

METHODS = ("filter-pruning", "fedosp", "fedilp", "dwnp")
#: Share of the rounds before the final pruning (the paper: 200 training + 200 fine-tuning epochs).
TRAIN_FRACTION = 0.5
#: Recipe of the GPU configurations unless the options say otherwise (ours: the paper's supplement,
#: which has its recipe, is not available).
GPU_RECIPE = TrainingRecipe(augmentation="crop-flip", lr_schedule="cosine", weight_decay=5e-4)


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
    if config in ("cifar100", "tinyimagenet"):
        return {
            **common,
            "learning.dataset": config,
            "learning.data_dir": data_dir,
            "learning.model": "resnet18",
            "learning.device": "cuda",
            "learning.learning_rate": 0.1,
            "learning.momentum": 0.9,
            "learning.batch_size": 64,
            "learning.local_epochs": 1,
        }
    raise ValueError(f"unknown config {config!r}; allowed values: cpu, cifar100, tinyimagenet")


def run_method(
    method: str,
    seed: int,
    overrides: dict[str, Any],
    device_budget: float,
    cpu_sized: bool,
    deploy: str = "projection",
    server_budget: float | None = None,
    periodic: PeriodicAveraging | None = None,
) -> dict[str, float]:
    """One episode of ``method``; the table's numbers for it. ``periodic``: Alg. 1's intra-round W
    averaging and recipe for the method (its phases set here); ``None``: once per round."""
    config = configure_for_agent(load_scenario("tiny", overrides), method)
    env = WirelessFLEnv(config)
    assert isinstance(env.action_space, spaces.Box)
    context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)
    agent = make_agent(method, context, EpisodeStreams(np.random.SeedSequence(seed)).int_seed("agent"))
    assert isinstance(agent, StrategyAgent)
    agent.bind(env)
    strategy = agent.strategy
    rounds = int(overrides["episode.max_rounds"])
    strategy.periodic = None
    if periodic is not None:
        strategy.periodic = periodic.with_phases(strategy.train_rounds, rounds - strategy.train_rounds)
    if isinstance(strategy, DWNPStrategy):
        changes: dict[str, Any] = {
            "device_budget": device_budget,
            "deploy": deploy,
            "r_w": None if periodic is None else periodic.r_w,
        }
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
    accuracy, physical, device_flops, top5 = [], [], [], []
    example = trainer.client_data(0)[0][:1]
    for n in devices:
        masks = strategy.device_masks(trainer, n) or {}
        accuracy.append(masked_accuracy(trainer, masks, n))
        top5.append(_top5(trainer, masks, n))
        physical.append(_accuracy(trainer, physically_pruned(trainer.model, masks, example), n))
        device_flops.append(forward_flops_per_sample(trainer.model, trainer.input_shape, masks) / total)
    server = forward_flops_per_sample(trainer.model, trainer.input_shape, strategy.server_masks or {}) / total
    base = float(np.mean(strategy.base_device_accuracy)) if strategy.base_device_accuracy else math.nan
    return {
        "base": base,
        "acc": float(np.mean(accuracy)),
        "top5": float(np.mean(top5)),
        "acc_physical": float(np.mean(physical)),
        "flops_d": 1.0 - float(np.mean(device_flops)),
        "flops_s": 1.0 - server,
    }


def _device_test(trainer: TorchTrainer, device: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = trainer._test_x, trainer._test_y
    if trainer.device_tests:
        index = torch.from_numpy(trainer.device_tests[device]).to(x.device)
        x, y = x[index], y[index]
    return x, y


@torch.no_grad()
def _accuracy(trainer: TorchTrainer, model: torch.nn.Module, device: int) -> float:
    """``model``'s accuracy on device ``device``'s test split (the global test set without splits)."""
    model.eval()
    x, y = _device_test(trainer, device)
    return float((model(x).argmax(dim=1) == y).float().mean())


def _top5(trainer: TorchTrainer, masks: dict[str, torch.Tensor], device: int) -> float:
    """Top-5 accuracy of the global model under ``masks`` on ``device``'s test split (NaN with 5
    classes or fewer)."""
    if trainer.test.num_classes <= 5:
        return math.nan
    model = copy.deepcopy(trainer.model)
    apply_masks(model, masks)
    return topk_accuracy(model, *_device_test(trainer, device), 5)


def base_rounds(rounds: int) -> int:
    """Rounds of the base model: the methods' training phase (the paper: 200 of 200 + 200 epochs)."""
    return schedule_rounds(rounds, TRAIN_FRACTION)


def run_base(
    seed: int, overrides: dict[str, Any], periodic: PeriodicAveraging | None = None
) -> tuple[float, float]:
    """Mean per-device top-1 and top-5 test accuracy of unpruned FedAvg (every device, every round)
    trained for :func:`base_rounds` rounds, with Alg. 1's W averaging and recipe when ``periodic``."""
    rounds = base_rounds(int(overrides["episode.max_rounds"]))
    env = WirelessFLEnv(load_scenario("tiny", {**overrides, "episode.max_rounds": rounds}))
    if periodic is not None:
        assert isinstance(env.trainer, TorchTrainer)
        env.trainer.use_strategy(PeriodicFedAvg(periodic.with_phases(rounds)))
    n = env.num_devices
    action = np.concatenate([np.ones(n), -np.ones(n), np.ones(n)]).astype(np.float32)
    env.reset(seed=seed)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    trainer = env.trainer
    assert isinstance(trainer, TorchTrainer)
    top1 = float(np.mean([trainer.evaluate_device(k) for k in range(n)]))
    return top1, float(np.mean([_top5(trainer, {}, k) for k in range(n)]))


def table(
    results: dict[str, list[dict[str, float]]],
    base_acc: Sequence[float],
    base_top5: Sequence[float] | None = None,
) -> str:
    """DWNP's Table 1 format (delta-Acc per seed against that seed's base, then averaged), with
    Table 2's top-5 columns when ``base_top5`` is given and finite."""
    base = np.asarray(base_acc)
    top5 = base_top5 is not None and bool(np.all(np.isfinite(base_top5)))
    head = "| Method | Base Acc | delta-Acc | Acc | Acc (physically pruned) |"
    rule = "|---|---|---|---|---|"
    if top5:
        head += " Base Top-5 | delta-Top-5 |"
        rule += "---|---|"
    lines = [head + " FLOPs red. (D) | FLOPs red. (S) |", rule + "---|---|"]
    for method, rows in results.items():
        acc = np.array([r["acc"] for r in rows])
        delta = acc - base
        line = (
            f"| {method} | {100 * base.mean():.2f}% | {100 * delta.mean():+.2f}% "
            f"(sd {100 * delta.std():.2f}) | {100 * acc.mean():.2f}% | "
            f"{100 * np.mean([r['acc_physical'] for r in rows]):.2f}% |"
        )
        if top5:
            assert base_top5 is not None
            delta5 = np.array([r["top5"] for r in rows]) - np.asarray(base_top5)
            line += f" {100 * np.mean(base_top5):.2f}% | {100 * delta5.mean():+.2f}% |"
        lines.append(
            line + f" {100 * np.mean([r['flops_d'] for r in rows]):.0f}% | "
            f"{100 * np.mean([r['flops_s'] for r in rows]):.0f}% |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="cpu", choices=["cpu", "cifar100", "tinyimagenet"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=16, help="rounds per run (half train, half fine-tune)")
    parser.add_argument("--device-budget", type=float, default=0.5, help="p_d: kept FLOPs of device models")
    parser.add_argument(
        "--server-budget", type=float, default=None, help="p_s: kept FLOPs of DWNP's server model (0.8)"
    )
    parser.add_argument("--devices", type=int, default=10, help="N, devices in the cell")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet alpha of the label split")
    parser.add_argument("--data-dir", default=None, help="dataset directory (configs cifar100, tinyimagenet)")
    parser.add_argument(
        "--r-w", type=int, default=5, help="average W every this many local iterations (0: once a round)"
    )
    parser.add_argument(
        "--augment", default=None, choices=AUGMENTATIONS, help="cpu: none; GPU configs: crop-flip"
    )
    parser.add_argument(
        "--lr-schedule", default=None, choices=LR_SCHEDULES, help="cpu: constant; GPU configs: cosine"
    )
    parser.add_argument("--weight-decay", type=float, default=None, help="cpu: 0; GPU configs: 5e-4")
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
    if args.r_w < 0 or args.rounds < 2:
        parser.error("--r-w must be >= 0 and --rounds >= 2")
    if args.weight_decay is not None and not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        parser.error(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    default = TrainingRecipe() if args.config == "cpu" else GPU_RECIPE
    recipe = dataclasses.replace(
        default,
        augmentation=args.augment or default.augmentation,
        lr_schedule=args.lr_schedule or default.lr_schedule,
        weight_decay=default.weight_decay if args.weight_decay is None else args.weight_decay,
    )
    periodic = PeriodicAveraging(args.r_w, recipe) if args.r_w > 0 else None
    overrides = scenario_overrides(args.config, args.rounds, args.data_dir, args.devices, args.alpha)
    print(
        f"{args.rounds} rounds a method ({schedule_rounds(args.rounds, TRAIN_FRACTION)} training), base "
        f"{base_rounds(args.rounds)} rounds; r_W = {args.r_w or 'once a round'}; {recipe}",
        flush=True,
    )
    results: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    base: list[float] = []
    base5: list[float] = []
    for seed in args.seeds:
        top1, top5 = run_base(seed, overrides, periodic)
        base.append(top1)
        base5.append(top5)
        print(f"seed {seed} base (unpruned FedAvg): top-1 {top1:.4f}, top-5 {top5:.4f}", flush=True)
        for method in METHODS:
            row = run_method(
                method,
                seed,
                overrides,
                args.device_budget,
                args.config == "cpu",
                args.deploy,
                args.server_budget,
                periodic,
            )
            results[method].append(row)
            print(f"seed {seed} {method}: {row}", flush=True)
    print(table(results, base, base5))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
