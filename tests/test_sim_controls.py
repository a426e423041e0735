"""Decided power and CPU frequency, packet errors with ARQ, OFDMA resource blocks and idle records,
checked against hand-computed latencies/energies, the binomial law and the channels' own formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim_helpers import N0_W_PER_HZ, TX_POWER_W, make_simulator, select, unit_gain, workload

from channels import ChannelModel, DynamicChannel, ofdma_rate_bps
from channels.fading import RayleighFading
from channels.mobility import StaticMobility
from channels.pathloss import MacroCellParams, MacroCellPathLoss
from fedsimenv.config import NetworkConfig, PacketErrorConfig, ResourceBlockConfig
from fedsimenv.sim import DeviceFleet, RoundDecision, RoundSimulator
from fedsimenv.sim.timeline import timeline_records


def test_decided_power_and_frequency_set_time_and_energy() -> None:
    sim = make_simulator([2e9, 1e9], kappa=1e-28)
    power = np.array([TX_POWER_W / 4, TX_POWER_W])
    freq = np.array([0.5e9, 1e9])
    decision = RoundDecision(np.array([True, True]), np.zeros(2), np.full(2, 1e6), power, freq)
    report = sim.run_round(decision, workload([3e9, 3e9], [1e6, 1e6]))
    # By hand: cycles = 3e9 (1 FLOP/cycle); t_comp = C / f; rate = b log2(1 + p g / (N0 b)) with the
    # unit gain making SNR = p / p_max.
    rate = [1e6 * math.log2(1 + 0.25), 1e6 * math.log2(2.0)]
    t_comp = [3e9 / 0.5e9, 3e9 / 1e9]
    for k in range(2):
        t_up = 1e6 / rate[k]
        assert report.upload_finish_s[k] == pytest.approx(t_comp[k] + t_up, rel=1e-12)
        assert report.compute_energy_j[k] == pytest.approx(1e-28 * 3e9 * freq[k] ** 2, rel=1e-12)
        assert report.transmit_energy_j[k] == pytest.approx(power[k] * t_up, rel=1e-12)
    np.testing.assert_allclose(report.tx_power_w, power)
    np.testing.assert_allclose(report.cpu_freq_hz, freq)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tx_power_w", [2 * TX_POWER_W, TX_POWER_W], "tx_power_w exceeds"),
        ("cpu_freq_hz", [1e9, 3e9], "cpu_freq_hz exceeds"),
        ("tx_power_w", [0.0, TX_POWER_W], "tx_power_w must be finite and > 0"),
    ],
)
def test_settings_above_the_device_maximum_are_refused(field: str, value: list[float], message: str) -> None:
    sim = make_simulator([2e9, 1e9])
    decision = RoundDecision(np.array([True, True]), np.zeros(2), np.full(2, 1e6), **{field: np.array(value)})
    with pytest.raises(ValueError, match=message):
        sim.run_round(decision, workload([1e9, 1e9], [1e6, 1e6]))


def _per_simulator(n: int, waterfall: float, tries: int, seed: int = 0) -> RoundSimulator:
    network = NetworkConfig(
        bandwidth_hz=n * 1e6,
        packet_error=PacketErrorConfig(waterfall_threshold=waterfall, max_transmissions=tries),
    )
    return make_simulator([1e9] * n, network=network, seed=seed)


def test_packet_error_rate_matches_the_waterfall_model_within_binomial_error() -> None:
    # SNR = 1 on every link (unit gain), so q = 1 - exp(-m) exactly.
    n, rounds, m = 200, 15, 0.4
    q = 1 - math.exp(-m)
    sim = _per_simulator(n, m, 1)
    failures = 0
    for _ in range(rounds):
        report = sim.run_round(select([True] * n), workload([1e6] * n, [1e5] * n))
        lost = report.reason == "packet-error"
        assert np.all(report.status[lost] == "failed") and not report.arrived[lost].any()
        assert np.all(report.arrived[~lost])
        failures += int(lost.sum())
    trials = n * rounds
    assert abs(failures / trials - q) < 4 * math.sqrt(q * (1 - q) / trials)


def test_arq_retries_cost_time_and_energy_and_fail_with_q_to_the_n() -> None:
    n, rounds, m, tries = 200, 10, 0.7, 3
    q = 1 - math.exp(-m)
    sim = _per_simulator(n, m, tries)
    lost, attempts = 0, []
    for _ in range(rounds):
        report = sim.run_round(select([True] * n), workload([1e6] * n, [1e5] * n))
        t_try = 1e5 / 1e6  # bits / (b log2(1 + 1))
        np.testing.assert_allclose(report.upload_time_s, report.transmissions * t_try, rtol=1e-12)
        np.testing.assert_allclose(
            report.transmit_energy_j, TX_POWER_W * report.transmissions * t_try, rtol=1e-12
        )
        failed = report.reason == "packet-error"
        assert np.all(report.transmissions[failed] == tries)
        lost += int(failed.sum())
        attempts.extend(report.transmissions.tolist())
    trials = n * rounds
    p_lost = q**tries
    assert abs(lost / trials - p_lost) < 4 * math.sqrt(p_lost * (1 - p_lost) / trials)
    mean_tries = (1 - q**tries) / (1 - q)  # E[min(Geometric(1 - q), n)]
    assert np.mean(attempts) == pytest.approx(mean_tries, rel=0.05)


def test_packet_errors_are_reproducible_from_the_seed() -> None:
    outcomes = []
    for seed in (7, 7, 8):
        sim = _per_simulator(50, 0.5, 2, seed=seed)
        report = sim.run_round(select([True] * 50), workload([1e6] * 50, [1e5] * 50))
        outcomes.append(report.transmissions)
    np.testing.assert_array_equal(outcomes[0], outcomes[1])
    assert not np.array_equal(outcomes[0], outcomes[2])


def _ofdma_network(n: int, count: int, fading: str = "flat") -> NetworkConfig:
    return NetworkConfig(
        bandwidth_hz=n * 1e6,
        access="ofdma",
        resource_blocks=ResourceBlockConfig(count=count, bandwidth_hz=n * 1e6 / count, fading=fading),  # type: ignore[arg-type]
    )


def test_ofdma_proportional_blocks_and_flat_rates_match_the_channel_formula() -> None:
    sim = make_simulator([1e9] * 3, network=_ofdma_network(3, 12))
    # shares 0.5 / 0.3 / 0.2 of 12 RBs -> 6 / 3.6 / 2.4 -> floor 6, 3, 2; the leftover goes to 3.6
    decision = RoundDecision(np.ones(3, bool), np.zeros(3), np.array([1.5e6, 0.9e6, 0.6e6]))
    report = sim.run_round(decision, workload([1e6] * 3, [1e6] * 3))
    assert report.resource_blocks is not None
    np.testing.assert_array_equal(report.resource_blocks, [6, 4, 2])
    rb_hz = 3e6 / 12
    expected = ofdma_rate_bps(report.resource_blocks, rb_hz, TX_POWER_W, unit_gain(1e6), N0_W_PER_HZ)
    np.testing.assert_allclose(report.uplink_rate_bps, expected, rtol=1e-12)
    t_up = 1e6 / expected
    np.testing.assert_allclose(report.upload_time_s, t_up, rtol=1e-12)


def test_ofdma_explicit_owners_and_a_device_without_a_block_fails() -> None:
    sim = make_simulator([1e9] * 3, network=_ofdma_network(3, 4))
    owner = np.array([2, 0, 0, -1])
    decision = RoundDecision(np.ones(3, bool), np.zeros(3), np.zeros(3), resource_block_owner=owner)
    report = sim.run_round(decision, workload([1e6] * 3, [1e6] * 3))
    assert report.resource_blocks is not None
    np.testing.assert_array_equal(report.resource_blocks, [2, 0, 1])
    assert report.status[1] == "failed" and report.reason[1] == "no-resource-block"
    assert report.arrived[0] and report.arrived[2]


def test_ofdma_rates_use_each_blocks_own_fading_gain() -> None:
    n, count = 4, 8
    fleet = DeviceFleet(
        distance_m=np.array([100.0, 200.0, 300.0, 400.0]),
        angle_rad=np.zeros(n),
        shadowing_db=np.zeros(n),
        cpu_freq_hz=np.full(n, 1e9),
        flops_per_cycle=np.ones(n),
        tx_power_w=np.full(n, 0.01),
        kappa=1e-28,
    )
    channel = ChannelModel(MacroCellPathLoss(MacroCellParams()), RayleighFading(RayleighFading.Params()))
    dynamic = DynamicChannel(channel, StaticMobility(StaticMobility.Params()), 500.0, 1.0)
    network = _ofdma_network(n, count, "independent")
    sim = RoundSimulator(fleet, dynamic, network, np.random.default_rng(3))
    rb_gain = sim.blocks.rb_gain(0)
    assert rb_gain is not None and rb_gain.shape == (n, count)
    # Every RB of a device shares its path loss; the fading differs per RB.
    large = channel.large_scale_gain(fleet.distance_m, np.zeros(n))
    assert np.unique(np.round(rb_gain[0] / large[0], 12)).size == count
    owner = np.array([0, 0, 1, 1, 2, 3, 3, 3])
    decision = RoundDecision(np.ones(n, bool), np.zeros(n), np.zeros(n), resource_block_owner=owner)
    report = sim.run_round(decision, workload([1e6] * n, [1e5] * n))
    w = network.bandwidth_hz / count
    for k in range(n):
        mine = np.flatnonzero(owner == k)
        snr = 0.01 / len(mine) * rb_gain[k, mine] / (N0_W_PER_HZ * w)
        assert report.uplink_rate_bps[k] == pytest.approx(float(np.sum(w * np.log2(1 + snr))), rel=1e-12)


def test_async_jobs_in_flight_keep_their_resource_blocks() -> None:
    # Device 0 computes for 100 s, device 1 for 1 s; one arrival ends a round, so device 0's job
    # (on RB 0) is still in flight when round 2 asks for both RBs for device 1: it gets only RB 1.
    from fedsimenv.config import ProtocolConfig

    sim = make_simulator(
        [1e6, 1e6], protocol=ProtocolConfig(name="async", target_updates=1), network=_ofdma_network(2, 2)
    )
    load = workload([1e8, 1e6], [1e5, 1e5])
    first = sim.run_round(
        RoundDecision(np.ones(2, bool), np.zeros(2), np.zeros(2), resource_block_owner=np.array([0, 1])), load
    )
    assert first.arrived.tolist() == [False, True]
    second = sim.run_round(
        RoundDecision(np.ones(2, bool), np.zeros(2), np.zeros(2), resource_block_owner=np.array([1, 1])), load
    )
    assert second.resource_blocks is not None
    assert second.resource_blocks.tolist() == [1, 1]  # device 0 still holds RB 0
    one_block = ofdma_rate_bps(np.array([1]), 1e6, TX_POWER_W, unit_gain(1e6), N0_W_PER_HZ)[0]
    assert second.uplink_rate_bps[1] == pytest.approx(float(one_block), rel=1e-12)


def test_idle_devices_appear_in_the_timeline_and_energies_add_up() -> None:
    sim = make_simulator([1e9, 1e9, 1e9], idle_power_w=0.05)
    report = sim.run_round(select([True, False, False]), workload([1e9, 1e9, 1e9], [1e6] * 3))
    records = timeline_records(report)
    assert [r["status"] for r in records] == ["arrived", "idle", "idle"]
    assert records[1]["idle_energy_j"] == pytest.approx(0.05 * report.round_latency_s)
    total = sum(r["compute_energy_j"] + r["transmit_energy_j"] + r["idle_energy_j"] for r in records)
    assert total == pytest.approx(report.energy_j, rel=1e-12)
