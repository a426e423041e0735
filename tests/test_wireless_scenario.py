"""The built-in ``wireless-controls`` scenario: OFDMA, packet errors, power and CPU controls, run
through the env; its round energy equals the sum of its timeline records."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from agents import AgentContext, configure_for_agent, make_agent
from fedsimenv.env import WirelessFLEnv
from fedsimenv.scenario import load_scenario
from fedsimenv.sim.timeline import timeline_records


def test_scenario_exercises_every_control() -> None:
    config = load_scenario("wireless-controls")
    assert config.network.access == "ofdma" and config.network.resource_blocks is not None
    assert config.network.packet_error is not None and config.network.packet_error.max_transmissions == 2
    assert {"power", "cpu_freq", "rb"} <= set(config.action.controls)
    assert config.devices.idle_power_w > 0


@pytest.mark.parametrize("agent_name", ["chen-selection"])
def test_scenario_runs_and_energies_add_up(agent_name: str) -> None:
    config = configure_for_agent(load_scenario("wireless-controls", {"episode.max_rounds": 3}), agent_name)
    env = WirelessFLEnv(config, trainer="surrogate")
    observation, info = env.reset(seed=1)
    assert isinstance(env.action_space, spaces.Box)
    context = AgentContext.from_scenario(env.config, env.action_space, env.system_view)
    agent = make_agent(agent_name, context, 0)
    tries, blocks = [], []
    for _ in range(3):
        observation, _, _, _, info = env.step(agent.act(observation, info))
        report = env.last_report
        assert report is not None and report.resource_blocks is not None
        assert report.resource_blocks.sum() <= 10
        assert np.all(report.tx_power_w <= env.simulator.fleet.tx_power_w * (1 + 1e-6))
        records = timeline_records(report)
        total = sum(r["compute_energy_j"] + r["transmit_energy_j"] + r["idle_energy_j"] for r in records)
        assert total == pytest.approx(info["round_energy_j"], rel=1e-9)
        assert info["num_arrived"] + info["num_failed"] + info["num_dropped"] == info["num_selected"]
        tries.extend(report.transmissions[report.selected].tolist())
        blocks.extend(report.resource_blocks[report.selected].tolist())
    assert max(tries) <= 2 and min(tries) >= 0
