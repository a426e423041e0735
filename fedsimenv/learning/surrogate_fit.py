"""Fitting the surrogate's learning curve to real runs (pure functions over recorded rounds).

:mod:`fedsimenv.experiments.calibrate` records real episodes as :class:`RunRecord` s; :func:`fit_curve` fits
:class:`~fedsimenv.learning.surrogate.CurveParams` by bounded nonlinear least squares (scipy), and
:func:`curve_error` measures a fit on runs it has not seen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

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
    """One real episode: the initial global metrics, every round, and the decision regime that
    produced it (:data:`fedsimenv.experiments.calibrate.REGIONS`, or ``policy`` for a trained one)."""

    initial_accuracy: float
    initial_loss: float
    rounds: tuple[RoundRecord, ...]
    region: str = "random"


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


class PackedRuns:
    """``runs`` flattened into arrays, for :meth:`predict` of every round at once (the fitter calls it
    thousands of times; :func:`predict_run` is the plain reference it must equal)."""

    def __init__(self, runs: Sequence[RunRecord]) -> None:
        rounds = [r for run in runs for r in run.rounds]
        self.num_rounds = len(rounds)
        sizes = np.array([len(r.share) for r in rounds], dtype=np.int64)
        self.round_of_device = np.repeat(np.arange(self.num_rounds), sizes)
        self.share = np.concatenate([r.share for r in rounds]) if rounds else np.zeros(0)
        self.rho = np.concatenate([r.rho for r in rounds]) if rounds else np.zeros(0)
        self.coverage = np.array([r.coverage for r in rounds])
        self.empty = sizes == 0
        lengths = [len(run.rounds) for run in runs]
        self.run_start = np.repeat(np.cumsum([0, *lengths[:-1]]), lengths).astype(np.int64)
        # The last round with an arrival at or before each round, within its run (-1: none yet).
        filled = np.arange(self.num_rounds)
        for i in range(self.num_rounds):
            if self.empty[i]:
                filled[i] = filled[i - 1] if i > self.run_start[i] else -1
        self.source = filled

    def predict(self, curve: CurveParams) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Accuracy and loss after every round (the same rule as :func:`predict_run`)."""
        n = self.num_rounds
        total = np.bincount(self.round_of_device, weights=self.share, minlength=n)
        kept = np.clip(1.0 - self.rho, 0.0, 1.0)
        useful = np.maximum(kept - curve.prune_floor, 0.0) / (1.0 - curve.prune_floor)
        kept_share = np.bincount(self.round_of_device, weights=self.share * useful, minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.where(total > 0, kept_share / np.where(total > 0, total, 1.0), 0.0)
            increment = np.where(total > 0, total**curve.share_exponent * keep**curve.prune_exponent, 0.0)
        cumulative = np.cumsum(increment)
        progress = cumulative - (cumulative[self.run_start] - increment[self.run_start])
        learned = 1.0 - np.exp(-((curve.rate * progress) ** curve.shape))
        coverage = np.clip(self.coverage, 0.0, 1.0)
        accuracy = curve.initial_accuracy + (curve.max_accuracy - curve.initial_accuracy) * learned * (
            coverage**curve.coverage_exponent
        )
        remaining = np.exp(-((curve.loss_rate * progress) ** curve.loss_shape))
        loss = curve.min_loss + (curve.initial_loss - curve.min_loss) * remaining
        loss = np.maximum(loss + curve.loss_coverage_weight * (1.0 - coverage), 0.0)
        accuracy = np.clip(accuracy, 0.0, 1.0)
        accuracy = np.where(self.source >= 0, accuracy[np.maximum(self.source, 0)], curve.initial_accuracy)
        loss = np.where(self.source >= 0, loss[np.maximum(self.source, 0)], curve.initial_loss)
        return accuracy, loss


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
    ("prune_floor", 0.0, 0.9, (0.0, 0.3)),
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

    packed = PackedRuns(runs)

    def residuals(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        curve = replace(base, **dict(zip(names, (float(v) for v in theta), strict=True)))
        return packed.predict(curve)[column] - target

    best: tuple[float, NDArray[np.float64]] | None = None
    starts = np.array(np.meshgrid(*[g[3] for g in group])).reshape(len(group), -1).T
    for start in starts:
        result = least_squares(residuals, np.clip(start, lower, upper), bounds=(lower, upper))
        if best is None or result.cost < best[0]:
            best = (float(result.cost), result.x)
    assert best is not None
    return replace(base, **dict(zip(names, (float(v) for v in best[1]), strict=True)))


def fit_curve(runs: Sequence[RunRecord], noise: bool = False) -> CurveParams:
    """Fit the learning curve to ``runs`` (accuracy first; the loss shares its progress exponent).

    With ``noise``, ``accuracy_noise_std`` is the RMS of the real accuracies around the fitted curve
    over every round of ``runs`` (seeds differ in partition, channels and initialisation: the spread
    the deterministic curve cannot explain), else 0."""
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
    curve = _fit_group(curve, _LOSS, runs, loss, column=1)
    if noise:
        predicted = np.concatenate([predict_run(curve, run)[0] for run in runs])
        curve = replace(curve, accuracy_noise_std=float(np.sqrt(np.mean((predicted - acc) ** 2))))
    return curve


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


#: Round bins of :func:`error_by_region`: (name, test on (devices arrived, their mean rho, coverage)).
ACTION_BINS: tuple[tuple[str, Any], ...] = (
    ("devices=1", lambda n, rho, cov: n == 1),
    ("devices=2-3", lambda n, rho, cov: 2 <= n <= 3),
    ("devices>=4", lambda n, rho, cov: n >= 4),
    ("rho<0.3", lambda n, rho, cov: n > 0 and rho < 0.3),
    ("rho=0.3-0.6", lambda n, rho, cov: n > 0 and 0.3 <= rho < 0.6),
    ("rho>=0.6", lambda n, rho, cov: n > 0 and rho >= 0.6),
    ("coverage<0.5", lambda n, rho, cov: n > 0 and cov < 0.5),
    ("coverage>=0.5", lambda n, rho, cov: n > 0 and cov >= 0.5),
)


def error_by_region(curve: CurveParams, runs: Sequence[RunRecord]) -> dict[str, dict[str, float]]:
    """Accuracy error of ``curve`` on ``runs`` per region of the action space.

    Keys ``run:REGION`` group whole runs by their decision regime (:func:`curve_error` over them);
    the :data:`ACTION_BINS` group rounds by how many devices arrived, their mean pruning rate and their
    label coverage (the round's accuracy error; ``rounds`` = how many rounds fell in the bin).
    Empty groups are left out."""
    out: dict[str, dict[str, float]] = {}
    for region in sorted({run.region for run in runs}):
        out[f"run:{region}"] = curve_error(curve, [run for run in runs if run.region == region])
    errors: dict[str, list[float]] = {name: [] for name, _ in ACTION_BINS}
    for run in runs:
        predicted = predict_run(curve, run)[0]
        for record, guess in zip(run.rounds, predicted, strict=True):
            n = len(record.share)
            rho = float(np.mean(record.rho)) if n else 0.0
            for name, test in ACTION_BINS:
                if test(n, rho, record.coverage):
                    errors[name].append(float(guess) - record.accuracy)
    for name, values in errors.items():
        if values:
            array = np.asarray(values)
            out[name] = {
                "rounds": len(array),
                "accuracy_mae": float(np.mean(np.abs(array))),
                "accuracy_bias": float(np.mean(array)),
            }
    return out


def records_to_json(runs: Sequence[RunRecord]) -> str:
    """The recorded runs as JSON (``fedsimenv calibrate --records`` writes it)."""
    data = [
        {
            "region": run.region,
            "initial_accuracy": run.initial_accuracy,
            "initial_loss": run.initial_loss,
            "rounds": [
                {
                    "share": r.share.tolist(),
                    "rho": r.rho.tolist(),
                    "coverage": r.coverage,
                    "accuracy": r.accuracy,
                    "loss": r.loss,
                }
                for r in run.rounds
            ],
        }
        for run in runs
    ]
    return json.dumps({"format": "fedsimenv-calibration-runs", "runs": data}) + "\n"


def records_from_json(text: str, source: str) -> list[RunRecord]:
    """Parse :func:`records_to_json`'s output; a malformed file is a ValueError naming ``source``."""
    try:
        data = json.loads(text)
        if data.get("format") != "fedsimenv-calibration-runs":
            raise ValueError("field 'format'")
        runs = []
        for run in data["runs"]:
            rounds = tuple(
                RoundRecord(
                    share=np.asarray(r["share"], dtype=np.float64),
                    rho=np.asarray(r["rho"], dtype=np.float64),
                    coverage=float(r["coverage"]),
                    accuracy=float(r["accuracy"]),
                    loss=float(r["loss"]),
                )
                for r in run["rounds"]
            )
            runs.append(
                RunRecord(
                    float(run["initial_accuracy"]), float(run["initial_loss"]), rounds, str(run["region"])
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{source}: not a calibration runs file written by fedsimenv calibrate ({err})"
        ) from None
    values = [
        v for run in runs for r in run.rounds for v in (r.coverage, r.accuracy, r.loss, *r.share, *r.rho)
    ]
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{source}: non-finite number in the calibration runs")
    return runs
