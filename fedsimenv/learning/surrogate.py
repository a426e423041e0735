"""The surrogate trainer (``trainer: surrogate``): a fitted learning curve instead of real training.

It implements the same :class:`~fedsimenv.learning.trainer.Trainer` interface as the torch trainer,
so the env and every agent run unchanged, at the cost of the simulator alone. It uses only that
interface, :class:`ModelCost`, :class:`LearningResult` and the data/partition helpers: the real
trainer's internals (models, pruning) are reached only through a calibration file written by
``fedsimenv calibrate`` (:mod:`fedsimenv.experiments.calibrate`).

Model of a round (all devices that *arrived*; w_k = D_k / sum_j D_j is device k's data share):

* progress: ``P_t = P_{t-1} + S_t^alpha K_t^beta`` with ``S_t = sum_k w_k`` the participating data
  share and ``K_t = sum_k w_k q(1 - rho_k) / S_t`` the data-weighted useful fraction of the model kept,
  ``q(x) = max(0, x - f) / (1 - f)`` with ``f`` the *pruning floor* (a device that keeps no more than
  ``f`` of the model teaches nothing: measured, a one-device rho = 0.9 schedule on ``tiny`` stays at
  chance accuracy); alpha, beta and f fitted: real FedAvg gains far less than proportionally from
  more data per round, and heavily pruned rounds teach little; ``P`` after round t summarises the
  round index and every earlier round's participation;
* label coverage of the round: ``c_t = 1 - TV(labels of the arrived data, labels of all data)``,
  which captures the accuracy dip of a FedAvg round over a few non-IID devices;
* accuracy: ``a_0 + (a_max - a_0) (1 - exp(-(r P_t)^s)) c_t^eta``;
* loss: ``l_min + (l_0 - l_min) exp(-(r_l P_t)^{s_l}) + lam (1 - c_t)``.

A round in which no update arrived leaves the global model, and so both metrics, unchanged. Without
noise (``accuracy_noise_std = 0``, the default) the surrogate is deterministic: the same decisions
give the same curve. A calibration fitted with ``fedsimenv calibrate --noise`` stores the spread of
real accuracies around the fitted curve (over its seeds and rounds); the trainer then adds Gaussian
noise of that standard deviation to each reported accuracy (the learning state is unaffected), drawn
from the episode's ``surrogate-noise`` stream, so one seed still reproduces a run exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial

import numpy as np
from numpy.typing import NDArray

from fedsimenv.config import LearningConfig
from fedsimenv.learning.calibration import (
    CALIBRATION_FORMAT,
    CALIBRATION_VERSION,
    CURVE_RANGES,
    DEFAULT_CALIBRATION,
    FINGERPRINT_FIELDS,
    FINGERPRINT_IGNORED_PARTITION_FIELDS,
    OPTIONAL_CURVE_RANGES,
    Calibration,
    CalibrationError,
    CostTable,
    CurveParams,
    learning_fingerprint,
    load_calibration,
)
from fedsimenv.learning.datasets import Split
from fedsimenv.learning.partition import client_label_counts, load_configured_dataset
from fedsimenv.learning.plan import DeviceJob, LearningResult, ModelCost, PlanColumns, RoundPlan
from fedsimenv.learning.trainer import TRAINERS, Trainer
from fedsimenv.numeric import make_frozen
from fedsimenv.seeding import EpisodeStreams

__all__ = [
    "CALIBRATION_FORMAT",
    "CALIBRATION_VERSION",
    "CURVE_RANGES",
    "DEFAULT_CALIBRATION",
    "FINGERPRINT_FIELDS",
    "FINGERPRINT_IGNORED_PARTITION_FIELDS",
    "OPTIONAL_CURVE_RANGES",
    "Calibration",
    "CalibrationError",
    "CostTable",
    "CurveParams",
    "SurrogateTrainer",
    "label_coverage",
    "learning_fingerprint",
    "load_calibration",
    "partition_label_counts",
]


def label_coverage(counts: NDArray[np.float64], reference: NDArray[np.float64]) -> float:
    """``1 - total variation`` between the label histogram ``counts`` and ``reference``."""
    return _coverage(counts, reference / np.add.reduce(reference, axis=None))


def _coverage(counts: NDArray[np.float64], reference_share: NDArray[np.float64]) -> float:
    """:func:`label_coverage` with the reference already normalised (it is fixed per episode)."""
    total = np.add.reduce(counts, axis=None)  # ``.sum()`` without its wrapper (runs every round)
    if total <= 0:
        return 0.0
    return float(1.0 - 0.5 * np.add.reduce(np.abs(counts / total - reference_share), axis=None))


def partition_label_counts(
    config: LearningConfig, num_devices: int, streams: EpisodeStreams, data: Split | None = None
) -> NDArray[np.float64]:
    """(N, classes) label histogram of each device's training data, drawn as the torch trainer does:
    the configured dataset (``data``: its ``(full, official test)`` if already loaded), the same
    ``partition`` stream and :func:`~fedsimenv.learning.partition.client_partition` (counted by
    :func:`~fedsimenv.learning.partition.client_label_counts`, with the same draws)."""
    loaded = load_configured_dataset(config) if data is None else data
    counts = client_label_counts(loaded, config, num_devices, streams.numpy("partition"))
    return counts.astype(np.float64)


@TRAINERS.register("surrogate")
class SurrogateTrainer(Trainer):
    """Fast mode: metrics from a calibrated learning curve, costs from the real model's measured table.

    Args:
        config: The scenario's learning section; ``config.surrogate.calibration_file`` picks the fit.
        num_devices: Devices in the cell.
        calibration: A calibration to use instead of the configured file (calibration tests).

    Raises:
        CalibrationError: the file is missing or malformed, or was fitted for other learning settings.
    """

    def __init__(
        self, config: LearningConfig, num_devices: int, calibration: Calibration | None = None
    ) -> None:
        super().__init__(config, num_devices)
        self.calibration = calibration or load_calibration(config.surrogate.calibration_file)
        expected = learning_fingerprint(config)
        stale = {
            k: (self.calibration.fingerprint.get(k), v)
            for k, v in expected.items()
            if self.calibration.fingerprint.get(k) != v
        }
        if stale:
            detail = ", ".join(f"learning.{k} is {now!r} but was {was!r}" for k, (was, now) in stale.items())
            raise CalibrationError(
                f"the surrogate calibration was fitted for other learning settings ({detail}); "
                "run `fedsimenv calibrate` for this scenario and set learning.surrogate.calibration_file"
            )
        self.curve = self.calibration.curve
        self._data = load_configured_dataset(config)
        self._counts: NDArray[np.float64] | None = None
        self._noise: np.random.Generator | None = None

    def reset(self, streams: EpisodeStreams) -> LearningResult:
        self._counts = partition_label_counts(self.config, self.num_devices, streams, self._data)
        self._num_samples: NDArray[np.int64] = self._counts.sum(axis=1).astype(np.int64)
        self._share = self._num_samples / self._num_samples.sum()
        self._reference = self._counts.sum(axis=0)
        self._reference_share = self._reference / np.add.reduce(self._reference, axis=None)
        self._progress = 0.0
        self._noise = streams.numpy("surrogate-noise") if self.curve.accuracy_noise_std > 0 else None
        self._last = LearningResult(
            accuracy=self.curve.initial_accuracy, loss=self.curve.initial_loss, num_trained=0
        )
        return self._last

    @property
    def num_samples(self) -> NDArray[np.int64]:
        if self._counts is None:
            raise RuntimeError("call reset() before using the trainer")
        return self._num_samples

    @property
    def progress(self) -> float:
        """Cumulative effective progress P (module docstring)."""
        return self._progress

    def download_bits(self) -> float:
        return self.calibration.costs.download_bits

    def cost_at(self, rho: float) -> ModelCost:
        return self.calibration.costs.cost(rho)

    def plan_round(
        self,
        pruning_rate: Mapping[int, float],
        *,
        spans_rounds: bool = False,
        upload_value_bits: Mapping[int, int] | None = None,
    ) -> RoundPlan:
        devices = list(map(int, pruning_rate))
        rates = list(map(float, pruning_rate.values()))
        table = self.calibration.costs
        if upload_value_bits is None:  # the common case: a plan of columns, no per-device objects
            rho = np.array(rates, dtype=np.float64)
            flops, bits = table.columns(rho)
            kept = partial(table.kept_params_at, rho)
            # ``PlanColumns(...)`` without the frozen constructor's cost (this runs every step).
            columns = make_frozen(
                PlanColumns,
                devices=devices,
                pruning_rate=rho,
                forward_flops_per_sample=flops,
                upload_bits=bits,
                kept_params=kept,
                total_params=table.total_params,
            )
            return RoundPlan.from_columns(columns)
        costs = table.costs(np.array(rates, dtype=np.float64))
        widths = [upload_value_bits.get(k) for k in devices]
        # A decided upload width re-prices the values (kept x width); the index overhead stays. The
        # 32-bit per-tensor scales are left out (the surrogate has no tensor list), and quantisation
        # does not change the surrogate's learning curve.
        costs = [
            cost
            if width is None
            else replace(
                cost,
                upload_bits=cost.upload_bits - cost.kept_params * (self.config.bits_per_param - int(width)),
            )
            for cost, width in zip(costs, widths, strict=True)
        ]
        return RoundPlan(
            {
                k: DeviceJob(k, rho, cost, upload_value_bits=width)
                for k, rho, cost, width in zip(devices, rates, costs, widths, strict=True)
            }
        )

    def train_round(self, plan: RoundPlan, arrived: Sequence[int]) -> LearningResult:
        if self._counts is None:
            raise RuntimeError("call reset() before using the trainer")
        columns = plan.columns
        if columns is None:
            jobs = plan.jobs_of(arrived)
            idx = np.array([job.device for job in jobs], dtype=np.int64)
            rho = np.array([job.pruning_rate for job in jobs])
        else:  # the same arrays without the per-device jobs
            idx, rho = columns.select(arrived)
        if len(idx):
            self._progress += self.curve.progress_increment(self._share[idx], rho)
            coverage = _coverage(np.add.reduce(self._counts[idx], axis=0), self._reference_share)
            accuracy, loss = self.curve.metrics(self._progress, coverage)
            if self._noise is not None:
                noisy = accuracy + self.curve.accuracy_noise_std * float(self._noise.standard_normal())
                accuracy = min(max(noisy, 0.0), 1.0)
            self._last = _result(accuracy, loss, len(idx))
        else:
            self._last = _result(self._last.accuracy, self._last.loss, 0)
        return self._last


def _result(accuracy: float, loss: float, num_trained: int) -> LearningResult:
    """``LearningResult(accuracy, loss, num_trained)`` (the other fields at their defaults, a fresh
    ``extra`` dict as its factory makes), without the frozen constructor's cost (every step)."""
    return make_frozen(
        LearningResult,
        accuracy=accuracy,
        loss=loss,
        num_trained=num_trained,
        device_accuracy=(),
        server_time_s=0.0,
        extra={},
        covering=None,
    )
