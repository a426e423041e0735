"""Protocols, failures and block fading on small cases whose answers are worked out by hand.

Set-up (tests/sim_helpers.py): 1 FLOP per cycle, so a device at f Hz computes ``c`` training FLOPs in
``c / f`` s; gains at SNR 1, so an upload of ``x`` bits on ``b`` Hz takes ``x / b`` s; no download.
"""

from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import make_simulator, select, unit_gain, workload

from fedsimenv.config import ProtocolConfig
from fedsimenv.scenario import load_scenario
from fedsimenv.sim.availability import MarkovAvailability
from fedsimenv.sim.timing import depletion_time, transfer_finish_times


def test_transfer_over_three_blocks_by_hand() -> None:
    # Tc = 0.1 s, rates 1, 2, 4 Mbit/s in blocks 0, 1, 2; start at 0.05 s.
    # 0.05 s x 1e6 + 0.1 s x 2e6 + 0.02 s x 4e6 = 3.3e5 bits -> finish at 0.22 s.
    rates = {0: 1e6, 1: 2e6, 2: 4e6}
    finish = transfer_finish_times(
        np.array([0.05, 0.15, np.nan]),
        np.array([3.3e5, 1e5, 1.0]),
        lambda block: np.full(3, rates[block]),
        0.1,
    )
    # Second device: starts at 0.15 in block 1: 0.05 x 2e6 = 1e5 -> finishes exactly at 0.2.
    np.testing.assert_allclose(finish[:2], [0.22, 0.2], rtol=1e-12)
    assert np.isnan(finish[2])


def test_simulated_upload_advances_piecewise_over_coherence_blocks() -> None:
    b = 1e6
    g1 = unit_gain(b)  # rate b
    g3 = unit_gain(b) * 3  # rate b log2(4) = 2b
    g7 = unit_gain(b) * 7  # rate b log2(8) = 3b
    sim = make_simulator([1e6], blocks=[np.array([g1]), np.array([g3]), np.array([g7])], coherence_time_s=0.5)
    # Compute 0.25 s (2.5e5 FLOPs at 1 MHz). Upload 2.5e5 bits: 0.25 s x 1e6 (rest of block 0) = 2.5e5
    # would end exactly at 0.5; use 1.05e6 bits: 2.5e5 in block 0, 1e6 in block 1 (0.5 s x 2e6) -> 1.0 s,
    # but 1e6 bits fill block 1 exactly, so add 3e5 more: 0.1 s of block 2 at 3e6 -> finish 1.1 s.
    report = sim.run_round(select([True]), workload([2.5e5], [2.5e5 + 1e6 + 3e5]))
    assert report.compute_finish_s[0] == pytest.approx(0.25)
    assert report.upload_finish_s[0] == pytest.approx(1.1, rel=1e-12)
    assert report.round_latency_s == pytest.approx(1.1, rel=1e-12)


def test_deadline_drops_late_devices_and_counts_their_energy_until_the_deadline() -> None:
    kappa = 1e-18
    sim = make_simulator([1e6, 1e6], protocol=ProtocolConfig(name="deadline", deadline_s=2.0), kappa=kappa)
    # Device 0: compute 0.5 s, upload 0.5 s -> 1.0 s. Device 1: compute 1.5 s, upload 1.5 s -> 3.0 s.
    report = sim.run_round(select([True, True]), workload([5e5, 1.5e6], [5e5, 1.5e6]))
    assert report.round_latency_s == pytest.approx(2.0)
    assert list(report.status) == ["arrived", "dropped"] and report.reason[1] == "deadline"
    assert report.arrived.tolist() == [True, False]
    power_compute = kappa * 1e6**3
    # Device 1 computed 1.5 s and sent for 0.5 s before the deadline.
    np.testing.assert_allclose(report.compute_energy_j, [0.5 * power_compute, 1.5 * power_compute])
    np.testing.assert_allclose(report.transmit_energy_j, [0.5 * 0.01, 0.5 * 0.01])


def test_deadline_round_ends_early_when_everyone_arrived() -> None:
    sim = make_simulator([1e6], protocol=ProtocolConfig(name="deadline", deadline_s=5.0))
    first = sim.run_round(select([True]), workload([1e6], [1e6]))
    assert first.round_latency_s == pytest.approx(2.0)
    # The first round's deadline timer (at 5 s) must not cut the second round short.
    second = sim.run_round(select([True]), workload([2e6], [2e6]))
    assert second.round_latency_s == pytest.approx(4.0) and second.arrived[0]


def test_over_commit_keeps_the_first_k_arrivals() -> None:
    sim = make_simulator([1e6, 1e6, 1e6], protocol=ProtocolConfig(name="over-commit", target_updates=2))
    report = sim.run_round(select([True, True, True]), workload([1e6, 3e6, 2e6], [0, 0, 0]))
    assert report.round_latency_s == pytest.approx(2.0)
    assert list(report.status) == ["arrived", "dropped", "arrived"]
    assert report.reason[1] == "over-commit"


