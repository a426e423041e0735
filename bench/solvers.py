"""Solve time of the joint pruning/bandwidth/selection solvers vs the number of devices.

For N = 10, 100, 1,000 random macro-cell instances (10% deep fades): the closed form (fixed set:
the KKT solve of the set the joint solver selects; joint: with the nested-set selection), the cvxpy
formulation's first solve of that fixed set (compilation included) and its DPP re-solve with new
parameter values. Medians over ``--repeats`` instances. With ``--agreement K`` it also prints the
worst closed-form vs cvxpy discrepancy over K random instances with N in [2, 200].

    python -m bench.solvers [--repeats 3] [--agreement 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from agents.optimal import JointProblem, allocate_fixed, solve_closed_form
from agents.optimal.cvx import CvxJointSolver
from bench.report import Collected, Figure, Ratio, figure

NOISE_PSD_W_PER_HZ = 10 ** (-174 / 10) / 1000


def random_problem(n: int, rng: np.random.Generator) -> JointProblem:
    gain_db = rng.uniform(-130.0, -80.0, n)
    deep = rng.random(n) < 0.1
    gain_db[deep] -= rng.uniform(40.0, 80.0, int(deep.sum()))
    weight = rng.uniform(0.5, 2.0, n)
    return JointProblem(
        snr_bandwidth_hz=0.01 * 10 ** (gain_db / 10) / NOISE_PSD_W_PER_HZ,
        compute_latency_s=rng.uniform(0.05, 0.5, n),
        upload_bits=3e5 * rng.uniform(0.5, 2.0, n),
        weight=weight / weight.sum(),
        bandwidth_hz=20e6,
        deadline_s=float(rng.uniform(0.4, 1.0)),
        downlink_time_s=0.01,
    )


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def timings(n: int, repeats: int, rng: np.random.Generator) -> dict[str, float]:
    """Median ms of each solver over ``repeats`` random instances with ``n`` devices."""
    return {key: statistics.median(values) for key, values in timing_samples(n, repeats, rng).items()}


def timing_samples(n: int, repeats: int, rng: np.random.Generator) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {
        "closed fixed": [],
        "closed joint": [],
        "cvx first": [],
        "cvx re-solve": [],
    }
    problems = [random_problem(n, rng) for _ in range(repeats + 1)]
    sets = []
    for problem in problems:
        joint = solve_closed_form(problem)
        sets.append(problem.subset(np.flatnonzero(joint.selected)))
    capacity = max(s.num_devices for s in sets)
    for problem, subset in zip(problems[:repeats], sets[:repeats], strict=True):
        start = time.perf_counter()
        solve_closed_form(problem)
        rows["closed joint"].append(_ms(start))
        start = time.perf_counter()
        allocate_fixed(subset)
        rows["closed fixed"].append(_ms(start))
        start = time.perf_counter()
        solver = CvxJointSolver(capacity)
        solver.allocate_fixed(subset)
        rows["cvx first"].append(_ms(start))
        # DPP re-solve: same compiled problem, another instance's parameter values
        start = time.perf_counter()
        solver.allocate_fixed(sets[-1])
        rows["cvx re-solve"].append(_ms(start))
    return rows


def agreement(count: int, rng: np.random.Generator) -> None:
    worst_obj = worst_rho = worst_b = 0.0
    fallbacks = different_sets = 0
    for _ in range(count):
        n = int(rng.integers(2, 201))
        problem = random_problem(n, rng)
        closed, cvx = solve_closed_form(problem), CvxJointSolver(n).solve(problem)
        if cvx.fallback_reason:
            fallbacks += 1
            continue
        worst_obj = max(worst_obj, abs(closed.objective - cvx.objective) / max(closed.objective, 1e-6))
        if not np.array_equal(closed.selected, cvx.selected):
            different_sets += 1
            continue
        worst_rho = max(worst_rho, float(np.max(np.abs(closed.pruning_rate - cvx.pruning_rate))))
        if closed.multiplier_per_hz > 0:
            gap = float(np.max(np.abs(closed.bandwidth_hz - cvx.bandwidth_hz))) / problem.bandwidth_hz
            worst_b = max(worst_b, gap)
    print(
        f"agreement over {count} instances (N in [2, 200]): worst objective rel {worst_obj:.2e}, "
        f"rho abs {worst_rho:.2e}, b / B {worst_b:.2e}; cvxpy fallbacks {fallbacks}, "
        f"different selections {different_sets}"
    )


SECTION = "Solvers (joint pruning/bandwidth/selection)"


def collect(repeats: int = 3, quick: bool = False) -> Collected:
    """ms per solve at N = 100 and 1,000: closed form (fixed set and joint) and cvxpy (first, re-solve)."""
    rng = np.random.default_rng(0)
    sizes = (10,) if quick else (100, 1000)
    repeats = 1 if quick else repeats
    figures: list[Figure] = []
    ratios: list[Ratio] = []
    for n in sizes:
        rows = timing_samples(n, repeats, rng)
        by_name = {key: figure(SECTION, f"{key}, N={n}", "ms/solve", values) for key, values in rows.items()}
        figures += by_name.values()
        ratios.append(
            Ratio(
                f"cvxpy re-solve / closed form (fixed set), N={n}",
                by_name["cvx re-solve"],
                by_name["closed fixed"],
            )
        )
    return figures, ratios, []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agreement", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(
        f"{'N':>6} {'closed fixed ms':>16} {'closed joint ms':>16} "
        f"{'cvx first ms':>13} {'cvx re-solve ms':>16}"
    )
    for n in (10, 100, 1000):
        t = timings(n, args.repeats, rng)
        print(
            f"{n:>6} {t['closed fixed']:>16.2f} {t['closed joint']:>16.2f} "
            f"{t['cvx first']:>13.1f} {t['cvx re-solve']:>16.1f}"
        )
    if args.agreement:
        agreement(args.agreement, rng)


if __name__ == "__main__":
    main()
