"""The federated pruning algorithms of the literature (agents/literature), against hand-computed cases,
brute force and the paper's definitions; every one runs through `fedsimenv run tiny --agent NAME`."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import AGENTS, AgentContext, configure_for_agent, make_agent
from agents.literature.channel_layout import ChannelLayout, gated
from agents.literature.common import StrategyAgent
from agents.literature.dwnp import HyperNetwork, flops_regulariser, gumbel_sigmoid_st
from agents.literature.dwnp.deploy import project_to_flops_budget
from agents.literature.dwnp.strategy import DWNPStrategy
from agents.literature.fedmp import UCB1, fedmp_reward
from agents.literature.heterofl import width_levels_by_capability
from agents.literature.prunefl import greedy_kept_set
from fedsimenv.cli import main
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.models import build_model
from fedsimenv.learning.pruning import apply_masks
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.scenario import load_scenario

LITERATURE = ["fedmp", "prunefl", "dwnp", "filter-pruning", "fedosp", "fedilp", "heterofl"]


# -- FedMP ------------------------------------------------------------------------------------


def test_ucb_selects_the_hand_computed_arm() -> None:
    bandit = UCB1(3, exploration=1.0)
    # Untried arms first, lowest index first.
    assert bandit.select() == 0
    for arm, reward in [(0, 1.0), (1, 0.5), (2, 0.2), (0, 0.0)]:
        bandit.update(arm, reward)
    # t = 4: arm 0 mean 0.5, n 2 -> 0.5 + sqrt(2 ln 4 / 2) = 1.6774; arm 1: 0.5 + sqrt(2 ln 4) = 2.1651;
    # arm 2: 0.2 + sqrt(2 ln 4) = 1.8651.
    expected = [
        0.5 + math.sqrt(math.log(4)),
        0.5 + math.sqrt(2 * math.log(4)),
        0.2 + math.sqrt(2 * math.log(4)),
    ]
    np.testing.assert_allclose(bandit.indices(), expected, rtol=1e-12)
    assert bandit.select() == 1
    # A smaller bonus scale lets the best mean win: 0.5 + 0.1*1.177 = 0.618 vs 0.5 + 0.1*1.665 = 0.667.
    assert bandit.select(scale=0.1) == 1
    bandit.update(1, -1.0)  # arm 1 mean -0.25 now
    assert bandit.select(scale=0.01) == 0


def test_fedmp_reward_guard_at_the_mean_time() -> None:
    assert fedmp_reward(0.3, time_s=2.0, mean_time_s=2.0, epsilon=0.01) == pytest.approx(0.3 / 0.02)
    assert math.isfinite(fedmp_reward(0.3, 0.0, 0.0 + 1e-12))
    assert fedmp_reward(0.3, time_s=3.0, mean_time_s=2.0) == pytest.approx(0.3)
    assert fedmp_reward(-0.2, time_s=1.5, mean_time_s=2.0) == pytest.approx(-0.4)


# -- PruneFL ----------------------------------------------------------------------------------


def _brute_force(g2: np.ndarray, t: np.ndarray, c: float) -> tuple[float, set[int]]:
    best: tuple[float, set[int]] = (-1.0, set())
    for size in range(1, len(g2) + 1):
        for subset in itertools.combinations(range(len(g2)), size):
            value = g2[list(subset)].sum() / (c + t[list(subset)].sum())
            if value > best[0] + 1e-12:
                best = (value, set(subset))
    return best


def test_prunefl_greedy_keeps_the_top_three_like_brute_force() -> None:
    g2 = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    t = np.ones(5)
    kept = greedy_kept_set(g2, t, fixed_time_s=2.0)
    assert set(np.flatnonzero(kept)) == {0, 1, 2} == _brute_force(g2, t, 2.0)[1]


def test_prunefl_greedy_is_optimal_on_random_instances() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        g2, t, c = rng.uniform(0, 5, 7), rng.uniform(0.1, 3, 7), float(rng.uniform(0, 5))
        kept = greedy_kept_set(g2, t, c)
        value = g2[kept].sum() / (c + t[kept].sum())
        assert value == pytest.approx(_brute_force(g2, t, c)[0], rel=1e-12)


# -- HeteroFL ---------------------------------------------------------------------------------


def test_heterofl_levels_go_to_the_fastest_devices_first() -> None:
    widths = width_levels_by_capability(np.array([3.0, 1.0, 2.0, 5.0, 4.0, 0.5]), (1.0, 0.5, 0.25))
    np.testing.assert_array_equal(widths, [0.5, 1.0, 0.5, 0.25, 0.25, 1.0])


# -- DWNP -------------------------------------------------------------------------------------


def test_flops_regulariser_values() -> None:
    r = flops_regulariser(torch.tensor([0.3, 0.5, 0.75, 1.0]), 0.5)
    np.testing.assert_allclose(r.numpy(), [0.0, 0.0, math.log(1.5), math.log(2.0)], rtol=1e-6)


def test_straight_through_gates_are_binary_and_pass_gradients_to_the_hypernetwork() -> None:
    generator = torch.Generator().manual_seed(0)
    model = build_model("small-cnn", (1, 8, 8), 10, generator, norm="layer")
    x = torch.randn(8, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (8,), generator=generator)
    layout = ChannelLayout(model, x)
    hn = HyperNetwork(3, layout.sizes, generator, init_logit=0.0)
    logits = hn(1)
    # One gate vector per channel group, as long as the group: the two convs' output channels.
    assert [tuple(z.shape) for z in logits] == [(s,) for s in layout.sizes]
    assert sorted(layout.sizes) == [16, 32]
    gates = [gumbel_sigmoid_st(z, 0.5, generator) for z in logits]
    # Forward values are 0/1 up to float rounding of hard + soft - soft.
    assert all(torch.allclose(g.detach(), g.detach().round(), atol=1e-6) for g in gates)
    model.requires_grad_(False)
    with gated(model, layout, gates):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss = loss + flops_regulariser(layout.flops(gates) / layout.total_flops, 0.2)
    loss.backward()  # type: ignore[no-untyped-call]
    grads = [p.grad for p in hn.parameters()]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


def test_gated_forward_and_flops_equal_the_soft_masked_model() -> None:
    generator = torch.Generator().manual_seed(1)
    model = build_model("resnet20", (3, 8, 8), 10, generator, norm="layer")
    x = torch.randn(4, 3, 8, 8, generator=generator)
    layout = ChannelLayout(model, x)
    gates = layout.binarize([(torch.rand(s, generator=generator) > 0.4).float() for s in layout.sizes])
    masks = layout.masks(gates)
    assert float(layout.flops(gates)) == pytest.approx(forward_flops_per_sample(model, (3, 8, 8), masks))
    masked = build_model("resnet20", (3, 8, 8), 10, torch.Generator().manual_seed(1), norm="layer")
    apply_masks(masked, masks)
    with torch.no_grad(), gated(model, layout, gates):
        np.testing.assert_allclose(model(x).numpy(), masked(x).numpy(), atol=1e-5)


def _flops_fraction(trainer: TorchTrainer, masks: Mapping[str, torch.Tensor] | None) -> float:
    """Exact FLOPs of the soft-masked global model over the unpruned count (fedsimenv's counter,
    which counts the weight entries a mask keeps: independent of the projection's channel formula)."""
    total = forward_flops_per_sample(trainer.model, trainer.input_shape)
    return forward_flops_per_sample(trainer.model, trainer.input_shape, masks or {}) / total


@pytest.mark.parametrize("name", ["small-cnn", "resnet20"])
def test_flops_projection_keeps_the_top_logits_at_the_budget_from_both_sides(name: str) -> None:
    generator = torch.Generator().manual_seed(3)
    shape = (1, 8, 8) if name == "small-cnn" else (3, 8, 8)
    model = build_model(name, shape, 10, generator, norm="layer")
    layout = ChannelLayout(model, torch.zeros(1, *shape))
    for trial in range(8):
        logits = [torch.randn(size, generator=generator) * (1 + trial % 3) - 1.0 for size in layout.sizes]
        for budget in (0.2, 0.35, 0.5, 0.65, 0.8):
            gates = project_to_flops_budget(layout, logits, budget)
            fraction = forward_flops_per_sample(model, shape, layout.masks(gates)) / layout.total_flops
            assert fraction == pytest.approx(budget, rel=0.05), (trial, budget)
            for gate, z in zip(gates, logits, strict=True):
                kept, dropped = z[gate > 0.5], z[gate <= 0.5]
                assert len(kept) >= 1 and (len(dropped) == 0 or kept.min() >= dropped.max())
            # A device's sub-network lies inside the server-side one and ranks by its own logits.
            device_logits = [torch.randn(size, generator=generator) for size in layout.sizes]
            inner = project_to_flops_budget(layout, device_logits, 0.6 * budget, allowed=gates)
            assert all(bool((d <= g).all()) for d, g in zip(inner, gates, strict=True))
            inner_fraction = forward_flops_per_sample(model, shape, layout.masks(inner)) / layout.total_flops
            assert inner_fraction == pytest.approx(0.6 * budget, rel=0.05), (trial, budget)
            for d, g, z in zip(inner, gates, device_logits, strict=True):
                kept, dropped = z[d > 0.5], z[(d <= 0.5) & (g > 0.5)]
                assert len(dropped) == 0 or kept.min() >= dropped.max()
    # A budget above everything allowed keeps everything allowed; below one channel per group, one each.
    everything = project_to_flops_budget(layout, logits, 1.0, allowed=gates)
    assert all(torch.equal(a, b) for a, b in zip(everything, gates, strict=True))
    assert [int(g.sum()) for g in project_to_flops_budget(layout, logits, 1e-6)] == [1] * len(layout.sizes)


def _train_until_pruned(agent_name: str, **settings: Any) -> tuple[DWNPStrategy, TorchTrainer]:
    """A small case through the real schedule: tiny with 5 devices, 4 rounds (2 of training, the HN
    trained after each, 18 HN steps a round with r_HN = 1 as the reproduction's CPU configuration),
    stopped right after the final pruning."""
    overrides = {"episode.max_rounds": 4, "cell.num_devices": 5, "learning.local_epochs": 1}
    config = configure_for_agent(load_scenario("tiny", overrides), agent_name)
    env = WirelessFLEnv(config)
    assert isinstance(env.action_space, spaces.Box) and isinstance(env.trainer, TorchTrainer)
    context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)
    agent = make_agent(agent_name, context, 0)
    assert isinstance(agent, StrategyAgent)
    agent.bind(env)
    strategy = agent.strategy
    assert isinstance(strategy, DWNPStrategy)
    strategy.settings = dataclasses.replace(strategy.settings, r_hn=1, hn_learning_rate=3e-3, **settings)
    observation, info = env.reset(seed=0)
    while not strategy.pruned:
        observation, *_, info = env.step(agent.act(observation, info))
    assert strategy.hn_steps_done >= 30
    return strategy, env.trainer


