"""Min-max latency, Yang-style energy and Chen-style assignment against hand-checked references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from agents.allocation import minmax_latency_bandwidth
from agents.energy import EnergyProblem, minimise_energy
from agents.optimal.problem import FloatArray, rate_bps
from agents.packet_error import assign_resource_blocks, packet_error_rate, pair_values


def _latency(
    a: FloatArray, compute: FloatArray, bits: FloatArray, b: FloatArray, rho: float, t_dl: float
) -> FloatArray:
    return np.asarray(t_dl + (1 - rho) * (compute + bits / rate_bps(b, a)))


def test_minmax_latency_meets_every_constraint_and_is_tight() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 80))
        a = 10 ** rng.uniform(6, 12, n)
        compute = rng.uniform(0.01, 0.5, n)
        bits = rng.uniform(1e5, 1e6, n)
        rho = float(rng.uniform(0, 0.8))
        result = minmax_latency_bandwidth(a, compute, bits, 20e6, rho, downlink_time_s=0.01)
        t = result.round_latency_s
        assert result.bandwidth_hz.sum() <= 20e6 * (1 + 1e-12)
        assert np.all(_latency(a, compute, bits, result.bandwidth_hz, rho, 0.01) <= t * (1 + 1e-9))
        # Independent optimality check: 1e-6 below T the least bandwidths (bisection) exceed B.
        lower = t * (1 - 1e-6)
        need = np.empty(n)
        for k in range(n):
            lo, hi = 0.0, 1e12
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                ok = (
                    _latency(a[k : k + 1], compute[k : k + 1], bits[k : k + 1], np.array([mid]), rho, 0.01)[0]
                    <= lower
                )
                lo, hi = (lo, mid) if ok else (mid, hi)
            need[k] = hi
        assert need.sum() > 20e6


def test_minmax_equal_devices_get_equal_shares_and_hand_case() -> None:
    result = minmax_latency_bandwidth(np.full(4, 1e6), np.full(4, 0.1), np.full(4, 1e6), 4e6)
    np.testing.assert_allclose(result.bandwidth_hz, 1e6, rtol=1e-12)
    # Hand case: a = b = 1 MHz gives 1 Mbit/s, so 1 Mbit takes 1 s, plus 0.1 s of compute.
    assert result.round_latency_s == pytest.approx(1.1, rel=1e-12)


def test_minmax_bad_input_names_the_field() -> None:
    with pytest.raises(ValueError, match="bandwidth_hz"):
        minmax_latency_bandwidth([1e6], [0.1], [1e5], 0.0)
    with pytest.raises(ValueError, match="pruning_rate"):
        minmax_latency_bandwidth([1e6], [0.1], [1e5], 1e6, pruning_rate=1.0)


def _energy_problem(n: int, rng: np.random.Generator, budget_s: float = 0.5) -> EnergyProblem:
    return EnergyProblem(
        channel_gain_linear=10 ** (rng.uniform(-115, -95, n) / 10),
        noise_psd_w_per_hz=4e-21,
        tx_power_max_w=np.full(n, 0.01),
        compute_cycles=rng.uniform(1e8, 2e8, n),
        cpu_freq_max_hz=np.full(n, 2e9),
        kappa=1e-28,
        upload_bits=np.full(n, 3e5),
        bandwidth_hz=20e6,
        latency_budget_s=budget_s,
    )


def test_energy_single_device_matches_a_grid_search() -> None:
    problem = _energy_problem(1, np.random.default_rng(1))
    result = minimise_energy(problem)
    assert result.bandwidth_hz[0] == pytest.approx(20e6, rel=1e-6)  # alone it takes the whole band
    # Brute force over p on a fine grid, with f the least frequency meeting the budget.
    g, n0, bits, cycles = problem.channel_gain_linear[0], 4e-21, 3e5, problem.compute_cycles[0]
    best = math.inf
    for p in np.linspace(1e-6, 0.01, 200_001):
        upload = bits / (20e6 * math.log2(1 + p * g / (n0 * 20e6)))
        if upload >= 0.5 - cycles / 2e9:
            continue
        f = cycles / (0.5 - upload)
        best = min(best, 1e-28 * cycles * f**2 + p * upload)
    assert result.energy_j == pytest.approx(best, rel=1e-4)
    assert result.energy_j <= best * (1 + 1e-9)


def test_energy_meets_constraints_beats_the_naive_point_and_splits_equal_devices() -> None:
    rng = np.random.default_rng(2)
    problem = _energy_problem(8, rng)
    result = minimise_energy(problem)
    assert result.bandwidth_hz.sum() <= 20e6 * (1 + 1e-9)
    assert np.all(
        problem.latency_s(result.bandwidth_hz, result.cpu_freq_hz, result.tx_power_w) <= 0.5 * (1 + 1e-9)
    )
    assert np.all(result.cpu_freq_hz <= 2e9 * (1 + 1e-12)) and np.all(result.tx_power_w <= 0.01 * (1 + 1e-12))
    naive = problem.energy_j(np.full(8, 2.5e6), np.full(8, 2e9), np.full(8, 0.01)).sum()
    assert result.energy_j < naive
    twins = EnergyProblem(
        np.full(2, 1e-10),
        4e-21,
        np.full(2, 0.01),
        np.full(2, 1.5e8),
        np.full(2, 2e9),
        1e-28,
        np.full(2, 3e5),
        20e6,
        0.5,
    )
    split = minimise_energy(twins)
    np.testing.assert_allclose(split.bandwidth_hz, 10e6, rtol=1e-4)
    with pytest.raises(ValueError, match="latency_budget_s"):
        EnergyProblem(
            np.full(2, 1e-10),
            4e-21,
            np.full(2, 0.01),
            np.full(2, 1e8),
            np.full(2, 2e9),
            1e-28,
            np.full(2, 3e5),
            20e6,
            -1.0,
        )


def test_packet_error_rate_hand_value() -> None:
    # m (I + B N0) / (p g) = 0.023 * (0 + 1e6 * 1e-20) / (1e-2 * 1e-12) = 0.023 -> 1 - e^-0.023
    per = packet_error_rate(1e-2, 1e-12, 0.0, 1e-20, 1e6, 0.023)
    assert float(per) == pytest.approx(1 - math.exp(-0.023), rel=1e-12)


def test_chen_pairs_respect_delay_and_energy_and_hungarian_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = r = 4
        samples = rng.integers(50, 200, n)
        gain = 10 ** (rng.uniform(-115, -95, n) / 10)
        interference = rng.uniform(0, 1e-13, r)
        compute_t, compute_e = rng.uniform(0.05, 0.2, n), rng.uniform(0.01, 0.05, n)
        delay, energy = 0.5, 0.06
        power, value = pair_values(
            samples, gain, 0.01, compute_t, compute_e, 3e5, interference, 4e-21, 5e6, delay, energy
        )
        feasible = value > 0
        snr = power * gain[:, None] / (interference[None, :] + 5e6 * 4e-21)
        with np.errstate(divide="ignore"):
            upload = np.where(feasible, 3e5 / (5e6 * np.log2(1 + snr)), 0.0)
        assert np.all((compute_t[:, None] + upload)[feasible] <= delay * (1 + 1e-9))
        assert np.all((compute_e[:, None] + power * upload)[feasible] <= energy * (1 + 1e-9))
        assert np.all(power <= 0.01 * (1 + 1e-12))
        result = assign_resource_blocks(power, value)
        brute = max(sum(value[k, perm[k]] for k in range(n)) for perm in itertools.permutations(range(r)))
        assert result.expected_samples == pytest.approx(brute, rel=1e-12), trial
        used = result.rb_of_device[result.rb_of_device >= 0]
        assert len(set(used.tolist())) == len(used)
