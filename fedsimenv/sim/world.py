"""The devices of a cell: where they are and what hardware they have."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from channels import ChannelModel, dbm_to_watt
from fedsimenv.config import ScenarioConfig
from fedsimenv.sim.types import FloatArray


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

    @property
    def num_devices(self) -> int:
        return len(self.distance_m)

    @property
    def position_m(self) -> FloatArray:
        """(N, 2) Cartesian positions with the base station at the origin."""
        return np.stack(
            [self.distance_m * np.cos(self.angle_rad), self.distance_m * np.sin(self.angle_rad)], 1
        )


def build_fleet(config: ScenarioConfig, channel: ChannelModel, rng: np.random.Generator) -> DeviceFleet:
    """Draw device positions (uniform over the annulus ``min_distance_m..radius_m``), CPU frequencies
    and shadowing from ``rng``."""
    n = config.cell.num_devices
    r_min, r_max = config.cell.min_distance_m, config.cell.radius_m
    # Uniform over the area: the radius' CDF is quadratic, so sample r^2 uniformly.
    distance_m = np.sqrt(rng.uniform(r_min**2, r_max**2, size=n))
    angle_rad = rng.uniform(0.0, 2 * np.pi, size=n)
    freq = config.devices.cpu_freq_hz
    cpu_freq_hz = rng.uniform(freq.low, freq.high, size=n)
    shadowing_db = channel.sample_shadowing_db(n, rng)
    return DeviceFleet(
        distance_m=distance_m,
        angle_rad=angle_rad,
        shadowing_db=shadowing_db,
        cpu_freq_hz=cpu_freq_hz,
        flops_per_cycle=np.full(n, config.devices.flops_per_cycle),
        tx_power_w=np.full(n, float(dbm_to_watt(config.network.tx_power_dbm))),
        kappa=config.devices.kappa,
    )
