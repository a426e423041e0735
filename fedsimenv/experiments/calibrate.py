"""Fitting the surrogate trainer to real runs: ``fedsimenv calibrate``'s engine.

K episodes run with real (torch) training under varied actions: each run draws its own selection
probability and mean pruning rate, and every round draws a random selection, pruning rates around
that mean and random bandwidth shares. The last ``max(1, K // 4)`` runs are held out: the curve is
fitted on the others and its error on the held-out runs is reported and stored in the file. The
model costs (FLOPs, upload bits) are measured on the real model at a grid of pruning rates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsimenv.actions import encode_decision
from fedsimenv.config import ScenarioConfig
from fedsimenv.seeding import EpisodeStreams

if TYPE_CHECKING:  # the learning plane (torch) is imported only when a command runs
    from fedsimenv.learning.surrogate import Calibration, CostTable
    from fedsimenv.learning.surrogate_fit import RunRecord

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


def record_run(config: ScenarioConfig, seed: int) -> RunRecord:
    """One real episode under varied random decisions (module docstring), recorded for fitting."""
    from fedsimenv.env import WirelessFLEnv
    from fedsimenv.learning.surrogate import label_coverage, partition_label_counts
    from fedsimenv.learning.surrogate_fit import RoundRecord, RunRecord

    env = WirelessFLEnv(config, trainer="torch")
    _, info = env.reset(seed=seed)
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
    n, rho_max = env.num_devices, config.action.rho_max
    select_probability = rng.uniform(0.15, 1.0)
    mean_rho = rng.uniform(0.0, rho_max)
    rounds: list[RoundRecord] = []
    done = False
    while not done:
        selected = rng.random(n) < select_probability
        if not selected.any():
            selected[rng.integers(n)] = True
        rho = np.clip(mean_rho + 0.15 * rng.standard_normal(n), 0.0, rho_max)
        action = encode_decision(selected, rho, rng.uniform(0.2, 1.0, n), config.action)
        _, _, terminated, truncated, step_info = env.step(action)
        report = env.last_report
        assert report is not None
        idx = np.flatnonzero(report.arrived)
        rounds.append(
            RoundRecord(
                share=share[idx],
                rho=report.pruning_rate[idx],
                coverage=label_coverage(counts[idx].sum(axis=0), reference),
                accuracy=float(step_info["accuracy"]),
                loss=float(step_info["loss"]),
            )
        )
        done = terminated or truncated
    return RunRecord(float(info["accuracy"]), float(info["loss"]), tuple(rounds))


def _record_run(task: tuple[ScenarioConfig, int]) -> RunRecord:
    return record_run(*task)


def calibrate(
    config: ScenarioConfig,
    runs: int,
    seed: int = 0,
    on_run: Callable[[RunRecord], None] | None = None,
    workers: int = 1,
) -> Calibration:
    """Record ``runs`` real episodes (seeds ``seed``, ``seed + 1``, ...) in ``workers`` processes
    (one torch / BLAS thread each), fit on all but the held-out last ``max(1, runs // 4)``, and
    return the calibration with its held-out error. The result does not depend on ``workers``."""
    from fedsimenv.experiments.jobs import map_in_workers
    from fedsimenv.learning.surrogate import Calibration, learning_fingerprint
    from fedsimenv.learning.surrogate_fit import curve_error, fit_curve

    if runs < 2:
        raise ValueError(f"--runs must be >= 2 (at least one run to fit and one held out), got {runs}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    config = config.model_copy(update={"trainer": "torch"})
    records = map_in_workers(_record_run, [(config, seed + i) for i in range(runs)], workers, on_run)
    held_out = max(1, runs // 4)
    fit_runs, test_runs = records[:-held_out], records[-held_out:]
    curve = fit_curve(fit_runs)
    error: dict[str, Any] = {
        "scenario": config.name,
        "runs_fitted": len(fit_runs),
        "runs_held_out": len(test_runs),
        "rounds_per_run": config.episode.max_rounds,
        "seed": seed,
        "fit": curve_error(curve, fit_runs),
        "held_out": curve_error(curve, test_runs),
    }
    return Calibration(
        fingerprint=learning_fingerprint(config.learning),
        curve=curve,
        costs=measure_costs(config, seed),
        error=error,
    )
