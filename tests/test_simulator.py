"""The SimPy round against the closed-form latency and energy model, written out here by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from channels import ChannelModel
from channels.fading import NoFading
from channels.pathloss import MacroCellParams, MacroCellPathLoss
from fedsimenv.config import NetworkConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.sim import DeviceFleet, DeviceWorkload, RoundDecision, RoundSimulator

N0_W_PER_HZ = 10 ** ((-174 - 30) / 10)


def _static_simulator(distance_m: list[float], cpu_freq_hz: list[float]) -> RoundSimulator:
    n = len(distance_m)
    fleet = DeviceFleet(
        distance_m=np.array(distance_m),
        angle_rad=np.zeros(n),
        shadowing_db=np.zeros(n),
        cpu_freq_hz=np.array(cpu_freq_hz),
        flops_per_cycle=np.full(n, 4.0),
        tx_power_w=np.full(n, 0.01),  # 10 dBm
        kappa=1e-28,
    )
    channel = ChannelModel(MacroCellPathLoss(MacroCellParams()), NoFading(NoFading.Params()), 0.0)
    network = NetworkConfig(bandwidth_hz=20e6, downlink_bandwidth_hz=10e6, bs_tx_power_dbm=30.0)
    return RoundSimulator(fleet, channel, network, np.random.default_rng(0))


def test_static_round_matches_closed_form_latency_and_energy() -> None:
    sim = _static_simulator([100.0, 250.0, 480.0], [1e9, 2e9, 0.5e9])
    bandwidth = np.array([4e6, 6e6, 10e6])
    decision = RoundDecision(np.array([True, True, True]), np.array([0.0, 0.5, 0.2]), bandwidth)
    workload = DeviceWorkload(
        forward_flops_per_sample=np.array([6e5, 3e5, 4.8e5]),
        upload_bits=np.array([3.2e5, 1.7e5, 2.6e5]),
        download_bits=3.2e5,
        num_samples=np.array([100, 150, 80]),
        local_epochs=2,
    )
    report = sim.run_round(decision, workload)

    # Closed form, by hand: g = 10^(-(128.1 + 37.6 log10(d_km))/10).
    gains = [10 ** (-(128.1 + 37.6 * math.log10(d / 1000)) / 10) for d in (100.0, 250.0, 480.0)]
    g_min = min(gains)
    t_dl = 3.2e5 / (10e6 * math.log2(1 + 1.0 * g_min / (N0_W_PER_HZ * 10e6)))
    finish = []
    energy = 0.0
    for k in range(3):
        cycles = 2 * workload.num_samples[k] * 3 * workload.forward_flops_per_sample[k] / 4.0
        t_comp = cycles / sim.fleet.cpu_freq_hz[k]
        rate = bandwidth[k] * math.log2(1 + 0.01 * gains[k] / (N0_W_PER_HZ * bandwidth[k]))
        t_up = workload.upload_bits[k] / rate
        finish.append(t_dl + t_comp + t_up)
        energy += 1e-28 * cycles * sim.fleet.cpu_freq_hz[k] ** 2 + 0.01 * t_up
    assert report.round_latency_s == pytest.approx(max(finish), rel=1e-9)
    np.testing.assert_allclose(report.upload_finish_s - report.start_time_s, finish, rtol=1e-9)
    assert report.energy_j == pytest.approx(energy, rel=1e-9)
    assert report.arrived.all()

    # The clock is cumulative: a second identical round starts where the first ended.
    second = sim.run_round(decision, workload)
    assert second.start_time_s == pytest.approx(report.end_time_s)
    assert second.round_latency_s == pytest.approx(report.round_latency_s, rel=1e-9)


def test_unselected_devices_cost_nothing_and_do_not_set_the_downlink_rate() -> None:
    sim = _static_simulator([100.0, 450.0], [1e9, 1e9])
    decision = RoundDecision(np.array([True, False]), np.zeros(2), np.array([20e6, 0.0]))
    workload = DeviceWorkload(np.full(2, 1e5), np.full(2, 1e5), 1e5, np.array([10, 10]), 1)
    report = sim.run_round(decision, workload)
    assert report.compute_energy_j[1] == 0 and report.transmit_energy_j[1] == 0
    assert np.isnan(report.upload_finish_s[1])
    near_gain = 10 ** (-(128.1 + 37.6 * math.log10(0.1)) / 10)
    expected_dl = 10e6 * math.log2(1 + near_gain / (N0_W_PER_HZ * 10e6))
    assert report.downlink_rate_bps == pytest.approx(expected_dl, rel=1e-12)


@pytest.mark.parametrize(
    ("field", "decision"),
    [
        ("selected", RoundDecision(np.zeros(2, bool), np.zeros(2), np.array([1e6, 1e6]))),
        ("pruning_rate", RoundDecision(np.ones(2, bool), np.array([0.0, 1.0]), np.array([1e6, 1e6]))),
        ("bandwidth_hz", RoundDecision(np.ones(2, bool), np.zeros(2), np.array([15e6, 15e6]))),
        ("bandwidth_hz", RoundDecision(np.ones(2, bool), np.zeros(2), np.array([1e6, 0.0]))),
    ],
)
def test_invalid_decisions_are_rejected_naming_the_field(field: str, decision: RoundDecision) -> None:
    sim = _static_simulator([100.0, 200.0], [1e9, 1e9])
    workload = DeviceWorkload(np.full(2, 1e5), np.full(2, 1e5), 1e5, np.array([10, 10]), 1)
    with pytest.raises(ValueError, match=f"RoundDecision.{field}"):
        sim.run_round(decision, workload)


def test_env_round_latency_equals_closed_form_on_a_static_channel() -> None:
    env = WirelessFLEnv("tiny", overrides={"channel.fading.model": "none"})
    env.reset(seed=2)
    n = env.num_devices
    # Everyone, no pruning, equal shares.
    env.step(np.concatenate([np.ones(n), -np.ones(n), np.zeros(n)]).astype(np.float32))
    report = env.last_report
    assert report is not None
    cfg, fleet = env.config, env.fleet
    b = cfg.network.bandwidth_hz / n
    p_w = 10 ** ((cfg.network.tx_power_dbm - 30) / 10)
    gains = 10 ** (-(128.1 + 37.6 * np.log10(fleet.distance_m / 1000)) / 10)
    # Dense small CNN on 1x8x8 input, by hand: conv1 16x1x3x3, conv2 32x16x3x3 (64 positions each),
    # linear 512 -> 10; FLOPs = 2 MACs + one add per bias output.
    flops_fwd = 2 * (16 * 9 * 64 + 32 * 16 * 9 * 64 + 512 * 10) + 16 * 64 + 32 * 64 + 10
    params = 16 * 9 + 16 + 32 * 16 * 9 + 32 + 512 * 10 + 10
    bits = 32 * params
    p_bs = 10 ** ((cfg.network.bs_tx_power_dbm - 30) / 10)
    b_dl = cfg.network.downlink_bandwidth_hz
    t_dl = bits / (b_dl * np.log2(1 + p_bs * gains.min() / (N0_W_PER_HZ * b_dl)))
    samples = env.trainer.num_samples
    t_comp = cfg.learning.local_epochs * samples * 3 * flops_fwd / (fleet.cpu_freq_hz * 4.0)
    t_up = bits / (b * np.log2(1 + p_w * gains / (N0_W_PER_HZ * b)))
    assert report.round_latency_s == pytest.approx(float(np.max(t_dl + t_comp + t_up)), rel=1e-9)


def test_noise_figure_and_interference_fold_into_the_effective_noise_psd() -> None:
    def latency(network: NetworkConfig) -> float:
        fleet = DeviceFleet(
            np.array([200.0]), np.zeros(1), np.zeros(1), np.array([1e9]), np.ones(1), np.full(1, 0.01), 0.0
        )
        channel = ChannelModel(MacroCellPathLoss(MacroCellParams()), NoFading(NoFading.Params()), 0.0)
        sim = RoundSimulator(fleet, channel, network, np.random.default_rng(0))
        work = DeviceWorkload(np.zeros(1), np.array([1e6]), 0.0, np.array([1]), 1)
        return sim.run_round(
            RoundDecision(np.ones(1, bool), np.zeros(1), np.array([1e6])), work
        ).round_latency_s

    gain = 10 ** (-(128.1 + 37.6 * math.log10(0.2)) / 10)
    # 3 dB noise figure doubles N0; interference at the same PSD as N0 adds another N0: 3 x N0.
    network = NetworkConfig(noise_figure_db=10 * math.log10(2), interference_psd_dbm_per_hz=-174.0)
    expected = 1e6 / (1e6 * math.log2(1 + 0.01 * gain / (3 * N0_W_PER_HZ * 1e6)))
    assert latency(network) == pytest.approx(expected, rel=1e-9)
    assert latency(NetworkConfig()) < latency(network)