@pytest.mark.parametrize(
    "agent_name",
    [
        # One device-wise (per-device budgets) and one shared-sub-network case run by default.
        "dwnp-wireless",
        "fedilp",
        pytest.param("dwnp", marks=pytest.mark.slow),
        pytest.param("fedosp", marks=pytest.mark.slow),
    ],
)
def test_deployed_subnetworks_meet_their_flops_budgets_after_training(agent_name: str) -> None:
    strategy, trainer = _train_until_pruned(agent_name)
    s = strategy.settings
    assert s.deploy == "projection"  # the default
    server = _flops_fraction(trainer, strategy.server_masks)
    clients = range(trainer.num_devices)
    devices = [_flops_fraction(trainer, strategy.device_masks(trainer, n)) for n in clients]
    budgets = [strategy.budget(n) for n in clients]
    if agent_name == "dwnp-wireless":
        assert len(set(budgets)) == len(budgets)  # really per device
    if s.device_wise:
        # p_s for a^0; p_d^n for a^0 * a^n, which lies inside a^0 (so at most p_s).
        assert server == pytest.approx(s.server_budget, rel=0.05)
        targets = [min(b, s.server_budget) for b in budgets]
    else:
        # FedILP, FedOSP: the one sub-network a^0 is every device's, at the device budget.
        assert server == pytest.approx(s.device_budget, rel=0.05)
        targets = budgets
    for n, (fraction, target) in enumerate(zip(devices, targets, strict=True)):
        assert fraction == pytest.approx(target, rel=0.05), (n, fraction, target)


