"""Small hand-checkable simulator set-ups shared by the simulator tests."""

from __future__ import annotations

import numpy as np

from fedsimenv.config import NetworkConfig, ProtocolConfig
from fedsimenv.sim import DeviceFleet, DeviceWorkload, RoundDecision, RoundSimulator
from fedsimenv.sim.availability import MarkovAvailability
from fedsimenv.sim.types import FloatArray

N0_W_PER_HZ = 10 ** ((-174 - 30) / 10)
TX_POWER_W = 0.01


class ScriptedChannel:
    """A channel whose gains per block are given: block 0 at reset, then one per ``advance``."""

    def __init__(self, blocks: list[FloatArray]) -> None:
        self.blocks = blocks
        self.block = 0
        self.steps: list[float] = []

    @property
    def distance_m(self) -> FloatArray:
        return np.full(len(self.blocks[0]), 100.0)

    def reset(
        self, position_m: FloatArray, rng: np.random.Generator, shadowing_db: FloatArray | None = None
    ) -> FloatArray:
        self.block = 0
        return self.blocks[0]

    def advance(self, dt_s: float) -> FloatArray:
        self.steps.append(dt_s)
        self.block += 1
        return self.blocks[min(self.block, len(self.blocks) - 1)]


def unit_gain(bandwidth_hz: float) -> float:
    """The gain at which ``r = b log2(1 + p g / (N0 b)) = b`` exactly (SNR 1), so t_up = bits / b."""
    return N0_W_PER_HZ * bandwidth_hz / TX_POWER_W


def make_simulator(
    cpu_freq_hz: list[float],
    blocks: list[FloatArray] | None = None,
    protocol: ProtocolConfig | None = None,
    coherence_time_s: float | None = None,
    battery_j: list[float] | None = None,
    idle_power_w: float = 0.0,
    availability: MarkovAvailability | None = None,
    kappa: float = 1e-28,
    network: NetworkConfig | None = None,
    seed: int = 0,
) -> RoundSimulator:
    n = len(cpu_freq_hz)
    fleet = DeviceFleet(
        distance_m=np.full(n, 100.0),
        angle_rad=np.zeros(n),
        shadowing_db=np.zeros(n),
        cpu_freq_hz=np.array(cpu_freq_hz, dtype=float),
        flops_per_cycle=np.ones(n),
        tx_power_w=np.full(n, TX_POWER_W),
        kappa=kappa,
        battery_capacity_j=None if battery_j is None else np.array(battery_j, dtype=float),
        idle_power_w=idle_power_w,
    )
    channel = ScriptedChannel(blocks or [np.full(n, unit_gain(1e6))])
    return RoundSimulator(
        fleet,
        channel,
        network or NetworkConfig(bandwidth_hz=n * 1e6),
        np.random.default_rng(seed),
        protocol=protocol,
        coherence_time_s=coherence_time_s,
        availability=availability,
    )


def workload(compute_flops: list[float], upload_bits: list[float]) -> DeviceWorkload:
    """With 1 FLOP/cycle, E = 1, D = 1: training FLOPs = 3 x forward, so t_comp = 3 F / f."""
    n = len(compute_flops)
    return DeviceWorkload(
        forward_flops_per_sample=np.array(compute_flops, dtype=float) / 3.0,
        upload_bits=np.array(upload_bits, dtype=float),
        download_bits=0.0,
        num_samples=np.ones(n, dtype=np.int64),
        local_epochs=1,
    )


def select(mask: list[bool], bandwidth_hz: float = 1e6) -> RoundDecision:
    sel = np.array(mask)
    return RoundDecision(sel, np.zeros(len(mask)), np.where(sel, bandwidth_hz, 0.0))
