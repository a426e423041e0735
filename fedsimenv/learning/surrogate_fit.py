"""Fitting the surrogate's learning curve to real runs (pure functions over recorded rounds).

:mod:`fedsimenv.experiments.calibrate` records real episodes as :class:`RunRecord` s; :func:`fit_curve` fits
:class:`~fedsimenv.learning.surrogate.CurveParams` by bounded nonlinear least squares (scipy), and
:func:`curve_error` measures a fit on runs it has not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from fedsimenv.learning.surrogate import CurveParams


@dataclass(frozen=True)
class RoundRecord:
    """One real round: who arrived (data shares, pruning rates), the round's label coverage, metrics."""

    share: NDArray[np.float64]
    rho: NDArray[np.float64]
    coverage: float
    accuracy: float
    loss: float


@dataclass(frozen=True)
class RunRecord:
    """One real episode: the initial global metrics and every round."""

    initial_accuracy: float
    initial_loss: float
    rounds: tuple[RoundRecord, ...]


def predict_run(curve: CurveParams, run: RunRecord) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The surrogate's accuracy and loss after each round of ``run`` (same rule as the trainer)."""
    progress = 0.0
    accuracy, loss = curve.initial_accuracy, curve.initial_loss
    acc_out, loss_out = np.empty(len(run.rounds)), np.empty(len(run.rounds))
    for t, record in enumerate(run.rounds):
        if len(record.share):
            progress += curve.progress_increment(record.share, record.rho)
            accuracy, loss = curve.metrics(progress, record.coverage)
        acc_out[t], loss_out[t] = accuracy, loss
    return acc_out, loss_out


def _targets(runs: Sequence[RunRecord]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    acc = np.array([r.accuracy for run in runs for r in run.rounds])
    loss = np.array([r.loss for run in runs for r in run.rounds])
    return acc, loss


#: Accuracy parameters fitted (name, lower bound, upper bound, starting values tried).
_ACC = (
    ("max_accuracy", 0.0, 1.0, (0.95,)),
    ("rate", 1e-3, 100.0, (0.3, 1.0, 3.0)),
    ("shape", 0.2, 4.0, (1.0, 2.0)),
    ("share_exponent", 0.0, 2.0, (0.3,)),
    ("prune_exponent", 0.0, 8.0, (1.0,)),
    ("coverage_exponent", 0.0, 10.0, (1.0,)),
)
_LOSS = (
    ("min_loss", 0.0, 10.0, (0.1,)),
    ("loss_rate", 1e-3, 100.0, (0.3, 1.0, 3.0)),
    ("loss_shape", 0.2, 4.0, (1.0,)),
    ("loss_coverage_weight", 0.0, 20.0, (0.5,)),
)


def _fit_group(
    base: CurveParams,
    group: tuple[tuple[str, float, float, tuple[float, ...]], ...],
    runs: Sequence[RunRecord],
    target: NDArray[np.float64],
    column: int,
) -> CurveParams:
    names = [g[0] for g in group]
    lower = np.array([g[1] for g in group])
    upper = np.array([g[2] for g in group])

    def residuals(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        curve = replace(base, **dict(zip(names, (float(v) for v in theta), strict=True)))
        predicted = np.concatenate([predict_run(curve, run)[column] for run in runs])
        return predicted - target

    best: tuple[float, NDArray[np.float64]] | None = None
    starts = np.array(np.meshgrid(*[g[3] for g in group])).reshape(len(group), -1).T
    for start in starts:
        result = least_squares(residuals, np.clip(start, lower, upper), bounds=(lower, upper))
        if best is None or result.cost < best[0]:
            best = (float(result.cost), result.x)
    assert best is not None
    return replace(base, **dict(zip(names, (float(v) for v in best[1]), strict=True)))


def fit_curve(runs: Sequence[RunRecord]) -> CurveParams:
    """Fit the learning curve to ``runs`` (accuracy first; the loss shares its progress exponent)."""
    if not runs or not any(run.rounds for run in runs):
        raise ValueError("fit_curve needs at least one run with at least one round")
    base = CurveParams(
        initial_accuracy=float(np.mean([run.initial_accuracy for run in runs])),
        max_accuracy=0.95,
        rate=1.0,
        shape=1.0,
        share_exponent=0.3,
        prune_exponent=1.0,
        coverage_exponent=1.0,
        initial_loss=float(np.mean([run.initial_loss for run in runs])),
        min_loss=0.1,
        loss_rate=1.0,
        loss_shape=1.0,
        loss_coverage_weight=0.5,
    )
    acc, loss = _targets(runs)
    curve = _fit_group(base, _ACC, runs, acc, column=0)
    return _fit_group(curve, _LOSS, runs, loss, column=1)


def curve_error(curve: CurveParams, runs: Sequence[RunRecord]) -> dict[str, float]:
    """Mean absolute and RMS error of accuracy and loss over every round of ``runs``."""
    acc, loss = _targets(runs)
    pred_acc = np.concatenate([predict_run(curve, run)[0] for run in runs])
    pred_loss = np.concatenate([predict_run(curve, run)[1] for run in runs])
    return {
        "rounds": len(acc),
        "accuracy_mae": float(np.mean(np.abs(pred_acc - acc))),
        "accuracy_rmse": float(np.sqrt(np.mean((pred_acc - acc) ** 2))),
        "final_accuracy_mae": float(
            np.mean([abs(predict_run(curve, run)[0][-1] - run.rounds[-1].accuracy) for run in runs])
        ),
        "loss_mae": float(np.mean(np.abs(pred_loss - loss))),
    }
