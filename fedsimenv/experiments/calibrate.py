"""Fitting the surrogate trainer to real runs: ``fedsimenv calibrate``'s engine.

K episodes run with real (torch) training under the decisions an RL policy may visit, not only
those of good heuristics: run i follows region ``REGIONS[i % len(REGIONS)]`` (:func:`region_action`):

* ``random``: the run draws a selection probability and a mean pruning rate, each round a random
  selection, pruning rates around that mean and random bandwidth shares;
* ``degenerate``: the collapse the issue reports, one device (the strongest channel) at ``rho_max``;
* ``few-devices``: one to three random devices, random pruning rates;
* ``high-rho``: random selections, pruning rates in ``[0.6 rho_max, rho_max]``;
* ``extreme``: each round one device or all of them, each at rho 0 or ``rho_max``;
* ``skewed-labels``: the devices whose data is dominated by one label (drawn per run), unpruned:
  rounds of low label coverage.

Held out: the last ``len(REGIONS)`` runs (one per region) when ``K >= 2 len(REGIONS)``, else the last
``max(1, K // 4)``; the curve is fitted on the others and its error on the held-out runs, overall
and per region (:func:`~fedsimenv.learning.surrogate_fit.error_by_region`), is stored in the file.
The model costs (FLOPs, upload bits) are measured on the real model at a grid of pruning rates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsimenv.actions import encode_decision
from fedsimenv.config import ScenarioConfig
from fedsimenv.seeding import EpisodeStreams

if TYPE_CHECKING:  # the learning plane (torch) is imported only when a command runs
    from numpy.typing import NDArray

    from fedsimenv.learning.surrogate import Calibration, CostTable
    from fedsimenv.learning.surrogate_fit import RunRecord

#: Decision regimes of the calibration runs (module docstring), assigned round-robin.
REGIONS = ("random", "degenerate", "few-devices", "high-rho", "extreme", "skewed-labels")
#: Pruning rates at which the real model's cost is measured.
COST_GRID_RHO = tuple(float(r) for r in np.round(np.linspace(0.0, 0.99, 34), 4))


def measure_costs(config: ScenarioConfig, seed: int) -> CostTable:
    """The real trainer's cost (``Trainer.cost_at``) at :data:`COST_GRID_RHO`."""
    from fedsimenv.learning.surrogate import CostTable
    from fedsimenv.learning.trainer import TRAINERS

    trainer = TRAINERS.get("torch")(config.learning, config.cell.num_devices)
    trainer.reset(EpisodeStreams(np.random.SeedSequence(seed)))
    costs = [trainer.cost_at(rho) for rho in COST_GRID_RHO]
    return CostTable(
        rho=COST_GRID_RHO,
        forward_flops_per_sample=tuple(c.forward_flops_per_sample for c in costs),
        upload_bits=tuple(c.upload_bits for c in costs),
        kept_params=tuple(float(c.kept_params) for c in costs),
        total_params=costs[0].total_params,
        download_bits=trainer.download_bits(),
    )


def region_action(
    region: str,
    rng: np.random.Generator,
    draws: dict[str, Any],
    gains: NDArray[np.float64],
    rho_max: float,
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]]:
    """One round's ``(selected, rho, bandwidth weights)`` in ``region`` (module docstring); ``draws``
    holds the run's own draws (made on its first call), ``gains`` the devices' channel gains."""
    n = len(gains)
    weights = rng.uniform(0.2, 1.0, n)
    if region == "random":
        draws.setdefault("p", rng.uniform(0.15, 1.0))
        draws.setdefault("rho", rng.uniform(0.0, rho_max))
        selected = rng.random(n) < draws["p"]
        rho = np.clip(draws["rho"] + 0.15 * rng.standard_normal(n), 0.0, rho_max)
    elif region == "degenerate":
        selected = np.arange(n) == int(np.argmax(gains))
        rho, weights = np.full(n, rho_max), np.ones(n)
    elif region == "few-devices":
        selected = np.zeros(n, dtype=bool)
        selected[rng.choice(n, size=min(n, int(rng.integers(1, 4))), replace=False)] = True
        rho = rng.uniform(0.0, rho_max, n)
    elif region == "high-rho":
        selected = rng.random(n) < rng.uniform(0.2, 1.0)
        rho = rng.uniform(0.6 * rho_max, rho_max, n)
    elif region == "extreme":
        selected = np.ones(n, dtype=bool) if rng.random() < 0.5 else np.arange(n) == rng.integers(n)
        rho = np.where(rng.random(n) < 0.5, 0.0, rho_max)
    elif region == "skewed-labels":
        selected = np.asarray(draws["skewed"], dtype=bool)
        rho = np.zeros(n)
    else:
        raise ValueError(f"unknown calibration region {region!r}; allowed values: {', '.join(REGIONS)}")
    if not selected.any():
        selected[rng.integers(n)] = True
    return selected, rho, weights


