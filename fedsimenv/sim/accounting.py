"""Energy and time accounting of a finished round: the :class:`RoundReport` from the jobs' phase times.

Energy is charged for what happened inside the round's window ``[start, end]``: compute at
``kappa f^3`` W (f the job's CPU frequency), upload at the job's transmit power ``p`` (all ARQ tries),
and idle power for the rest of the time a device was on, whether or not it had a job: an unselected
device idles the whole round, a failed one until it failed. Everything here is pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedsimenv.sim.timing import compute_power_w, nan_to_zero
from fedsimenv.sim.types import (
    STATUS_FAILED,
    STATUS_IDLE,
    BoolArray,
    FloatArray,
    IntArray,
    RoundDecision,
    RoundReport,
)
from fedsimenv.sim.world import DeviceFleet

if TYPE_CHECKING:
    from fedsimenv.sim.simulator import RoundSimulator


#: Phase-time keys of :attr:`JobState.times`.
PHASES = ("dl_start", "dl_finish", "comp_start", "comp_finish", "up_start", "up_finish")


@dataclass
class JobState:
    """Per-device state of the current/last job (arrays over N devices, mutated by the simulator)."""

    times: dict[str, FloatArray]
    bandwidth_hz: FloatArray
    rho: FloatArray
    bits: FloatArray
    tx_power_w: FloatArray
    cpu_freq_hz: FloatArray
    transmissions: IntArray
    resource_blocks: IntArray
    stop_s: FloatArray
    status: np.ndarray
    reason: np.ndarray
    version: IntArray

    @classmethod
    def fresh(cls, fleet: DeviceFleet) -> JobState:
        """No job yet: NaN times, idle, each device at its maximum power and frequency."""
        n = fleet.num_devices
        return cls(
            times={key: np.full(n, np.nan) for key in PHASES},
            bandwidth_hz=np.zeros(n),
            rho=np.zeros(n),
            bits=np.zeros(n),
            tx_power_w=fleet.tx_power_w.astype(np.float64).copy(),
            cpu_freq_hz=fleet.cpu_freq_hz.astype(np.float64).copy(),
            transmissions=np.zeros(n, dtype=np.int64),
            resource_blocks=np.zeros(n, dtype=np.int64),
            stop_s=np.full(n, np.nan),
            status=np.full(n, STATUS_IDLE, dtype=object),
            reason=np.full(n, "", dtype=object),
            version=np.zeros(n, dtype=np.int64),
        )

    def start(
        self,
        idx: IntArray,
        version: int,
        bandwidth_hz: FloatArray,
        pruning_rate: FloatArray,
        bits: FloatArray,
        tx_power_w: FloatArray,
        cpu_freq_hz: FloatArray,
    ) -> None:
        """Record the settings of the jobs starting on devices ``idx`` (arrays over N devices)."""
        self.start_at(
            idx, version, bandwidth_hz[idx], pruning_rate[idx], bits[idx], tx_power_w[idx], cpu_freq_hz[idx]
        )

    def start_at(
        self,
        idx: IntArray,
        version: int,
        bandwidth_hz: FloatArray,
        pruning_rate: FloatArray,
        bits: FloatArray,
        tx_power_w: FloatArray,
        cpu_freq_hz: FloatArray,
    ) -> None:
        """:meth:`start` with each setting given on the devices ``idx`` only, in that order (the
        fast round has them already)."""
        self.version[idx] = version
        self.bandwidth_hz[idx] = bandwidth_hz
        self.rho[idx] = pruning_rate
        self.bits[idx] = bits
        self.tx_power_w[idx] = tx_power_w
        self.cpu_freq_hz[idx] = cpu_freq_hz


def report_round(
    sim: RoundSimulator, decision: RoundDecision, start: float, end: float, powered: BoolArray
) -> RoundReport:
    """The report of the round ``[start, end]`` (see the module docstring for the energy model)."""
    fleet, jobs, t, n = sim.fleet, sim.jobs, sim.jobs.times, sim.fleet.num_devices
    jobs_span_rounds, ofdma = sim.rules.jobs_span_rounds, sim.uplink.ofdma
    stop = np.where(np.isnan(jobs.stop_s), end, np.minimum(jobs.stop_s, end))

    def overlap(a: FloatArray, b: FloatArray) -> FloatArray:
        lo, hi = np.maximum(a, start), np.minimum(np.minimum(b, stop), end)
        return nan_to_zero(np.maximum(hi - lo, 0.0))

    compute_s = overlap(t["comp_start"], t["comp_finish"])
    upload_s = overlap(t["up_start"], t["up_finish"])
    # A device that failed is off (or flat) from then on; one that merely finished idles.
    alive_until = np.where(jobs.status == STATUS_FAILED, np.maximum(stop, start), end)
    idle_s = np.where(powered, np.maximum(alive_until - start - compute_s - upload_s, 0.0), 0.0)
    arrived = np.zeros(n, dtype=bool)
    arrived[sim.arrivals] = True
    has_job = ~np.isnan(t["dl_start"])
    source = jobs.bandwidth_hz if jobs_span_rounds or ofdma else decision.bandwidth_hz
    bandwidth = np.array(source, dtype=np.float64)
    power = np.where(has_job, jobs.tx_power_w, fleet.tx_power_w)
    freq = np.where(has_job, jobs.cpu_freq_hz, fleet.cpu_freq_hz)
    gain = sim.blocks.gain_at(start)
    rb_gain = sim.blocks.rb_gain(sim.blocks.index_at(start))
    rate = sim.uplink.rate_bps(bandwidth, power, gain, sim.resource_block_owner, rb_gain)
    return RoundReport(
        round_index=sim.round_index,
        start_time_s=start,
        end_time_s=end,
        selected=decision.selected.copy(),
        arrived=arrived,
        channel_gain_linear=gain.copy(),
        bandwidth_hz=bandwidth,
        pruning_rate=np.where(decision.selected, decision.pruning_rate, 0.0),
        uplink_rate_bps=rate,
        downlink_rate_bps=sim.downlink_rate_bps,
        download_start_s=t["dl_start"].copy(),
        download_finish_s=t["dl_finish"].copy(),
        compute_start_s=t["comp_start"].copy(),
        compute_finish_s=t["comp_finish"].copy(),
        upload_start_s=t["up_start"].copy(),
        upload_finish_s=t["up_finish"].copy(),
        upload_bits=np.where(has_job, jobs.bits, 0.0),
        compute_energy_j=compute_power_w(fleet.kappa, freq) * compute_s,
        transmit_energy_j=power * upload_s,
        idle_energy_j=fleet.idle_power_w * idle_s,
        status=jobs.status.astype(str),
        reason=jobs.reason.astype(str),
        staleness=np.where(arrived, sim.version - 1 - jobs.version, 0)
        if jobs_span_rounds
        else np.zeros(n, dtype=np.int64),
        battery_j=sim.battery_j.copy(),
        stop_s=np.array(jobs.stop_s, dtype=np.float64),
        protocol=sim.protocol.name,
        tx_power_w=power,
        cpu_freq_hz=freq,
        transmissions=np.where(has_job, jobs.transmissions, 0),
        resource_blocks=np.where(has_job, jobs.resource_blocks, 0) if ofdma else None,
    )


__all__ = ["PHASES", "JobState", "report_round"]
