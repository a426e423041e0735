"""Quantisation as a decision: the ``quant_bits`` action component, ``RoundDecision.upload_value_bits``,
the exact upload bits the trainer prices and the simulator times, and the quantised upload itself,
against hand counts."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from fedsimenv.actions import decode_action, encode_decision
from fedsimenv.config import ActionConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.quantisation import SCALE_BITS, quantised_upload
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.scenario import load_scenario
from fedsimenv.sim.types import RoundDecision
from fedsimenv.wrappers import DictActionWrapper, MultiDiscreteActionWrapper

CONTROLS = ("select", "rho", "bandwidth", "quant_bits")
CFG = ActionConfig(controls=CONTROLS, rho_max=0.8)


def test_quant_bits_decode_by_hand_and_round_trip() -> None:
    # levels (1, 2, 4, 8, 16, 32): a = -1 -> level 0, a = -0.6 -> round(0.2 * 5) = 1, a = 1 -> 5.
    action = np.array([1, 1, 1, -1, -1, -1, 0, 0, 0, -1.0, -0.6, 1.0])
    d = decode_action(action, 3, CFG, 1e6)
    assert d.upload_value_bits is not None
    np.testing.assert_array_equal(d.upload_value_bits, [1, 2, 32])
    for width in CFG.quant_bits_levels:
        encoded = encode_decision([True, True], [0.0, 0.4], [1.0, 1.0], CFG, upload_value_bits=[width, 8])
        decoded = decode_action(encoded, 2, CFG, 1e6)
        assert decoded.upload_value_bits is not None
        assert decoded.upload_value_bits.tolist() == [width, 8]
    # Absent: the top level (full precision); not a level: refused with the field named.
    default = decode_action(encode_decision([True], [0.0], [1.0], CFG), 1, CFG, 1e6).upload_value_bits
    assert default is not None and default.tolist() == [32]
    with pytest.raises(ValueError, match="upload_value_bits"):
        encode_decision([True], [0.0], [1.0], CFG, upload_value_bits=[3])
    # Off by default: the three-part action decodes to no width.
    assert decode_action(np.zeros(3), 1, ActionConfig(), 1e6).upload_value_bits is None
    with pytest.raises(ValueError, match="quant_bits_levels"):
        ActionConfig(quant_bits_levels=(4, 2))


def test_round_decision_refuses_bad_widths() -> None:
    base: dict[str, Any] = {
        "selected": np.array([True, True]),
        "pruning_rate": np.zeros(2),
        "bandwidth_hz": np.array([0.5e6, 0.5e6]),
    }
    RoundDecision(**base, upload_value_bits=np.array([1, 32])).validate(2, 1e6)
    for bad in (np.array([0, 8]), np.array([8, 33]), np.array([8.0, 8.0]), np.array([8])):
        with pytest.raises(ValueError, match="upload_value_bits"):
            RoundDecision(**base, upload_value_bits=bad).validate(2, 1e6)


def _torch_env() -> WirelessFLEnv:
    overrides = {
        "episode.max_rounds": 2,
        "cell.num_devices": 3,
        "learning.local_epochs": 1,
        "action.controls": list(CONTROLS),
    }
    return WirelessFLEnv("tiny", overrides=overrides)


def test_decided_widths_are_priced_exactly_and_timed_by_the_simulator() -> None:
    env = _torch_env()
    env.reset(seed=0)
    trainer = env.trainer
    assert isinstance(trainer, TorchTrainer)
    shapes = {name: p.shape for name, p in trainer.model.named_parameters()}
    # Device 0: unpruned at 8 bits; device 1: magnitude-pruned (unstructured) at 2 bits; device 2 at 32.
    action = encode_decision(
        np.ones(3, bool), [0.0, 0.5, 0.0], np.ones(3), env.config.action, upload_value_bits=[8, 2, 32]
    )
    env.step(action)
    plan, report = env.last_plan, env.last_report
    assert plan is not None and report is not None
    total = sum(int(np.prod(s)) for s in shapes.values())
    tensors = len(shapes)
    # 8 bits per value plus one 32-bit scale per tensor.
    assert plan.jobs[0].cost.upload_bits == total * 8 + tensors * SCALE_BITS
    masks = plan.jobs[1].masks
    assert masks  # the magnitude pruner's unstructured masks: one index bit per masked entry
    kept = sum(int(masks[n].sum()) if n in masks else int(np.prod(s)) for n, s in shapes.items())
    sent_tensors = sum(1 for n in shapes if n not in masks or int(masks[n].sum()) > 0)
    mask_bits = sum(m.numel() for m in masks.values())
    assert plan.jobs[1].cost.upload_bits == kept * 2 + sent_tensors * SCALE_BITS + mask_bits
    # 32 bits: unquantised, no scales; the same as without the control.
    assert plan.jobs[2].cost.upload_bits == total * 32
    assert [plan.jobs[k].upload_value_bits for k in range(3)] == [8, 2, 32]
    # The simulator sent exactly those bits at each device's rate (FDMA, one block per round).
    for k in range(3):
        assert report.upload_bits[k] == plan.jobs[k].cost.upload_bits
        took = report.upload_finish_s[k] - report.upload_start_s[k]
        assert took == pytest.approx(plan.jobs[k].cost.upload_bits / report.uplink_rate_bps[k], rel=1e-9)


def test_quantised_upload_is_on_the_grid_and_leaves_buffers() -> None:
    generator = torch.Generator().manual_seed(0)
    start = {"w": torch.zeros(50), "running_mean": torch.zeros(3)}
    state = {"w": torch.randn(50, generator=generator), "running_mean": torch.ones(3)}
    received = quantised_upload(start, state, 2, generator, {}, {"w"})
    scale = float(state["w"].abs().max())
    levels = torch.tensor([-scale, -scale / 3, scale / 3, scale])
    assert torch.isclose(received["w"].unsqueeze(-1), levels, atol=1e-6).any(-1).all()
    assert torch.equal(received["running_mean"], state["running_mean"])
    assert quantised_upload(start, state, 32, generator, {}, {"w"})["w"] is state["w"]


def test_check_env_and_wrappers_with_the_component_on() -> None:
    overrides = {"episode.max_rounds": 3, "action.controls": list(CONTROLS)}
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides=overrides)
    assert env.action_space.shape == (40,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)

    wrapped = DictActionWrapper(WirelessFLEnv("tiny", trainer="surrogate", overrides=overrides))
    assert isinstance(wrapped.action_space, spaces.Dict)
    levels_space = wrapped.action_space["quant_bits_level"]
    assert isinstance(levels_space, spaces.MultiDiscrete) and levels_space.nvec.tolist() == [6] * 10
    wrapped.reset(seed=0)
    level = np.array([0, 1, 2, 3, 4, 5, 5, 5, 5, np.nan])  # NaN -> the top level
    wrapped.step(
        {"selected": np.ones(10), "pruning_rate": np.zeros(10), "bandwidth_share": np.ones(10),
         "quant_bits_level": level}
    )  # fmt: skip
    base = wrapped.unwrapped
    assert isinstance(base, WirelessFLEnv) and base.last_plan is not None
    widths = [base.last_plan.jobs[k].upload_value_bits for k in range(10)]
    assert widths == [1, 2, 4, 8, 16, 32, 32, 32, 32, 32]
    # The surrogate re-prices the values: (32 - b) bits fewer per kept parameter.
    cost = base.last_plan.jobs
    assert cost[5].cost.upload_bits - cost[0].cost.upload_bits == 31 * cost[0].cost.kept_params

    md = MultiDiscreteActionWrapper(WirelessFLEnv("tiny", trainer="surrogate", overrides=overrides), levels=2)
    assert isinstance(md.action_space, spaces.MultiDiscrete)
    np.testing.assert_array_equal(md.action_space.nvec, [3] * 10 + [6] * 10)
    md.reset(seed=0)
    md.step(np.array([1] * 10 + [3] * 10))
    inner = md.unwrapped
    assert isinstance(inner, WirelessFLEnv) and inner.last_plan is not None
    assert {job.upload_value_bits for job in inner.last_plan.jobs.values()} == {8}


def _agent_env(name: str, **agent_attrs: float) -> tuple[WirelessFLEnv, Any]:
    from agents import AgentContext, configure_for_agent, make_agent

    config = configure_for_agent(load_scenario("tiny", {"episode.max_rounds": 2}), name)
    env = WirelessFLEnv(config, trainer="surrogate")
    assert isinstance(env.action_space, spaces.Box)
    agent = make_agent(name, AgentContext.from_scenario(env.config, env.action_space, env.system_view))
    for key, value in agent_attrs.items():
        setattr(agent, key, value)
    agent.bind(env)
    return env, agent


def test_quant_deadline_gives_each_device_the_largest_width_that_fits() -> None:
    env, agent = _agent_env("quant-deadline")
    assert "quant_bits" in env.config.action.controls
    observation, info = env.reset(seed=0)
    view = env.system_view()
    action = agent.act(observation, info)
    widths = decode_action(action, 10, env.config.action, view.bandwidth_hz).upload_value_bits
    assert widths is not None
    # By hand: the surrogate prices b bits as upload - kept (32 - b); deadline = median equal-share latency.
    kept = env.trainer.cost_at(0.0).kept_params
    share = view.bandwidth_hz / 10
    rate = share * np.log2(1 + view.planning_snr_bandwidth_hz / share)
    fixed = view.planning_downlink + view.compute_latency_s
    deadline = float(np.median(fixed + view.upload_bits / rate))
    for k in range(10):
        fitting = [
            b
            for b in env.config.action.quant_bits_levels
            if fixed[k] + (view.upload_bits[k] - kept * (32 - b)) / rate[k] <= deadline
        ]
        assert widths[k] == (max(fitting) if fitting else 1)
    assert len(set(widths.tolist())) > 1  # the stragglers are quantised, the others not
    env.step(action)
    assert env.last_plan is not None
    assert [env.last_plan.jobs[k].upload_value_bits for k in range(10)] == widths.tolist()


def test_optimal_quant_trades_bits_against_its_penalty() -> None:
    from agents.optimal.closed_form import solve_closed_form

    env, agent = _agent_env("optimal-quant", quant_penalty=0.0)
    observation, info = env.reset(seed=0)
    action = agent.act(observation, info)
    # At 32 bits the problem is optimal's own; fewer bits never raise J, so without a penalty the
    # smallest width with the least J is taken.
    plain = agent.plan(env.system_view(), solve_closed_form)
    assert agent.last_values[32] == pytest.approx(plain.objective)
    values = agent.last_values
    assert values[agent.last_bits] <= min(values.values()) + 1e-9
    assert values[1] <= values[32] - 0.01  # fewer bits, less pruning or exclusion under the deadline
    decoded = decode_action(action, 10, env.config.action, env.config.network.bandwidth_hz)
    assert decoded.upload_value_bits is not None and set(decoded.upload_value_bits) == {agent.last_bits}
    # A prohibitive penalty keeps full precision.
    agent.quant_penalty = 1e9
    agent.act(observation, info)
    assert agent.last_bits == 32