def _skewed_devices(counts: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.bool_]:
    """The devices whose most frequent label is one label drawn among those that lead a device."""
    leading = np.argmax(counts, axis=1)
    label = rng.choice(np.unique(leading))
    return np.asarray(leading == label)


def record_run(
    config: ScenarioConfig,
    seed: int,
    region: str = "random",
    decide: Callable[[Any, Any, Any], Any] | None = None,
) -> RunRecord:
    """One real episode under ``region``'s decisions (or ``decide(obs, info, env)``'s, recorded as
    region ``policy``), recorded for fitting."""
    from fedsimenv.env import WirelessFLEnv
    from fedsimenv.learning.surrogate import label_coverage, partition_label_counts
    from fedsimenv.learning.surrogate_fit import RoundRecord, RunRecord

    env = WirelessFLEnv(config, trainer="torch")
    obs, info = env.reset(seed=seed)
    first = info
    assert env.episode_streams is not None
    counts = partition_label_counts(config.learning, env.num_devices, env.episode_streams)
    if not np.array_equal(counts.sum(axis=1), env.trainer.num_samples):
        raise RuntimeError(
            "the surrogate's data partition differs from the torch trainer's: the learning plane "
            "changed how it splits data; update fedsimenv.learning.surrogate.partition_label_counts"
        )
    share = counts.sum(axis=1) / counts.sum()
    reference = counts.sum(axis=0)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA11B]))
    draws: dict[str, Any] = {"skewed": _skewed_devices(counts, rng)}
    rounds: list[RoundRecord] = []
    done = False
    while not done:
        if decide is None:
            gains = np.asarray(env.system_view().channel_gain_linear, dtype=np.float64)
            selected, rho, weights = region_action(region, rng, draws, gains, config.action.rho_max)
            action = encode_decision(selected, rho, weights, config.action)
        else:
            action = decide(obs, info, env)
        obs, _, terminated, truncated, info = env.step(action)
        report = env.last_report
        assert report is not None
        idx = np.flatnonzero(report.arrived)
        rounds.append(
            RoundRecord(
                share=share[idx],
                rho=report.pruning_rate[idx],
                coverage=label_coverage(counts[idx].sum(axis=0), reference),
                accuracy=float(info["accuracy"]),
                loss=float(info["loss"]),
            )
        )
        done = terminated or truncated
    name = "policy" if decide is not None else region
    return RunRecord(float(first["accuracy"]), float(first["loss"]), tuple(rounds), name)


def held_out_count(runs: int) -> int:
    """How many of ``runs`` (the last ones) are held out (module docstring)."""
    return len(REGIONS) if runs >= 2 * len(REGIONS) else max(1, runs // 4)


def _record_run(task: tuple[ScenarioConfig, int, str]) -> RunRecord:
    return record_run(*task)


def fit_calibration(
    config: ScenarioConfig,
    fit_runs: Sequence[RunRecord],
    test_runs: Sequence[RunRecord],
    seed: int,
    noise: bool = False,
    costs: CostTable | None = None,
) -> Calibration:
    """Fit on ``fit_runs``; the error on both sets (overall and per region) goes in the file."""
    from fedsimenv.learning.surrogate import Calibration, learning_fingerprint
    from fedsimenv.learning.surrogate_fit import curve_error, error_by_region, fit_curve

    curve = fit_curve(fit_runs, noise=noise)
    error: dict[str, Any] = {
        "scenario": config.name,
        "runs_fitted": len(fit_runs),
        "runs_held_out": len(test_runs),
        "rounds_per_run": config.episode.max_rounds,
        "seed": seed,
        "regions": sorted({run.region for run in fit_runs}),
        "fit": curve_error(curve, fit_runs),
        "held_out": curve_error(curve, test_runs),
        "held_out_by_region": error_by_region(curve, test_runs),
    }
    return Calibration(
        fingerprint=learning_fingerprint(config.learning),
        curve=curve,
        costs=measure_costs(config, seed) if costs is None else costs,
        error=error,
    )


def calibrate(
    config: ScenarioConfig,
    runs: int,
    seed: int = 0,
    on_run: Callable[[RunRecord], None] | None = None,
    workers: int = 1,
    noise: bool = False,
) -> tuple[Calibration, list[RunRecord]]:
    """Record ``runs`` real episodes (seeds ``seed``, ``seed + 1``, ..., regions round-robin) in
    ``workers`` processes (one torch / BLAS thread each), fit on all but the held-out last
    :func:`held_out_count`, and return the calibration with its held-out error, and the records.
    The result does not depend on ``workers``."""
    from fedsimenv.experiments.jobs import map_in_workers

    if runs < 2:
        raise ValueError(f"--runs must be >= 2 (at least one run to fit and one held out), got {runs}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    config = config.model_copy(update={"trainer": "torch"})
    tasks = [(config, seed + i, REGIONS[i % len(REGIONS)]) for i in range(runs)]
    records = map_in_workers(_record_run, tasks, workers, on_run)
    held_out = held_out_count(runs)
    return fit_calibration(config, records[:-held_out], records[-held_out:], seed, noise), records
