"""Device heterogeneity from the scenario, reproducibility, and the env/CLI on top of the simulator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fedsimenv.cli import main
from fedsimenv.config import FixedValues, LogNormal
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.plan import LearningResult, RoundPlan
from fedsimenv.scenario import ScenarioError, load_scenario
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.builder import build_simulator
from fedsimenv.sim.world import sample_quantity


def test_lognormal_quantity_follows_scipy_lognorm() -> None:
    values = sample_quantity(
        LogNormal(distribution="lognormal", median=1e9, sigma=0.4), 5000, np.random.default_rng(0), "x"
    )
    assert stats.kstest(values, stats.lognorm(s=0.4, scale=1e9).cdf).pvalue > 0.01


def test_list_quantity_must_match_the_device_count() -> None:
    with pytest.raises(
        ValueError, match=r"devices.cpu_freq_hz: the list has 2 values, cell.num_devices is 3"
    ):
        sample_quantity(
            FixedValues(distribution="list", values=[1.0, 2.0]),
            3,
            np.random.default_rng(0),
            "devices.cpu_freq_hz",
        )


def test_scenario_quantities_and_trace_csv_reach_the_fleet(tmp_path: Path) -> None:
    trace = tmp_path / "devices.csv"
    trace.write_text(
        "cpu_freq_hz,battery_capacity_j\n" + "\n".join(f"{(k + 1) * 1e8},{10 + k}" for k in range(10))
    )
    config = load_scenario(
        "tiny",
        {
            "devices.flops_per_cycle": {"distribution": "list", "values": list(range(1, 11))},
            "devices.tx_power_dbm": 20,
            "devices.trace_csv": str(trace),
        },
    )
    fleet = build_simulator(config, EpisodeStreams(np.random.SeedSequence(0))).fleet
    np.testing.assert_allclose(fleet.cpu_freq_hz, np.arange(1, 11) * 1e8)
    np.testing.assert_allclose(fleet.flops_per_cycle, np.arange(1, 11))
    np.testing.assert_allclose(fleet.tx_power_w, 0.1)
    assert fleet.battery_capacity_j is not None
    np.testing.assert_allclose(fleet.battery_capacity_j, np.arange(10, 20))


def test_bad_trace_csv_is_named(tmp_path: Path) -> None:
    trace = tmp_path / "devices.csv"
    trace.write_text("cpu_ghz\n1\n")
    config = load_scenario("tiny", {"devices.trace_csv": str(trace)})
    with pytest.raises(
        ValueError, match=r"columns among cpu_freq_hz, .* \(column\(s\) \[1\] are not\)"
    ) as err:
        build_simulator(config, EpisodeStreams(np.random.SeedSequence(0)))
    assert "cpu_ghz" not in str(err.value)  # the file's contents are never quoted


def test_non_positive_device_quantities_are_rejected() -> None:
    with pytest.raises(ScenarioError, match=r"devices\.cpu_freq_hz"):
        load_scenario("tiny", {"devices.cpu_freq_hz": 0})


def _rounds(seed: int) -> list[tuple[float, list[str]]]:
    config = load_scenario(
        "tiny",
        {
            "devices.availability": {"on_to_off_rate_per_s": 0.5, "off_to_on_rate_per_s": 1.0},
            "channel.coherence_time_s": 0.05,
            "protocol.name": "deadline",
            "protocol.deadline_s": 0.4,
        },
    )
    sim = build_simulator(config, EpisodeStreams(np.random.SeedSequence(seed)))
    from fedsimenv.sim import DeviceWorkload, RoundDecision

    n = config.cell.num_devices
    decision = RoundDecision(np.ones(n, bool), np.zeros(n), np.full(n, 2e6))
    work = DeviceWorkload(np.full(n, 6e5), np.full(n, 3.2e5), 3.2e5, np.full(n, 140), 2)
    return [(r.round_latency_s, list(r.status)) for r in (sim.run_round(decision, work) for _ in range(10))]


def test_simulator_is_reproducible_from_the_seed() -> None:
    assert _rounds(3) == _rounds(3)
    assert _rounds(3) != _rounds(4)


def test_dropped_devices_never_reach_aggregation_and_energy_adds_up() -> None:
    env = WirelessFLEnv("tiny", overrides={"protocol.name": "deadline", "protocol.deadline_s": 0.25})
    env.reset(seed=0)
    n = env.num_devices
    trained: list[list[int]] = []
    original = env.trainer.train_round

    def spy(plan: RoundPlan, arrived: Sequence[int]) -> LearningResult:
        trained.append(list(arrived))
        return original(plan, arrived)

    env.trainer.train_round = spy  # type: ignore[method-assign]
    saw_drop = False
    for _ in range(3):
        _, _, _, _, info = env.step(np.concatenate([np.ones(n), -np.ones(n), np.zeros(n)]).astype(np.float32))
        report = env.last_report
        assert report is not None
        dropped = set(np.flatnonzero(report.status == "dropped"))
        saw_drop |= bool(dropped)
        assert dropped.isdisjoint(trained[-1])
        assert trained[-1] == list(np.flatnonzero(report.arrived))
        per_device = report.compute_energy_j + report.transmit_energy_j + report.idle_energy_j
        assert info["round_energy_j"] == pytest.approx(per_device.sum())
        assert info["num_arrived"] + info["num_dropped"] + info["num_failed"] == info["num_selected"]
    assert saw_drop


def test_cli_timeline_writes_jsonl_and_a_gantt_png(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "tiny", "--rounds", "2", "--out", str(out), "--timeline", "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    assert len(records) == 20 and {r["round"] for r in records} == {1, 2}
    first = records[0]
    assert first["phases"]["download"]["finish_s"] == first["phases"]["compute"]["start_s"]
    assert first["stop_s"] == pytest.approx(first["phases"]["upload"]["finish_s"])
    png = (out / "gantt.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert main(["run", "tiny", "--rounds", "1", "--timeline", "--quiet"]) == 2  # needs --out


def test_devices_move_during_rounds_with_a_mobility_model() -> None:
    config = load_scenario(
        "tiny",
        {
            "channel.mobility": {
                "model": "random-waypoint",
                "params": {"min_speed_mps": 20, "max_speed_mps": 30},
            },
            "channel.coherence_time_s": 0.05,
        },
    )
    sim = build_simulator(config, EpisodeStreams(np.random.SeedSequence(0)))
    from fedsimenv.sim import DeviceWorkload, RoundDecision

    n = config.cell.num_devices
    before = sim.distance_m.copy()
    report = sim.run_round(
        RoundDecision(np.ones(n, bool), np.zeros(n), np.full(n, 2e6)),
        DeviceWorkload(np.full(n, 6e5), np.full(n, 3.2e5), 3.2e5, np.full(n, 140), 2),
    )
    moved = np.abs(sim.distance_m - before)
    # Each device moved at most speed x elapsed time (the channel is advanced block by block, so up to
    # one 50 ms block past the round's end), and at least one moved noticeably.
    assert np.all(moved <= 30 * (report.round_latency_s + 0.05) + 1e-9)
    assert moved.max() > 1.0
    assert np.all((sim.distance_m >= config.cell.min_distance_m) & (sim.distance_m <= config.cell.radius_m))
