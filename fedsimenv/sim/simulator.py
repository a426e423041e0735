"""SimPy simulation of federated rounds over an FDMA uplink.

A job, per selected device k (the model of docs/DESIGN.md):

1. downlink broadcast of the global model to the devices starting a job, at the rate of the weakest
   of them: ``r_dl = B_dl log2(1 + P_bs g_min / (N0 B_dl))``;
2. local training: ``t_comp_k = E D_k 3 F_fwd_k / (f_k phi_k)`` with the forward FLOPs of the device's
   actual pruned model; compute energy ``kappa cycles f_k^2`` (power ``kappa f_k^3``);
3. upload of ``bits_k`` at ``r_k = b_k log2(1 + p_k g_k / (N0 b_k))``; energy ``p_k t_up``.

With a coherence time Tc, gains are redrawn every Tc seconds of simulated time and a transfer
advances piecewise over the blocks at each block's rate; without one, one block spans one round.
Every phase end is computed in closed form (:mod:`fedsimenv.sim.timing`) and scheduled as a SimPy
timeout, so a round costs O(N) events. Failures interrupt a device's process (``simpy.Interrupt``):
the device going off (Markov availability), its battery running out, or the server ending the round
(deadline, over-commit). An interrupted update is lost; the energy spent up to then is counted.

Protocols (``ProtocolConfig``): synchronous, deadline, over-commit and buffered asynchronous, each a
class registered in :data:`fedsimenv.sim.protocols.PROTOCOLS` whose hooks the simulator calls.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import simpy
from numpy.typing import NDArray

from channels import ChannelModel, DynamicChannel, dbm_to_watt, shannon_rate_bps
from channels.checks import WorkLimitError
from channels.mobility import StaticMobility
from fedsimenv.config import NetworkConfig, ProtocolConfig
from fedsimenv.sim.availability import MarkovAvailability
from fedsimenv.sim.protocols import RoundProtocol, build_protocol
from fedsimenv.sim.timing import compute_power_w, depletion_time, transfer_finish_times
from fedsimenv.sim.types import (
    STATUS_ARRIVED,
    STATUS_DROPPED,
    STATUS_FAILED,
    STATUS_IDLE,
    STATUS_IN_FLIGHT,
    DeviceWorkload,
    FloatArray,
    RoundDecision,
    RoundReport,
)
from fedsimenv.sim.world import DeviceFleet


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while SimPy churns through short-lived events.

    A round at N = 10,000 allocates ~10^5 event objects; each generation-0 collection then also walks
    the (large, torch-laden) older generations often enough to make the round superlinear in N. Nothing
    here creates reference cycles that need collecting mid-round; the previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class EvolvingChannel(Protocol):
    """What the simulator needs of a channel: :class:`channels.DynamicChannel` implements it."""

    @property
    def distance_m(self) -> FloatArray: ...

    def reset(
        self, position_m: FloatArray, rng: np.random.Generator, shadowing_db: FloatArray | None = None
    ) -> FloatArray: ...

    def advance(self, dt_s: float) -> FloatArray: ...


_PHASES = ("dl_start", "dl_finish", "comp_start", "comp_finish", "up_start", "up_finish")


class RoundSimulator:
    """Owns the SimPy clock, the devices' jobs, batteries, availability and the channel state.

    Args:
        fleet: The devices (initial positions and shadowing).
        channel: The channel; a plain :class:`ChannelModel` is wrapped with static devices.
        network: Bandwidths, noise and powers.
        rng: Stream for the channel's evolution (fading, shadowing, LOS state, mobility).
        protocol: How rounds end (default synchronous).
        coherence_time_s: Fading block length; None = one block per round.
        availability: On/off process of the devices; None = always on.
        max_blocks_per_round: Most coherence blocks a round may span (else :class:`WorkLimitError`).
    """

    def __init__(
        self,
        fleet: DeviceFleet,
        channel: ChannelModel | EvolvingChannel,
        network: NetworkConfig,
        rng: np.random.Generator,
        protocol: ProtocolConfig | None = None,
        coherence_time_s: float | None = None,
        availability: MarkovAvailability | None = None,
        max_blocks_per_round: int = 100_000,
    ) -> None:
        self.fleet = fleet
        if isinstance(channel, ChannelModel):
            radius_m = float(np.max(fleet.distance_m)) + 1.0
            channel = DynamicChannel(channel, StaticMobility(StaticMobility.Params()), radius_m, 0.0)
        self.channel: EvolvingChannel = channel
        self.network = network
        self.protocol = protocol or ProtocolConfig()
        self.rules: RoundProtocol = build_protocol(self.protocol)
        self.coherence_time_s = coherence_time_s
        self.max_blocks_per_round = max_blocks_per_round
        self._first_block = 0  # the block the current round started in
        self.availability = availability
        # Noise figure and inter-cell interference (a PSD, so it scales with each share like noise)
        # fold into one effective PSD: r = b log2(1 + p g / ((N0 F + I0) b)) keeps the textbook form
        # that the optimisers assume.
        interference = network.interference_psd_dbm_per_hz
        self.noise_psd_w_per_hz = float(
            dbm_to_watt(network.noise_psd_dbm_per_hz) * 10 ** (network.noise_figure_db / 10)
            + (dbm_to_watt(interference) if interference is not None else 0.0)
        )
        self.bs_tx_power_w = float(dbm_to_watt(network.bs_tx_power_dbm))
        self.rng = rng
        self.env = simpy.Environment()
        self.round_index = 0
        self.version = 0  # aggregations so far (async staleness)
        n = fleet.num_devices
        self.battery_j: FloatArray = (
            fleet.battery_capacity_j.astype(np.float64).copy()
            if fleet.battery_capacity_j is not None
            else np.full(n, np.inf)
        )
        # Block 0 is the channel at time 0; each later block advances the channel by one step.
        self._blocks: dict[int, FloatArray] = {0: channel.reset(fleet.position_m, rng, fleet.shadowing_db)}
        self._last_block = 0
        self._round_gain = self._blocks[0]
        # Per-device state of the current/last job.
        self._times = {key: np.full(n, np.nan) for key in _PHASES}
        self._active = np.zeros(n, dtype=bool)
        self._job_id = np.zeros(n, dtype=np.int64)
        self._job_version = np.zeros(n, dtype=np.int64)
        self._job_bandwidth = np.zeros(n)
        self._job_rho = np.zeros(n)
        self._job_bits = np.zeros(n)
        self._stop_s = np.full(n, np.nan)
        self._status = np.full(n, STATUS_IDLE, dtype=object)
        self._reason = np.full(n, "", dtype=object)
        self._num_active = 0
        self._downlink_rate_bps = 0.0
        self._processes: dict[int, simpy.Process] = {}
        self._arrivals: list[int] = []
        self._round_done: simpy.Event = self.env.event()

    # -- channel ------------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        """Simulated time elapsed since the start of the episode."""
        return float(self.env.now)

    @property
    def busy(self) -> NDArray[np.bool_]:
        """Devices with a job in flight (async protocol); they cannot start another one."""
        return self._active.copy()

    @property
    def job_bandwidth_hz(self) -> FloatArray:
        """Bandwidth of each device's current/last job (a view: protocols read it, never write)."""
        return self._job_bandwidth

    @property
    def arrivals(self) -> list[int]:
        """Devices whose update arrived in the current round, in arrival order."""
        return self._arrivals

    @property
    def round_done(self) -> simpy.Event:
        """The event that ends the current round."""
        return self._round_done

    @property
    def distance_m(self) -> FloatArray:
        """Current distance of each device to the base station (devices may move)."""
        return self.channel.distance_m

    def _block_gain(self, block: int) -> FloatArray:
        """Gains of coherence block ``block``; blocks are drawn in order so the stream is deterministic."""
        if self.coherence_time_s is None:
            return self._round_gain
        if block - self._first_block > self.max_blocks_per_round:
            raise WorkLimitError(
                f"round {self.round_index + 1} spans more than channel.max_blocks_per_round="
                f"{self.max_blocks_per_round} coherence blocks of channel.coherence_time_s="
                f"{self.coherence_time_s:g} s; raise either (the run was stopped)"
            )
        while self._last_block < block:
            self._last_block += 1
            self._blocks[self._last_block] = self.channel.advance(self.coherence_time_s)
        return self._blocks[block]

    def _gain_at(self, time_s: float) -> FloatArray:
        if self.coherence_time_s is None:
            return self._round_gain
        return self._block_gain(int(np.floor(time_s / self.coherence_time_s)))

    @property
    def channel_gain_linear(self) -> FloatArray:
        """Linear uplink gains of the block the next round starts in (the CSI an agent can observe)."""
        return self._gain_at(self.now_s)

    @property
    def _block_length_s(self) -> float:
        return self.coherence_time_s if self.coherence_time_s is not None else np.inf

    # -- a round ------------------------------------------------------------------------------

    def run_round(self, decision: RoundDecision, workload: DeviceWorkload) -> RoundReport:
        """Simulate one round (one aggregation) and advance the clock to its end."""
        with _cyclic_gc_paused():
            return self._run_round(decision, workload)

    def _run_round(self, decision: RoundDecision, workload: DeviceWorkload) -> RoundReport:
        n = self.fleet.num_devices
        decision.validate(n, self.network.bandwidth_hz)
        start = self.now_s
        if self.coherence_time_s is not None:
            self._first_block = int(np.floor(start / self.coherence_time_s))
        on = self.availability.advance_to(start) if self.availability is not None else np.ones(n, bool)
        powered = on & (self.battery_j > 0)
        self._arrivals = []
        self._round_done = self.env.event()
        # Forget the finished jobs of earlier rounds (async jobs in flight are kept).
        idle = ~self._active
        self._status[idle] = STATUS_IDLE
        self._reason[idle] = ""
        self._stop_s[idle] = np.nan
        for key in _PHASES:
            self._times[key][idle] = np.nan
        self._downlink_rate_bps = 0.0

        # In async mode devices already working keep their job; the others may start one.
        starting = decision.selected & ~self._active
        unavailable = starting & ~powered
        self.mark(unavailable, STATUS_FAILED, "unavailable", start)
        starting &= powered
        starting, bandwidth = self.rules.admit(self, starting, decision.bandwidth_hz.copy(), start)
        self._start_jobs(starting, bandwidth, decision.pruning_rate, workload, start)

        if self._num_active == 0:
            self._round_done.succeed()
        else:
            self.rules.on_round_start(self)
        self.env.run(until=self._round_done)
        end = self.now_s
        if self.rules.jobs_span_rounds:
            self._status[self._active] = STATUS_IN_FLIGHT
            self.version += 1
        report = self._report(decision, start, end, powered)
        spent = report.compute_energy_j + report.transmit_energy_j + report.idle_energy_j
        self.battery_j = np.maximum(self.battery_j - spent, 0.0)
        report = dataclasses.replace(report, battery_j=self.battery_j.copy())
        self.round_index += 1
        if self.coherence_time_s is None:
            self._round_gain = self.channel.advance(end - start)
        else:
            current = int(np.floor(end / self.coherence_time_s))
            self._blocks = {b: g for b, g in self._blocks.items() if b >= current}
        return report

    def mark(self, mask: NDArray[np.bool_], status: str, reason: str, time_s: float) -> None:
        self._status[mask] = status
        self._reason[mask] = reason
        self._stop_s[mask] = time_s

    def _start_jobs(
        self,
        starting: NDArray[np.bool_],
        bandwidth_hz: FloatArray,
        pruning_rate: FloatArray,
        workload: DeviceWorkload,
        start: float,
    ) -> None:
        """Plan every phase of the new jobs in closed form and start their SimPy processes."""
        if not starting.any():
            return
        fleet, tc = self.fleet, self._block_length_s
        noise = self.noise_psd_w_per_hz
        idx = np.flatnonzero(starting)

        def downlink_rate(block: int) -> FloatArray:
            g_min = self._block_gain(block)[idx].min()
            rate = shannon_rate_bps(self.network.downlink_bandwidth_hz, self.bs_tx_power_w, g_min, noise)
            return np.full(len(idx), float(rate))

        # One downlink at the weakest starting device's rate; a device whose model is its own (a
        # sub-model, a compressed model) is done once its own bits are through (the BS sends the
        # nested content first), so each device's download ends at its own time.
        dl_bits = np.broadcast_to(np.asarray(workload.download_bits, dtype=np.float64), starting.shape)
        dl_finish_k = transfer_finish_times(np.full(len(idx), start), dl_bits[idx], downlink_rate, tc)
        dl_finish = np.full(fleet.num_devices, start, dtype=np.float64)
        dl_finish[idx] = dl_finish_k
        self._downlink_rate_bps = float(downlink_rate(int(np.floor(start / tc)) if np.isfinite(tc) else 0)[0])
        cycles = workload.training_flops / fleet.flops_per_cycle
        comp_finish = np.where(starting, dl_finish + cycles / fleet.cpu_freq_hz, np.nan)

        def uplink_rate(block: int) -> FloatArray:
            return shannon_rate_bps(bandwidth_hz, fleet.tx_power_w, self._block_gain(block), noise)

        up_finish = transfer_finish_times(
            comp_finish, np.where(starting, workload.upload_bits, 0.0), uplink_rate, tc
        )

        t = self._times
        t["dl_start"][idx] = start
        t["dl_finish"][idx] = t["comp_start"][idx] = dl_finish[idx]
        t["comp_finish"][idx] = t["up_start"][idx] = comp_finish[idx]
        t["up_finish"][idx] = up_finish[idx]
        self._active[idx] = True
        self._num_active += len(idx)
        self._job_id[idx] += 1
        self._job_version[idx] = self.version
        self._job_bandwidth[idx] = bandwidth_hz[idx]
        self._job_rho[idx] = pruning_rate[idx]
        self._job_bits[idx] = workload.upload_bits[idx]
        self._status[idx] = STATUS_IN_FLIGHT
        self._reason[idx] = ""

        # When would each device fail on its own: going off, or its battery running out?
        offline_at = (
            self.availability.next_off_time_s()
            if self.availability is not None
            else np.full(fleet.num_devices, np.inf)
        )
        idle_w = np.full(fleet.num_devices, fleet.idle_power_w)
        battery_at = depletion_time(
            self.battery_j,
            [
                (np.full(fleet.num_devices, start), dl_finish, idle_w),
                (
                    dl_finish,
                    comp_finish,
                    compute_power_w(fleet.kappa, fleet.cpu_freq_hz),
                ),
                (comp_finish, up_finish, fleet.tx_power_w),
            ],
        )
        for k in idx:
            process = self.env.process(self._job(int(k), self.env.timeout(dl_finish[k] - start)))
            self._processes[int(k)] = process
            fail_at, reason = (
                (offline_at[k], "went-offline")
                if offline_at[k] <= battery_at[k]
                else (battery_at[k], "battery-depleted")
            )
            if fail_at < up_finish[k]:
                self.env.process(self._watchdog(int(k), int(self._job_id[k]), float(fail_at), reason))

    def _job(self, k: int, download: simpy.Event) -> Generator[simpy.Event, Any, None]:
        """One device's job: receive its download, train, upload; stops early if interrupted."""
        try:
            yield download
            yield self.env.timeout(max(self._times["comp_finish"][k] - self.env.now, 0.0))
            yield self.env.timeout(max(self._times["up_finish"][k] - self.env.now, 0.0))
            self._end_job(k, STATUS_ARRIVED, "")
        except simpy.Interrupt as interrupt:
            cause: tuple[str, str] = interrupt.cause  # type: ignore[assignment]
            self._end_job(k, *cause)

    def _watchdog(self, k: int, job_id: int, at_s: float, reason: str) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(max(at_s - self.env.now, 0.0))
        if self._active[k] and self._job_id[k] == job_id:
            self._processes[k].interrupt((STATUS_FAILED, reason))

    def drop_active(self, reason: str) -> None:
        """Interrupt every job in flight: the server discards it (status dropped, ``reason``)."""
        for k in np.flatnonzero(self._active):
            process = self._processes[int(k)]
            if process.is_alive:
                process.interrupt((STATUS_DROPPED, reason))

    def _end_job(self, k: int, status: str, reason: str) -> None:
        self._active[k] = False
        self._num_active -= 1
        self._processes.pop(k, None)
        self._status[k], self._reason[k], self._stop_s[k] = status, reason, self.now_s
        if status == STATUS_ARRIVED:
            self._arrivals.append(k)
        end_now = self.rules.on_job_end(self)
        if self._round_done.triggered:
            return
        if self._num_active == 0 or end_now:
            self._round_done.succeed()

    # -- report ---------------------------------------------------------------------------------

    def _report(
        self, decision: RoundDecision, start: float, end: float, powered: NDArray[np.bool_]
    ) -> RoundReport:
        fleet, n, t = self.fleet, self.fleet.num_devices, self._times
        stop = np.where(np.isnan(self._stop_s), end, np.minimum(self._stop_s, end))

        def overlap(a: FloatArray, b: FloatArray) -> FloatArray:
            lo, hi = np.maximum(a, start), np.minimum(np.minimum(b, stop), end)
            return np.asarray(np.nan_to_num(np.maximum(hi - lo, 0.0)), dtype=np.float64)

        compute_s = overlap(t["comp_start"], t["comp_finish"])
        upload_s = overlap(t["up_start"], t["up_finish"])
        # A device that failed is off (or flat) from then on; one that merely finished idles.
        alive_until = np.where(self._status == STATUS_FAILED, np.maximum(stop, start), end)
        idle_s = np.where(powered, np.maximum(alive_until - start - compute_s - upload_s, 0.0), 0.0)
        arrived = np.zeros(n, dtype=bool)
        arrived[self._arrivals] = True
        gain = self._gain_at(start)
        bandwidth = self._job_bandwidth_for_report(decision)
        uplink_rate = shannon_rate_bps(bandwidth, fleet.tx_power_w, gain, self.noise_psd_w_per_hz)
        has_job = ~np.isnan(t["dl_start"])
        return RoundReport(
            round_index=self.round_index,
            start_time_s=start,
            end_time_s=end,
            selected=decision.selected.copy(),
            arrived=arrived,
            channel_gain_linear=gain.copy(),
            bandwidth_hz=bandwidth,
            pruning_rate=np.where(decision.selected, decision.pruning_rate, 0.0),
            uplink_rate_bps=uplink_rate,
            downlink_rate_bps=self._downlink_rate_bps,
            download_start_s=t["dl_start"].copy(),
            download_finish_s=t["dl_finish"].copy(),
            compute_start_s=t["comp_start"].copy(),
            compute_finish_s=t["comp_finish"].copy(),
            upload_start_s=t["up_start"].copy(),
            upload_finish_s=t["up_finish"].copy(),
            upload_bits=np.where(has_job, self._job_bits, 0.0),
            compute_energy_j=compute_power_w(fleet.kappa, fleet.cpu_freq_hz) * compute_s,
            transmit_energy_j=fleet.tx_power_w * upload_s,
            idle_energy_j=fleet.idle_power_w * idle_s,
            status=self._status.astype(str),
            reason=self._reason.astype(str),
            staleness=np.where(arrived, self.version - 1 - self._job_version, 0)
            if self.rules.jobs_span_rounds
            else np.zeros(n, dtype=np.int64),
            battery_j=self.battery_j.copy(),
            stop_s=np.array(self._stop_s, dtype=np.float64),
            protocol=self.protocol.name,
        )

    def _job_bandwidth_for_report(self, decision: RoundDecision) -> FloatArray:
        source = self._job_bandwidth if self.rules.jobs_span_rounds else decision.bandwidth_hz
        result: FloatArray = np.array(source, dtype=np.float64)
        return result
