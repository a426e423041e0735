"""The federated pruning algorithms of the literature (agents/literature), against hand-computed cases,
brute force and the paper's definitions; every one runs through `fedsimenv run tiny --agent NAME`."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import AGENTS, AgentContext, configure_for_agent, make_agent
from agents.literature.channel_layout import ChannelLayout, gated
from agents.literature.common import StrategyAgent
from agents.literature.dwnp import HyperNetwork, flops_regulariser, gumbel_sigmoid_st
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


def _bound_env(agent_name: str, rounds: int) -> tuple[WirelessFLEnv, StrategyAgent, TorchTrainer]:
    config = configure_for_agent(load_scenario("tiny", {"episode.max_rounds": rounds}), agent_name)
    env = WirelessFLEnv(config)
    assert isinstance(env.action_space, spaces.Box)
    context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)
    agent = make_agent(agent_name, context, 0)
    assert isinstance(agent, StrategyAgent) and isinstance(env.trainer, TorchTrainer)
    agent.bind(env)
    return env, agent, env.trainer


def test_dwnp_subnetworks_meet_their_flops_budgets_after_training() -> None:
    # 30 rounds: the training phase (15) is not over after the 3 steps here, so the HN is still live.
    env, agent, trainer = _bound_env("dwnp", rounds=30)
    observation, info = env.reset(seed=0)
    for _ in range(3):  # some weight training first: the paper starts the HN after 1/4 of it
        observation, *_, info = env.step(agent.act(observation, info))
    strategy = agent.strategy
    assert isinstance(strategy, DWNPStrategy)
    strategy.settings = dataclasses.replace(strategy.settings, hn_learning_rate=3e-3)
    strategy.train_hypernetwork(trainer, [0, 1, 2], steps=60)
    server = strategy.flops_fraction(0)
    devices = [strategy.flops_fraction(k + 1) for k in range(3)]
    # The exact FLOPs of the deployed (soft-masked) sub-networks are within their budgets (+5%).
    # R is one-sided, so they may undershoot: that is measured in the reproduction, not asserted.
    assert 0 < server <= strategy.settings.server_budget + 0.05
    assert all(0 < f <= strategy.settings.device_budget + 0.05 for f in devices), devices
    masks = strategy.layout.masks(strategy.gates(1))
    exact = forward_flops_per_sample(trainer.model, trainer.input_shape, masks)
    assert exact / strategy.layout.total_flops == pytest.approx(devices[0])


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
