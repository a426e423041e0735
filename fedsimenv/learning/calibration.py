"""Surrogate calibration files: the fitted learning curve (:class:`CurveParams`) and exact cost
table (:class:`CostTable`) the surrogate trainer (:mod:`fedsimenv.learning.surrogate`) runs on,
their JSON format (``fedsimenv calibrate`` writes it), validation of untrusted files (every field
named in the error) and the learning-settings fingerprint a calibration is valid for.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedsimenv.config import LearningConfig
from fedsimenv.learning.plan import ModelCost
from fedsimenv.numeric import clip

#: Calibration file format tag and version.
CALIBRATION_FORMAT = "fedsimenv-surrogate-calibration"
CALIBRATION_VERSION = 1
#: The built-in calibration (scenarios package data), used when ``learning.surrogate.calibration_file``
#: is null; fitted on ``tiny`` with ``fedsimenv calibrate tiny``.
DEFAULT_CALIBRATION = "surrogate-digits-small-cnn.json"
#: Learning fields a calibration is valid for: a curve fitted with other values would mislead.
#: ``partition`` is the whole sub-config except :data:`FINGERPRINT_IGNORED_PARTITION_FIELDS`.
FINGERPRINT_FIELDS = (
    "dataset",
    "test_fraction",
    "partition",
    "model",
    "pruning",
    "local_epochs",
    "batch_size",
    "learning_rate",
    "momentum",
    "bits_per_param",
)
#: Partition fields that change neither the clients' data nor the global curve (per-device test sets
#: are drawn after the partition and the surrogate reports no per-device accuracy).
FINGERPRINT_IGNORED_PARTITION_FIELDS = ("per_device_test",)


class CalibrationError(ValueError):
    """A calibration file is missing, malformed, or was fitted for another learning setup."""


@dataclass(frozen=True)
class CurveParams:
    """Parameters of the learning curve (see the module docstring for the formulas)."""

    initial_accuracy: float
    max_accuracy: float
    rate: float
    shape: float
    share_exponent: float
    prune_exponent: float
    coverage_exponent: float
    initial_loss: float
    min_loss: float
    loss_rate: float
    loss_shape: float
    loss_coverage_weight: float
    #: Kept fraction at or below which a device's update teaches nothing (0 in version-1 files).
    prune_floor: float = 0.0
    #: Standard deviation of the real accuracy around the curve (0 = deterministic surrogate).
    accuracy_noise_std: float = 0.0

    def progress_increment(self, share: NDArray[np.float64], rho: NDArray[np.float64]) -> float:
        """``S^alpha K^beta`` over the arrived devices: S = their data share, K = their
        data-weighted mean useful kept fraction ``sum_k w_k q(1 - rho_k) / S`` (module docstring)."""
        total = float(np.add.reduce(share, axis=None))  # ``np.sum`` without its wrapper (every round)
        if total <= 0:
            return 0.0
        kept = clip(1.0 - rho, 0.0, 1.0)
        useful = np.maximum(kept - self.prune_floor, 0.0) / (1.0 - self.prune_floor)
        keep = float(np.add.reduce(share * useful, axis=None)) / total
        return float(total**self.share_exponent * keep**self.prune_exponent)

    def metrics(self, progress: float, coverage: float) -> tuple[float, float]:
        """``(accuracy, loss)`` of the global model at cumulative progress ``progress``."""
        learned = 1.0 - math.exp(-((self.rate * progress) ** self.shape))
        coverage = min(max(coverage, 0.0), 1.0)
        accuracy = self.initial_accuracy + (self.max_accuracy - self.initial_accuracy) * learned * (
            coverage**self.coverage_exponent
        )
        remaining = math.exp(-((self.loss_rate * progress) ** self.loss_shape))
        loss = self.min_loss + (self.initial_loss - self.min_loss) * remaining
        loss += self.loss_coverage_weight * (1.0 - coverage)
        return min(max(accuracy, 0.0), 1.0), max(loss, 0.0)


@dataclass(frozen=True)
class CostTable:
    """Measured cost of the real pruned model at a grid of pruning rates (linearly interpolated)."""

    rho: tuple[float, ...]
    forward_flops_per_sample: tuple[float, ...]
    upload_bits: tuple[float, ...]
    kept_params: tuple[float, ...]
    total_params: int
    download_bits: float

    def cost(self, rho: float) -> ModelCost:
        return self.costs(np.array([rho]))[0]

    @cached_property
    def _arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The grid and the (3, G) columns as arrays, built once (``costs`` runs every round)."""
        columns = np.array([self.forward_flops_per_sample, self.upload_bits, self.kept_params])
        return np.asarray(self.rho), columns

    def _clipped(self, rho: NDArray[np.float64]) -> NDArray[np.float64]:
        grid = self._arrays[0]
        return clip(rho, grid[0], grid[-1])  # a -0.0 rate interpolates as 0.0 does

    def columns(self, rho: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(forward FLOPs per sample, upload bits) at each pruning rate (clipped to the measured
        range), one interpolation per column."""
        grid, columns = self._arrays
        r = self._clipped(rho)
        flops: NDArray[np.float64] = np.interp(r, grid, columns[0])
        bits: NDArray[np.float64] = np.interp(r, grid, columns[1])
        return flops, bits

    def kept_params_at(self, rho: NDArray[np.float64]) -> NDArray[np.float64]:
        """Kept parameters at each pruning rate (clipped as in :meth:`columns`; not rounded)."""
        grid, columns = self._arrays
        kept: NDArray[np.float64] = np.interp(self._clipped(rho), grid, columns[2])
        return kept

    def costs(self, rho: NDArray[np.float64]) -> list[ModelCost]:
        """Costs at each pruning rate (clipped to the measured range), in one pass per column."""
        flops, bits = (column.tolist() for column in self.columns(rho))
        kept = self.kept_params_at(rho).tolist()
        return [
            ModelCost(
                forward_flops_per_sample=f,
                upload_bits=b,
                kept_params=round(k),
                total_params=self.total_params,
            )
            for f, b, k in zip(flops, bits, kept, strict=True)
        ]


@dataclass(frozen=True)
class Calibration:
    """A fitted surrogate: curve, costs, what it was fitted for and how well it did on held-out runs."""

    fingerprint: dict[str, Any]
    curve: CurveParams
    costs: CostTable
    error: dict[str, Any]

    def to_json(self) -> str:
        data = {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "fingerprint": self.fingerprint,
            "curve": asdict(self.curve),
            "costs": asdict(self.costs),
            "error": self.error,
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Calibration:
        """Parse a calibration file: strict JSON, every number finite and in its range.

        Raises:
            CalibrationError: naming the field (never quoting the file's contents).
        """
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as err:
            raise CalibrationError(
                f"{source}: not valid JSON (line {err.lineno}, column {err.colno})"
            ) from None
        except ValueError as err:
            raise CalibrationError(f"{source}: not strict JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(f"{source}: not a fedsimenv surrogate calibration (field 'format')")
        if data.get("version") != CALIBRATION_VERSION:
            raise CalibrationError(f"{source}: field 'version' must be {CALIBRATION_VERSION}")
        curve_data, raw = data.get("curve"), data.get("costs")
        if not isinstance(curve_data, dict) or not isinstance(raw, dict):
            raise CalibrationError(f"{source}: fields 'curve' and 'costs' must be objects")
        if not isinstance(data.get("fingerprint"), dict) or not isinstance(data.get("error", {}), dict):
            raise CalibrationError(f"{source}: fields 'fingerprint' and 'error' must be objects")
        curve = CurveParams(
            **{
                name: _number(curve_data.get(name), f"{source}: field 'curve.{name}'", low, high)
                for name, (low, high) in CURVE_RANGES.items()
            },
            **{
                name: _number(curve_data[name], f"{source}: field 'curve.{name}'", low, high)
                for name, (low, high) in OPTIONAL_CURVE_RANGES.items()
                if name in curve_data
            },
        )
        columns = {
            name: tuple(_numbers(raw.get(name), f"{source}: field 'costs.{name}'", 0.0, 1e18))
            for name in ("rho", "forward_flops_per_sample", "upload_bits", "kept_params")
        }
        total = raw.get("total_params")
        if isinstance(total, bool) or not isinstance(total, int) or not 1 <= total <= 10**15:
            raise CalibrationError(f"{source}: field 'costs.total_params' must be an integer in [1, 1e15]")
        costs = CostTable(
            total_params=total,
            download_bits=_number(
                raw.get("download_bits"), f"{source}: field 'costs.download_bits'", 0.0, 1e18
            ),
            **columns,
        )
        sizes = {len(costs.rho), len(costs.forward_flops_per_sample), len(costs.upload_bits)}
        if len(sizes | {len(costs.kept_params)}) != 1 or len(costs.rho) < 2:
            raise CalibrationError(f"{source}: field 'costs' needs >= 2 rho points, all columns equally long")
        if any(b <= a for a, b in zip(costs.rho, costs.rho[1:], strict=False)) or costs.rho[-1] >= 1:
            raise CalibrationError(f"{source}: field 'costs.rho' must be increasing, in [0, 1)")
        return cls(
            fingerprint=dict(data["fingerprint"]), curve=curve, costs=costs, error=dict(data.get("error", {}))
        )


#: Allowed range of each learning-curve parameter in a calibration file (the fitter's bounds, wider
#: for the measured initial values).
CURVE_RANGES: dict[str, tuple[float, float]] = {
    "initial_accuracy": (0.0, 1.0),
    "max_accuracy": (0.0, 1.0),
    "rate": (1e-6, 1e3),
    "shape": (1e-2, 100.0),
    "share_exponent": (0.0, 100.0),
    "prune_exponent": (0.0, 100.0),
    "coverage_exponent": (0.0, 100.0),
    "initial_loss": (0.0, 1e6),
    "min_loss": (0.0, 1e6),
    "loss_rate": (1e-6, 1e3),
    "loss_shape": (1e-2, 100.0),
    "loss_coverage_weight": (0.0, 1e6),
}
#: Curve parameters a file may omit (their defaults in :class:`CurveParams`: files of earlier fits).
OPTIONAL_CURVE_RANGES: dict[str, tuple[float, float]] = {
    "prune_floor": (0.0, 0.99),
    "accuracy_noise_std": (0.0, 1.0),
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise CalibrationError(f"{what} must be a number in [{low:g}, {high:g}]")
    return float(value)


def _numbers(values: Any, what: str, low: float, high: float) -> list[float]:
    if not isinstance(values, list):
        raise CalibrationError(f"{what} must be a list of numbers")
    return [_number(v, what, low, high) for v in values]


def learning_fingerprint(config: LearningConfig) -> dict[str, Any]:
    """The learning fields a calibration must match, as JSON values (so a fingerprint read back from a
    calibration file compares equal to the one computed from the config)."""
    dumped = config.model_dump(mode="json")
    for name in FINGERPRINT_IGNORED_PARTITION_FIELDS:
        dumped["partition"].pop(name)
    return {name: dumped[name] for name in FINGERPRINT_FIELDS}


def load_calibration(name_or_path: str | os.PathLike[str] | None) -> Calibration:
    """Read a calibration file: a path, the name of a file in the ``scenarios`` package, or None
    for the built-in default."""
    name = DEFAULT_CALIBRATION if name_or_path is None else name_or_path
    path = Path(name)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise CalibrationError(f"{path}: cannot be read as UTF-8 text ({type(err).__name__})") from None
        return Calibration.from_json(text, str(path))
    resource = resources.files("scenarios") / str(name)
    if path.name == str(name) and resource.is_file():
        return Calibration.from_json(resource.read_text(encoding="utf-8"), f"built-in calibration {name!r}")
    raise CalibrationError(
        f"learning.surrogate.calibration_file: {str(name)!r} is neither a file nor a built-in calibration "
        f"(built-in: {DEFAULT_CALIBRATION}); write one with `fedsimenv calibrate SCENARIO --out FILE`"
    )
