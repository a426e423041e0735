"""The joint pruning/bandwidth/selection solvers against independent references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import brentq

from agents.optimal import (
    JointProblem,
    allocate_fixed,
    bandwidth_for_rate,
    constraint_violation,
    latency_s,
    min_bandwidth_hz,
    rate_bps,
    select_nested,
    solve_closed_form,
)
from agents.optimal.cvx import CvxJointSolver, min_bandwidth_by_bisection
from agents.optimal.problem import FloatArray

NOISE_PSD_W_PER_HZ = 10 ** (-174 / 10) / 1000


def random_problem(
    num_devices: int, rng: np.random.Generator, deep_fade_fraction: float = 0.1
) -> JointProblem:
    """A macro-cell-like instance: gains -130..-80 dB, some devices 40-80 dB deeper (deep fades)."""
    gain_db = rng.uniform(-130.0, -80.0, num_devices)
    deep = rng.random(num_devices) < deep_fade_fraction
    gain_db[deep] -= rng.uniform(40.0, 80.0, int(deep.sum()))
    snr_bandwidth_hz = 0.01 * 10 ** (gain_db / 10) / NOISE_PSD_W_PER_HZ
    weight = rng.uniform(0.5, 2.0, num_devices)
    return JointProblem(
        snr_bandwidth_hz=snr_bandwidth_hz,
        compute_latency_s=rng.uniform(0.05, 0.5, num_devices),
        upload_bits=3e5 * rng.uniform(0.5, 2.0, num_devices),
        weight=weight / weight.sum(),
        bandwidth_hz=20e6,
        deadline_s=float(rng.uniform(0.4, 1.0)),
        downlink_time_s=0.01,
        rho_max=0.9,
        exclusion_penalty=float(rng.choice([0.9, 1.0, 2.0])),
    )


def _assert_feasible(problem: JointProblem, allocation_violation: dict[str, float]) -> None:
    assert allocation_violation["latency"] <= 1e-9
    assert allocation_violation["bandwidth"] <= 1e-12
    assert allocation_violation["rho_low"] <= 0
    assert allocation_violation["rho_high"] <= 1e-12
    assert allocation_violation["unselected_bandwidth"] == 0


def _compare(seed: int, count: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    worst = {"objective": 0.0, "rho": 0.0, "bandwidth": 0.0}
    fallbacks = same_set = 0
    deep_faded_seen = 0
    for _ in range(count):
        n = int(rng.integers(2, 201))
        problem = random_problem(n, rng)
        deep_faded_seen += int(np.sum(~np.isfinite(min_bandwidth_hz(problem, problem.rho_max))))
        closed = solve_closed_form(problem)
        cvx = CvxJointSolver(n).solve(problem)
        _assert_feasible(problem, constraint_violation(problem, closed))
        _assert_feasible(problem, constraint_violation(problem, cvx))
        if cvx.fallback_reason:
            fallbacks += 1
            continue
        rel = abs(closed.objective - cvx.objective) / max(closed.objective, 1e-6)  # J = 0 happens
        worst["objective"] = max(worst["objective"], rel)
        if np.array_equal(closed.selected, cvx.selected):
            same_set += 1
            worst["rho"] = max(worst["rho"], float(np.max(np.abs(closed.pruning_rate - cvx.pruning_rate))))
            if closed.multiplier_per_hz > 0:  # b is unique only when the budget binds
                gap = np.max(np.abs(closed.bandwidth_hz - cvx.bandwidth_hz)) / problem.bandwidth_hz
                worst["bandwidth"] = max(worst["bandwidth"], float(gap))
    assert deep_faded_seen > 0
    assert fallbacks <= 0.05 * count, fallbacks
    assert same_set >= 0.95 * (count - fallbacks)
    return worst


@pytest.mark.parametrize(("seed", "count"), [(7, 80), pytest.param(20240607, 200, marks=pytest.mark.slow)])
def test_closed_form_and_cvxpy_agree_on_random_instances(seed: int, count: int) -> None:
    # 80 instances of 2-200 devices in the default run; 200 per seed under -m slow.
    worst = _compare(seed=seed, count=count)
    assert worst["objective"] <= 1e-6, worst
    assert worst["rho"] <= 1e-4, worst
    assert worst["bandwidth"] <= 1e-4, worst


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(101, 106))
def test_closed_form_and_cvxpy_agree_on_a_large_sweep(seed: int) -> None:
    worst = _compare(seed=seed, count=200)
    assert worst["objective"] <= 1e-6, worst
    assert worst["rho"] <= 1e-4, worst
    assert worst["bandwidth"] <= 1e-4, worst


def test_closed_form_matches_a_high_precision_reference_on_fixed_sets() -> None:
    # Independent of both solvers' machinery: per-device brentq on the KKT condition written with
    # central differences of f, and brentq on lambda for the budget (slow, scalar, near-exact).
    rng = np.random.default_rng(17)
    checked = 0
    for _ in range(12):
        problem = random_problem(int(rng.integers(2, 25)), rng, deep_fade_fraction=0.0)
        members = np.flatnonzero(solve_closed_form(problem).selected)
        if members.size < 2:
            continue
        sub = problem.subset(members)
        result = allocate_fixed(sub)
        assert result is not None
        if not result.multiplier_per_hz > 0:
            continue
        lo = np.minimum(min_bandwidth_hz(sub, sub.rho_max), sub.bandwidth_hz)
        hi = np.minimum(min_bandwidth_hz(sub, 0.0), sub.bandwidth_hz)

        def marginal(k: int, b: float, sub: JointProblem = sub) -> float:
            def f(x: float) -> float:
                r = float(rate_bps(x, sub.snr_bandwidth_hz[k]))
                return 1 - sub.budget_s / float(sub.compute_latency_s[k] + sub.upload_bits[k] / r)

            h = b * 1e-5
            return float(sub.weight[k] * (f(b + h) - f(b - h)) / (2 * h))

        def share(lam: float, lo: FloatArray = lo, hi: FloatArray = hi) -> FloatArray:
            out = np.empty(len(lo))
            for k in range(len(lo)):
                if marginal(k, lo[k]) + lam >= 0:
                    out[k] = lo[k]
                elif marginal(k, hi[k] * (1 - 1e-9)) + lam <= 0:
                    out[k] = hi[k]
                else:
                    out[k] = brentq(
                        lambda b, k=k: marginal(k, b) + lam, lo[k], hi[k] * (1 - 1e-9), rtol=1e-13
                    )
            return out

        lam = brentq(
            lambda x, budget=sub.bandwidth_hz: float(share(np.exp(x)).sum()) - budget,
            np.log(1e-20),
            np.log(1e-3),
            rtol=1e-14,
        )
        reference = np.clip(
            1
            - sub.budget_s
            / (sub.compute_latency_s + sub.upload_bits / rate_bps(share(np.exp(lam)), sub.snr_bandwidth_hz)),
            0,
            sub.rho_max,
        )
        j_ref = float(sub.weight @ reference)
        assert result.objective == pytest.approx(j_ref, rel=1e-9, abs=1e-12)
        assert result.multiplier_per_hz == pytest.approx(np.exp(lam), rel=1e-6)
        checked += 1
    assert checked >= 5


def test_lambert_w_bandwidth_matches_a_root_finder() -> None:
    rng = np.random.default_rng(0)
    a = 10 ** rng.uniform(3, 12, 200)
    rate = a / np.log(2) * rng.uniform(1e-6, 0.999, 200)  # up to 99.9% of the rate's limit
    b = bandwidth_for_rate(rate, a)
    for k in range(200):
        ref = brentq(lambda x, k=k: float(rate_bps(x, a[k])) - rate[k], 1e-3, 1e30, xtol=1e-300, rtol=1e-15)
        assert b[k] == pytest.approx(ref, rel=1e-9)
    assert np.isinf(bandwidth_for_rate(a[0] / np.log(2) * 1.001, a[0]))
    assert bandwidth_for_rate(0.0, 1e6) == 0.0
    problem = random_problem(30, rng)
    np.testing.assert_allclose(
        min_bandwidth_by_bisection(problem, 0.9), min_bandwidth_hz(problem, 0.9), rtol=1e-12
    )


def test_kkt_conditions_hold_at_the_closed_form_point() -> None:
    rng = np.random.default_rng(3)
    checked_interior = 0
    for _ in range(30):
        problem = random_problem(int(rng.integers(2, 60)), rng)
        result = solve_closed_form(problem)
        if not result.selected.any():
            continue
        sub = problem.subset(np.flatnonzero(result.selected))
        b = result.bandwidth_hz[result.selected]
        rho = result.pruning_rate[result.selected]
        lam = result.multiplier_per_hz
        t = sub.budget_s

        def f(x: FloatArray, sub: JointProblem = sub, t: float = t) -> FloatArray:
            return 1 - t / (sub.compute_latency_s + sub.upload_bits / rate_bps(x, sub.snr_bandwidth_hz))

        h = b * 1e-6
        grad = sub.weight * (f(b + h) - f(b - h)) / (2 * h)  # independent of the solver's f'
        assert lam >= 0
        if lam > 0:
            assert b.sum() == pytest.approx(problem.bandwidth_hz, rel=1e-10)
        interior = (rho > 1e-7) & (rho < problem.rho_max - 1e-7)
        np.testing.assert_allclose(grad[interior] + lam, 0, atol=1e-5 * lam)
        checked_interior += int(interior.sum())
        at_min = rho >= problem.rho_max - 1e-12
        assert np.all(grad[at_min] + lam >= -1e-5 * lam)  # would like less bandwidth, cannot
        unpruned = rho <= 0
        # at rho = 0 extra bandwidth is worthless; the left derivative is still <= -lambda
        left = sub.weight * (f(b) - f(b - h)) / h
        assert np.all(left[unpruned] + lam <= 1e-5 * max(lam, 1e-30))
    assert checked_interior > 50


def test_equal_devices_get_equal_shares() -> None:
    n = 7
    problem = JointProblem(
        snr_bandwidth_hz=np.full(n, 5e8),
        compute_latency_s=np.full(n, 0.2),
        upload_bits=np.full(n, 1e7),
        weight=np.full(n, 1 / n),
        bandwidth_hz=10e6,
        deadline_s=0.5,
    )
    for result, tol in ((solve_closed_form(problem), 1e-12), (CvxJointSolver(n).solve(problem), 1e-5)):
        assert result.selected.all()
        assert 0 < result.pruning_rate[0] < problem.rho_max  # the budget binds: shares are unique
        np.testing.assert_allclose(result.bandwidth_hz, 10e6 / n, rtol=tol)
        np.testing.assert_allclose(result.pruning_rate, result.pruning_rate[0], atol=tol)


def test_hand_computed_two_device_case() -> None:
    # Device 1: a = 2e5 Hz, A = 0.5 s, L = 1e5 bit; unpruned it needs rate L / (T - A) = 2e5 bit/s,
    # which b log2(1 + a/b) gives at b = a = 2e5 Hz (log2(2) = 1). Device 2 gets the other 8e5 Hz, at
    # a = 8e5 Hz its rate is 8e5 bit/s, upload 1.6e6 / 8e5 = 2 s, so rho_2 = 1 - 1 / (0.5 + 2) = 0.6.
    # With w = (0.9, 0.1) the multiplier is too small to move device 1 off its unpruned point.
    problem = JointProblem(
        snr_bandwidth_hz=np.array([2e5, 8e5]),
        compute_latency_s=np.array([0.5, 0.5]),
        upload_bits=np.array([1e5, 1.6e6]),
        weight=np.array([0.9, 0.1]),
        bandwidth_hz=1e6,
        deadline_s=1.0,
    )
    for result in (solve_closed_form(problem), CvxJointSolver(2).solve(problem)):
        np.testing.assert_allclose(result.bandwidth_hz, [2e5, 8e5], rtol=1e-6)
        np.testing.assert_allclose(result.pruning_rate, [0.0, 0.6], atol=1e-7)
        assert result.objective == pytest.approx(0.06, rel=1e-6)
        np.testing.assert_allclose(
            latency_s(problem, result.pruning_rate, result.bandwidth_hz), 1.0, rtol=1e-6
        )


def test_infeasible_devices_are_deselected_never_violated() -> None:
    base = random_problem(5, np.random.default_rng(5), deep_fade_fraction=0.0)
    snr = base.snr_bandwidth_hz.copy()
    snr[2] = 1e-3  # a deep fade: full-band rate ~1.4e-3 bit/s
    compute = base.compute_latency_s.copy()
    compute[4] = 100.0  # compute alone too slow even at rho_max
    problem = JointProblem(
        snr,
        compute,
        base.upload_bits,
        base.weight,
        base.bandwidth_hz,
        base.deadline_s,
        base.downlink_time_s,
        base.rho_max,
        base.exclusion_penalty,
    )
    for result in (solve_closed_form(problem), CvxJointSolver(5).solve(problem)):
        assert not result.selected[2] and not result.selected[4]
        _assert_feasible(problem, constraint_violation(problem, result))
        assert result.objective >= problem.exclusion_penalty * (problem.weight[2] + problem.weight[4])


def test_local_selection_search_matches_exhaustive_scan() -> None:
    rng = np.random.default_rng(11)
    for _ in range(40):
        problem = random_problem(int(rng.integers(2, 40)), rng)
        b_min = min_bandwidth_hz(problem, problem.rho_max)
        local = select_nested(problem, allocate_fixed, b_min, search="local")
        exhaustive = select_nested(problem, allocate_fixed, b_min, search="exhaustive")
        assert local.objective == pytest.approx(exhaustive.objective, rel=1e-12)


def test_nested_selection_is_optimal_over_all_subsets_on_small_cases() -> None:
    # Brute force over every subset (not only prefixes) on tiny instances where the bandwidth is
    # tight: the nested family must contain the best set in these cases.
    rng = np.random.default_rng(13)
    hits = total = 0
    for _ in range(15):
        problem = random_problem(5, rng, deep_fade_fraction=0.2)
        best = problem.exclusion_penalty * problem.weight.sum()
        for size in range(1, 6):
            for members in itertools.combinations(range(5), size):
                sub = allocate_fixed(problem.subset(np.array(members)))
                if sub is not None:
                    excluded = np.setdiff1d(np.arange(5), members)
                    best = min(
                        best, sub.objective + problem.exclusion_penalty * problem.weight[excluded].sum()
                    )
        total += 1
        hits += solve_closed_form(problem).objective <= best * (1 + 1e-9)
    assert hits >= 0.9 * total  # a heuristic family: say how often it is globally optimal


def test_bad_input_names_the_field() -> None:
    kwargs = dict(
        snr_bandwidth_hz=[1e6],
        compute_latency_s=[0.1],
        upload_bits=[1e5],
        weight=[1.0],
        bandwidth_hz=1e6,
        deadline_s=1.0,
    )
    with pytest.raises(ValueError, match="compute_latency_s"):
        JointProblem(**{**kwargs, "compute_latency_s": [-1.0]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exclusion_penalty"):
        JointProblem(**{**kwargs, "exclusion_penalty": 0.5})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadline_s"):
        JointProblem(**{**kwargs, "deadline_s": 0.0})  # type: ignore[arg-type]
