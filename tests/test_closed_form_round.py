"""The closed-form end of a round (fedsimenv.sim.closedform) against the SimPy event loop, bit for bit.

Each case runs the same scenario, seed and random actions twice, once with closed-form rounds allowed
and once with ``closed_form_rounds = False`` (every round through SimPy), and compares the pickled
observation, reward, flags, info and full RoundReport of every step, and the simulator state after.
It also checks which path ran: closed form where eligible, the documented fallback elsewhere.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from sim_helpers import make_simulator

from fedsimenv.config import NetworkConfig, PacketErrorConfig, ProtocolConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.sim import DeviceWorkload, RoundDecision

ALL_CONTROLS = ["select", "rho", "bandwidth", "power", "cpu_freq", "rb"]
OFDMA = {"network.access": "ofdma", "network.resource_blocks": {"count": 25, "bandwidth_hz": 0.8e6}}


def run(closed: bool, overrides: dict[str, Any], steps: int, seed: int) -> tuple[list[bytes], int, int]:
    """Pickled per-step outcomes, rounds finished in closed form, rounds run."""
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": 8, **overrides})
    rng = np.random.default_rng(seed)
    outcomes: list[bytes] = []
    closed_rounds = 0

    def fresh(**kwargs: Any) -> None:
        env.reset(**kwargs)
        env.simulator.closed_form_rounds = closed

    fresh(seed=seed)
    for _ in range(steps):
        action = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        sim = env.simulator
        state = (sim.now_s, sim.battery_j, sim.jobs.status, sim.jobs.stop_s, sim.arrivals, sim.busy)
        outcomes.append(pickle.dumps((obs, reward, terminated, truncated, info, env.last_report, state)))
        if terminated or truncated:
            closed_rounds += sim.closed_form_count
            fresh()
    return outcomes, closed_rounds + env.simulator.closed_form_count, steps


def compare(overrides: dict[str, Any], steps: int = 30, seed: int = 1) -> tuple[int, int]:
    fast, closed_rounds, total = run(True, overrides, steps, seed)
    slow, slow_closed, _ = run(False, overrides, steps, seed)
    assert slow_closed == 0
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a == b, f"step {i} differs between the closed form and the event loop"
    return closed_rounds, total


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("static synchronous", {}),
        (
            "packet errors + ARQ",
            {"network.packet_error": {"waterfall_threshold": 5.0, "max_transmissions": 3}},
        ),
        ("OFDMA, power/cpu/rb controls", {**OFDMA, "action.controls": ALL_CONTROLS}),
        ("fading within a round", {"channel.coherence_time_s": 0.3, "network.bandwidth_hz": 2e6}),
        (
            "interference and noise figure",
            {"network.noise_figure_db": 7.0, "network.interference_psd_dbm_per_hz": -170.0},
        ),
    ],
)
def test_closed_form_equals_event_loop_where_eligible(name: str, overrides: dict[str, Any]) -> None:
    closed_rounds, total = compare(overrides)
    assert closed_rounds == total, f"{name}: every round is eligible"


def test_packet_errors_really_happen_in_the_closed_form() -> None:
    overrides = {"network.packet_error": {"waterfall_threshold": 5.0, "max_transmissions": 2}}
    fast, _, _ = run(True, overrides, 30, 1)
    errors = sum(pickle.loads(step)[4]["num_packet_errors"] for step in fast)
    assert errors > 0


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        (
            "availability (devices go off mid-round)",
            {"devices.availability": {"on_to_off_rate_per_s": 0.3, "off_to_on_rate_per_s": 0.5}},
        ),
        (
            "batteries running out",
            {
                "devices.battery_capacity_j": {"distribution": "constant", "value": 0.5},
                "devices.idle_power_w": 0.05,
            },
        ),
    ],
)
def test_mid_round_failures_fall_back_to_the_event_loop_and_agree(
    name: str, overrides: dict[str, Any]
) -> None:
    closed_rounds, total = compare(overrides, steps=40)
    assert 0 < closed_rounds < total, f"{name}: some rounds fall back, the others do not"


@pytest.mark.parametrize(
    "protocol",
    [
        {"name": "deadline", "deadline_s": 0.5},
        {"name": "over-commit", "target_updates": 2},
    ],
)
def test_protocols_with_events_always_use_the_event_loop(protocol: dict[str, Any]) -> None:
    closed_rounds, _ = compare({"protocol": protocol}, steps=15)
    assert closed_rounds == 0


def test_async_always_uses_the_event_loop() -> None:
    sim = make_simulator([1e9, 2e9], protocol=ProtocolConfig(name="async", target_updates=1))
    decision = RoundDecision(np.ones(2, bool), np.zeros(2), np.full(2, 1e6))
    work = DeviceWorkload(np.full(2, 1e5), np.full(2, 1e6), 1e6, np.full(2, 10, dtype=np.int64), 1)
    for _ in range(4):
        sim.run_round(decision, work)
    assert sim.closed_form_count == 0 and sim.round_index == 4


def test_simulator_level_random_decisions_with_own_downloads_and_ties() -> None:
    """Random selections, bandwidths, powers, CPU frequencies and per-device download sizes on a
    scripted channel; identical CPUs and sizes make several jobs end at the same instant (ties)."""
    rng = np.random.default_rng(7)
    n = 6
    network = NetworkConfig(
        bandwidth_hz=n * 1e6, packet_error=PacketErrorConfig(waterfall_threshold=0.5, max_transmissions=2)
    )
    sims = [make_simulator([1e9] * 3 + [2e9] * 3, network=network, seed=3) for _ in range(2)]
    sims[1].closed_form_rounds = False
    ties = 0
    for round_index in range(40):
        selected = rng.random(n) < 0.7
        selected[rng.integers(n)] = True
        tie = round_index % 3 == 0  # equal shares, sizes and work: equal end times
        share = np.ones(n) if tie else rng.uniform(0.1, 1.0, n)
        bandwidth = np.where(selected, share, 0.0)
        bandwidth *= n * 1e6 / bandwidth.sum()
        decision = RoundDecision(
            selected=selected,
            pruning_rate=np.where(selected, rng.uniform(0, 0.9, n), 0.0),
            bandwidth_hz=bandwidth,
            tx_power_w=None if tie else rng.uniform(0.001, 0.01, n),
            cpu_freq_hz=None if tie else rng.uniform(0.5e9, 1e9, n),
        )
        sizes = np.full(n, 1e6) if tie else rng.uniform(0.0, 2e6, n)
        workload = DeviceWorkload(
            forward_flops_per_sample=np.full(n, 1e5),
            upload_bits=sizes,
            download_bits=sizes * 2,
            num_samples=np.full(n, 10, dtype=np.int64),
            local_epochs=1,
        )
        fast, slow = (sim.run_round(decision, workload) for sim in sims)
        assert pickle.dumps(fast) == pickle.dumps(slow), f"round {round_index}"
        assert sims[0].arrivals == sims[1].arrivals and sims[0].now_s == sims[1].now_s
        stops = fast.stop_s[fast.selected]
        ties += len(np.unique(stops)) < len(stops)
    assert ties > 0  # the arrival order among equal end times was exercised
    assert sims[0].closed_form_count == 40 and sims[1].closed_form_count == 0
