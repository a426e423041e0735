"""The phases of the jobs a round starts, in closed form: downlink, local training, upload.

Pure functions of the simulator's state and the round's decision (nothing is scheduled here):
:meth:`RoundSimulator._start_jobs` turns the plan into SimPy timeouts, or ends the round in closed
form (:mod:`fedsimenv.sim.closedform`). Imports neither gymnasium nor torch (timing plane).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from channels import shannon_rate_bps
from fedsimenv.sim.timing import compute_power_w, depletion_time, transfer_finish_times
from fedsimenv.sim.types import DeviceWorkload, FloatArray, IntArray, RoundDecision
from fedsimenv.sim.uplink import UploadPlan

if TYPE_CHECKING:
    from fedsimenv.sim.simulator import RoundSimulator


@dataclass(frozen=True)
class PhasePlan:
    """Every phase end of the starting jobs (arrays over N devices unless said otherwise).

    Attributes:
        idx: Indices of the starting devices.
        tx_power_w: Transmit power each starting device uses (its maximum elsewhere), W.
        cpu_freq_hz: CPU frequency each starting device uses (its maximum elsewhere), Hz.
        dl_finish_s: End of each device's download (the round start where none), s.
        comp_finish_s: End of local training (NaN where no job), s.
        upload: End of the upload, delivery and ARQ tries.
        downlink_rate_bps: Broadcast rate in the block the round starts in, bit/s.
    """

    idx: IntArray
    tx_power_w: FloatArray
    cpu_freq_hz: FloatArray
    dl_finish_s: FloatArray
    comp_finish_s: FloatArray
    upload: UploadPlan
    downlink_rate_bps: float


def plan_phases(
    sim: RoundSimulator,
    starting: NDArray[np.bool_],
    bandwidth_hz: FloatArray,
    decision: RoundDecision,
    workload: DeviceWorkload,
    start: float,
    per_rng: np.random.Generator,
) -> PhasePlan:
    """Download, training and upload ends of the jobs ``starting`` at ``start`` (the ARQ tries'
    uniforms are drawn from ``per_rng``, the simulator's packet-error stream)."""
    fleet, tc = sim.fleet, sim.blocks.length_s
    noise = sim.noise_psd_w_per_hz
    idx = np.flatnonzero(starting)
    power = decision.tx_power_w if decision.tx_power_w is not None else fleet.tx_power_w
    freq = decision.cpu_freq_hz if decision.cpu_freq_hz is not None else fleet.cpu_freq_hz
    power = np.where(starting, power, fleet.tx_power_w).astype(np.float64)
    freq = np.where(starting, freq, fleet.cpu_freq_hz).astype(np.float64)

    downlink_cache: dict[int, float] = {}  # a pure function of the block: computed once each

    def downlink_rate(block: int) -> FloatArray:
        if block not in downlink_cache:
            g_min = sim.blocks.gain(block)[idx].min()
            rate = shannon_rate_bps(sim.network.downlink_bandwidth_hz, sim.bs_tx_power_w, g_min, noise)
            downlink_cache[block] = float(rate)
        return np.full(len(idx), downlink_cache[block])

    # One downlink at the weakest starting device's rate; a device whose model is its own (a
    # sub-model, a compressed model) is done once its own bits are through (the BS sends the
    # nested content first), so each device's download ends at its own time.
    dl_bits = np.asarray(workload.download_bits, dtype=np.float64)
    dl_bits = np.full(starting.shape, dl_bits) if dl_bits.ndim == 0 else dl_bits
    dl_finish_k = transfer_finish_times(np.full(len(idx), start), dl_bits[idx], downlink_rate, tc)
    dl_finish = np.full(fleet.num_devices, start, dtype=np.float64)
    dl_finish[idx] = dl_finish_k
    downlink_rate_bps = float(downlink_rate(int(np.floor(start / tc)) if np.isfinite(tc) else 0)[0])
    cycles = workload.training_flops / fleet.flops_per_cycle
    comp_finish = np.where(starting, dl_finish + cycles / freq, np.nan)
    owner = sim.resource_block_owner

    def uplink_rate(block: int) -> FloatArray:
        return sim.uplink.rate_bps(
            bandwidth_hz, power, sim.blocks.gain(block), owner, sim.blocks.rb_gain(block)
        )

    uniforms = sim.uplink.draw_tries(per_rng, len(idx))
    bits = np.where(starting, workload.upload_bits, 0.0)
    upload = sim.uplink.plan(comp_finish, bits, uplink_rate, bandwidth_hz, tc, uniforms, idx)
    return PhasePlan(idx, power, freq, dl_finish, comp_finish, upload, downlink_rate_bps)


def failure_times(sim: RoundSimulator, plan: PhasePlan, start: float) -> tuple[FloatArray, FloatArray]:
    """When each device would fail on its own, s: going off (Markov availability) and its battery
    running out over the planned phases. Never (inf) without availability and with unlimited
    batteries: then nothing is computed."""
    fleet, n = sim.fleet, sim.fleet.num_devices
    never = np.full(n, np.inf)
    offline_at = sim.availability.next_off_time_s() if sim.availability is not None else never
    battery_at = never
    if not np.isinf(sim.battery_j).all():
        battery_at = depletion_time(
            sim.battery_j,
            [
                (
                    np.full(fleet.num_devices, start),
                    plan.dl_finish_s,
                    np.full(fleet.num_devices, fleet.idle_power_w),
                ),
                (plan.dl_finish_s, plan.comp_finish_s, compute_power_w(fleet.kappa, plan.cpu_freq_hz)),
                (plan.comp_finish_s, plan.upload.finish_s, plan.tx_power_w),
            ],
        )
    return offline_at, battery_at