def test_threshold_deploy_is_the_papers_logit_sign_rule() -> None:
    strategy, _ = _train_until_pruned("dwnp", deploy="threshold")
    logits0, logits1 = strategy.hn(0), strategy.hn(1)
    for gate0, gate1, z0, z1 in zip(strategy.gates(0), strategy.gates(1), logits0, logits1, strict=True):
        a0 = (z0 > 0).float()
        if a0.sum() == 0:  # at least one channel per group: the highest logit
            a0[torch.argmax(z0)] = 1.0
        assert torch.equal(gate0, a0)
        device = a0 * (z1 > 0).float()
        if device.sum() == 0:
            device[torch.argmax(z1)] = 1.0
        assert torch.equal(gate1, device)


# -- every algorithm in the co-simulation --------------------------------------------------------


def test_literature_agents_are_registered() -> None:
    assert set(LITERATURE) <= set(AGENTS.names())


@pytest.mark.parametrize("name", LITERATURE)
def test_cli_runs_every_literature_algorithm_on_tiny(name: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "tiny", "--agent", name, "--rounds", "2", "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    for row in rows:
        assert {"accuracy", "sim_time_s", "energy_j", "mean_rho", "upload_bits"} <= set(row)
        assert row["num_arrived"] == 10 and 0 <= row["accuracy"] <= 1 and row["energy_j"] > 0
