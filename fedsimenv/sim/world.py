"""The devices of a cell: where they are and what hardware they have.

Per-device quantities come from the scenario's ``devices`` section: a number (same for all), a
uniform or log-normal distribution, an explicit list, or a column of a CSV trace file.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from channels import ChannelModel, dbm_to_watt
from fedsimenv.config import (
    DEVICE_RANGES,
    Constant,
    DeviceQuantity,
    FixedValues,
    LogNormal,
    ScenarioConfig,
    UniformRange,
)
from fedsimenv.sim.types import FloatArray

#: Columns a device trace CSV may hold.
TRACE_COLUMNS = ("cpu_freq_hz", "flops_per_cycle", "tx_power_dbm", "battery_capacity_j")


@dataclass(frozen=True)
class DeviceFleet:
    """Static per-device properties (arrays over N devices)."""

    distance_m: FloatArray
    angle_rad: FloatArray
    shadowing_db: FloatArray
    cpu_freq_hz: FloatArray
    flops_per_cycle: FloatArray
    tx_power_w: FloatArray
    kappa: float
    battery_capacity_j: FloatArray | None = None  # None = unlimited
    idle_power_w: float = 0.0

    @property
    def num_devices(self) -> int:
        return len(self.distance_m)

    @property
    def position_m(self) -> FloatArray:
        """(N, 2) Cartesian positions with the base station at the origin."""
        return np.stack(
            [self.distance_m * np.cos(self.angle_rad), self.distance_m * np.sin(self.angle_rad)], 1
        )


def sample_quantity(quantity: DeviceQuantity, n: int, rng: np.random.Generator, field: str) -> FloatArray:
    """Per-device values of ``quantity`` (``field`` names it in errors)."""
    if isinstance(quantity, Constant):
        return np.full(n, quantity.value)
    if isinstance(quantity, UniformRange):
        return rng.uniform(quantity.low, quantity.high, size=n)
    if isinstance(quantity, LogNormal):
        return quantity.median * np.exp(quantity.sigma * rng.standard_normal(n))
    if isinstance(quantity, FixedValues):
        if len(quantity.values) != n:
            raise ValueError(f"{field}: the list has {len(quantity.values)} values, cell.num_devices is {n}")
        return np.asarray(quantity.values, dtype=np.float64)
    raise TypeError(f"{field}: unsupported quantity {quantity!r}")


def read_trace_csv(path: str | Path, n: int) -> dict[str, FloatArray]:
    """Columns of a device trace file: one row per device, a header naming columns in TRACE_COLUMNS.

    Errors name the file, the row and the column, never the file's contents (a wrong path must not
    print a line of whatever file it points at).
    """
    file = Path(path)
    where = f"devices.trace_csv {file}"
    if not file.is_file():
        raise ValueError(f"devices.trace_csv: file not found: {file}")
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            unknown = [i + 1 for i, name in enumerate(header) if name not in TRACE_COLUMNS]
            if unknown or not header or len(set(header)) != len(header):
                raise ValueError(
                    f"{where}: the first line must be a header of distinct columns among "
                    f"{', '.join(TRACE_COLUMNS)} (column(s) {unknown or '?'} are not)"
                )
            rows = list(itertools.islice(reader, n + 1))
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a UTF-8 text file") from None
    except csv.Error:
        raise ValueError(f"{where}: not a CSV file") from None
    except OSError as err:
        raise ValueError(f"{where}: cannot be read ({err.strerror or type(err).__name__})") from None
    if len(rows) != n:
        raise ValueError(
            f"{where}: {len(rows)}{'+' if len(rows) > n else ''} device rows, cell.num_devices is {n}"
        )
    columns: dict[str, FloatArray] = {}
    for index, name in enumerate(header):
        values = np.empty(n)
        for row_number, row in enumerate(rows, start=2):
            try:
                values[row_number - 2] = float(row[index]) if len(row) == len(header) else np.nan
            except ValueError:
                values[row_number - 2] = np.nan
            if not np.isfinite(values[row_number - 2]):
                raise ValueError(
                    f"{where}: line {row_number}, column {name!r}: not a finite number "
                    f"(or the line does not have {len(header)} fields)"
                )
        low, high, positive = DEVICE_RANGES[name]
        if np.any(values < low) or np.any(values > high) or (positive and np.any(values <= 0)):
            raise ValueError(
                f"{where}: column {name!r} must be in {'(' if positive else '['}{low:g}, {high:g}]"
            )
        columns[name] = values
    return columns


def build_fleet(config: ScenarioConfig, channel: ChannelModel, rng: np.random.Generator) -> DeviceFleet:
    """Draw device positions (uniform over the annulus ``min_distance_m..radius_m``), hardware and
    shadowing from ``rng``."""
    n = config.cell.num_devices
    devices = config.devices
    r_min, r_max = config.cell.min_distance_m, config.cell.radius_m
    # Uniform over the area: the radius' CDF is quadratic, so sample r^2 uniformly.
    distance_m = np.sqrt(rng.uniform(r_min**2, r_max**2, size=n))
    angle_rad = rng.uniform(0.0, 2 * np.pi, size=n)
    cpu_freq_hz = sample_quantity(devices.cpu_freq_hz, n, rng, "devices.cpu_freq_hz")
    shadowing_db = channel.sample_shadowing_db(n, rng)
    flops_per_cycle = sample_quantity(devices.flops_per_cycle, n, rng, "devices.flops_per_cycle")
    tx_power_dbm = (
        sample_quantity(devices.tx_power_dbm, n, rng, "devices.tx_power_dbm")
        if devices.tx_power_dbm is not None
        else np.full(n, config.network.tx_power_dbm)
    )
    battery = (
        sample_quantity(devices.battery_capacity_j, n, rng, "devices.battery_capacity_j")
        if devices.battery_capacity_j is not None
        else None
    )
    if devices.trace_csv is not None:
        trace = read_trace_csv(devices.trace_csv, n)
        cpu_freq_hz = trace.get("cpu_freq_hz", cpu_freq_hz)
        flops_per_cycle = trace.get("flops_per_cycle", flops_per_cycle)
        tx_power_dbm = trace.get("tx_power_dbm", tx_power_dbm)
        battery = trace.get("battery_capacity_j", battery)
    return DeviceFleet(
        distance_m=distance_m,
        angle_rad=angle_rad,
        shadowing_db=shadowing_db,
        cpu_freq_hz=cpu_freq_hz,
        flops_per_cycle=flops_per_cycle,
        tx_power_w=dbm_to_watt(tx_power_dbm),
        kappa=devices.kappa,
        battery_capacity_j=battery,
        idle_power_w=devices.idle_power_w,
    )