def test_async_aggregates_every_m_arrivals_and_reports_staleness() -> None:
    sim = make_simulator([1e6, 1e6], protocol=ProtocolConfig(name="async", target_updates=1))
    # Device 0 takes 1 s, device 1 takes 2.5 s.
    work = workload([1e6, 2.5e6], [0, 0])
    r1 = sim.run_round(select([True, True]), work)
    assert r1.end_time_s == pytest.approx(1.0)
    assert list(r1.status) == ["arrived", "in-flight"] and r1.staleness[0] == 0
    r2 = sim.run_round(select([True, True]), work)  # device 1 is busy: only device 0 restarts
    assert r2.end_time_s == pytest.approx(2.0)
    assert list(r2.status) == ["arrived", "in-flight"] and r2.staleness[0] == 0
    r3 = sim.run_round(select([False, True]), work)
    assert r3.end_time_s == pytest.approx(2.5)
    assert r3.arrived.tolist() == [False, True]
    assert r3.staleness[1] == 2  # started at version 0, two aggregations happened before it arrived


def test_device_going_offline_mid_round_is_interrupted() -> None:
    availability = MarkovAvailability(2, 0.0, 0.0, np.random.default_rng(0))
    availability.next_toggle_s = np.array([np.inf, 0.7])  # device 1 goes off at 0.7 s
    sim = make_simulator([1e6, 1e6], availability=availability, kappa=1e-18)
    report = sim.run_round(select([True, True]), workload([1e6, 1e6], [0, 0]))
    assert list(report.status) == ["arrived", "failed"] and report.reason[1] == "went-offline"
    assert not report.arrived[1]
    np.testing.assert_allclose(report.compute_energy_j, [1.0 * 1e-18 * 1e18, 0.7 * 1e-18 * 1e18])
    # Off devices are unavailable in the next round.
    nxt = sim.run_round(select([True, True]), workload([1e6, 1e6], [0, 0]))
    assert nxt.reason[1] == "unavailable" and nxt.compute_energy_j[1] == 0


def test_battery_runs_out_mid_compute_and_the_device_is_unavailable_afterwards() -> None:
    kappa = 1e-18  # compute power kappa f^3 = 1 W at 1 MHz
    sim = make_simulator([1e6, 1e6], battery_j=[10.0, 0.4], kappa=kappa)
    report = sim.run_round(select([True, True]), workload([1e6, 1e6], [0, 0]))
    assert report.reason[1] == "battery-depleted"
    assert report.compute_finish_s[1] > 0.4  # planned 1.0 s; it stopped at 0.4 s
    assert report.compute_energy_j[1] == pytest.approx(0.4)
    np.testing.assert_allclose(report.battery_j, [9.0, 0.0], atol=1e-12)
    assert sim.run_round(select([False, True]), workload([1e6, 1e6], [0, 0])).reason[1] == "unavailable"


def test_idle_power_is_charged_while_waiting() -> None:
    sim = make_simulator([1e6, 1e6], idle_power_w=0.1, kappa=0.0)
    report = sim.run_round(select([True, False]), workload([2e6, 0], [0, 0]))
    # Round lasts 2 s: device 0 is busy the whole time; device 1 idles for 2 s.
    np.testing.assert_allclose(report.idle_energy_j, [0.0, 0.2])
    assert report.energy_j == pytest.approx(
        report.compute_energy_j.sum() + report.transmit_energy_j.sum() + 0.2
    )


def test_depletion_time_by_hand() -> None:
    t = depletion_time(
        np.array([1.0, 5.0, 1.0]),
        [
            (np.zeros(3), np.ones(3), np.array([0.5, 0.5, 0.0])),
            (np.ones(3), np.full(3, 3.0), np.array([1.0, 1.0, 2.0])),
        ],
    )
    # 0.5 J in [0, 1], then 1 W: 1 J runs out at 1.5 s; 5 J never; 0 W then 2 W: at 1.5 s.
    np.testing.assert_allclose(t, [1.5, np.inf, 1.5])


def test_markov_availability_matches_the_stationary_on_probability() -> None:
    up, down = 0.2, 0.6  # on -> off, off -> on rates
    availability = MarkovAvailability(4000, up, down, np.random.default_rng(1))
    on_fraction = [availability.advance_to(t).mean() for t in np.arange(5.0, 105.0, 5.0)]
    assert np.mean(on_fraction) == pytest.approx(down / (up + down), abs=0.01)


@pytest.mark.parametrize(
    ("protocol", "message"),
    [({"name": "deadline"}, "deadline_s"), ({"name": "over-commit"}, "target_updates")],
)
def test_protocol_parameters_are_required(protocol: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=rf"protocol: .*needs {message}"):
        load_scenario("tiny", {"protocol": protocol})
