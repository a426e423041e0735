"""SimPy simulation of federated rounds over an FDMA or OFDMA uplink.

A job, per selected device k (the model of docs/DESIGN.md):

1. downlink broadcast of the global model to the devices starting a job, at the rate of the weakest
   of them: ``r_dl = B_dl log2(1 + P_bs g_min / (N0 B_dl))``;
2. local training: ``t_comp_k = E D_k 3 F_fwd_k / (f_k phi_k)`` with the forward FLOPs of the device's
   actual pruned model; compute energy ``kappa cycles f_k^2`` (power ``kappa f_k^3``);
3. upload of ``bits_k`` at ``r_k = b_k log2(1 + p_k g_k / (N0 b_k))`` (FDMA) or over its resource
   blocks (OFDMA), possibly in several ARQ tries when packet errors are on
   (:mod:`fedsimenv.sim.uplink`); energy ``p_k t_up``.

The decision may set each device's p_k and f_k (at most its maxima, used otherwise). Energy and the
report: :mod:`fedsimenv.sim.accounting`; channel blocks (coherence time Tc, transfers advance
piecewise over them): :mod:`fedsimenv.sim.blocks`.
Every phase end is computed in closed form (:mod:`fedsimenv.sim.phases`) and scheduled as a SimPy
timeout, so a round costs O(N) events. Failures interrupt a device's process (``simpy.Interrupt``):
the device going off (Markov availability), its battery running out, or the server ending the round
(deadline, over-commit). An interrupted update is lost; the energy spent up to then is counted. An
upload whose every try hit a packet error ends as ``failed`` / ``packet-error``, not aggregated.

Protocols (``ProtocolConfig``): synchronous, deadline, over-commit and buffered asynchronous, each a
class registered in :data:`fedsimenv.sim.protocols.PROTOCOLS` whose hooks the simulator calls.
Where no hook, failure or earlier event can act (a synchronous round without mid-job failures), the
round ends in closed form without the event loop, with the same result bit for bit
(:mod:`fedsimenv.sim.closedform`; ``closed_form_rounds = False`` forces the event loop).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import simpy
from numpy.typing import NDArray

from channels import ChannelModel, DynamicChannel, dbm_to_watt
from channels.mobility import StaticMobility
from fedsimenv.config import NetworkConfig, ProtocolConfig
from fedsimenv.sim.accounting import PHASES, JobState, report_round
from fedsimenv.sim.availability import MarkovAvailability
from fedsimenv.sim.blocks import ChannelBlocks, EvolvingChannel
from fedsimenv.sim.closedform import finish_round, protocol_allows, queue_is_inert
from fedsimenv.sim.fastround import FastSummary, SampleFactorCache, fast_rounds_possible, run_fast_round
from fedsimenv.sim.phases import failure_times, plan_phases
from fedsimenv.sim.processes import cyclic_gc_paused, start_processes
from fedsimenv.sim.protocols import RoundProtocol, build_protocol
from fedsimenv.sim.types import (
    STATUS_DROPPED,
    STATUS_FAILED,
    STATUS_IDLE,
    STATUS_IN_FLIGHT,
    DeviceWorkload,
    FloatArray,
    IntArray,
    RoundDecision,
    RoundReport,
)
from fedsimenv.sim.uplink import Uplink
from fedsimenv.sim.world import DeviceFleet


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
        self.uplink = Uplink(network, self.noise_psd_w_per_hz)
        self.env = simpy.Environment()
        self.round_index = 0
        self.version = 0  # aggregations so far (async staleness)
        n = fleet.num_devices
        self.battery_j: FloatArray = (
            fleet.battery_capacity_j.astype(np.float64).copy()
            if fleet.battery_capacity_j is not None
            else np.full(n, np.inf)
        )
        # Own children of the channel stream (spawned after the channel's, so its draws are unchanged):
        # packet-error tries and per-RB fading.
        gain0 = channel.reset(fleet.position_m, rng, fleet.shadowing_db)
        self._per_rng, rb_rng = rng.spawn(2)
        rb_count = self.uplink.num_blocks if self.uplink.rb_fading_independent else None
        self.blocks = ChannelBlocks(channel, gain0, coherence_time_s, rb_count, rb_rng, max_blocks_per_round)
        # Per-device state of the current/last job.
        self.jobs = JobState.fresh(fleet)
        self._times = self.jobs.times
        self._active = np.zeros(n, dtype=bool)
        self._job_id = np.zeros(n, dtype=np.int64)
        self._delivered = np.zeros(n, dtype=bool)
        self._owner: IntArray | None = None
        self._rb_held: IntArray | None = None  # RB owners of the last round (jobs may still hold them)
        self._num_active = 0
        self._downlink_rate_bps = 0.0
        self._processes: dict[int, simpy.Process] = {}
        self._arrivals: list[int] = []
        self._round_done: simpy.Event = self.env.event()
        #: Finish eligible rounds in closed form (:mod:`fedsimenv.sim.closedform`); False = always SimPy.
        self.closed_form_rounds = True
        self.closed_form_count = 0  # rounds finished in closed form (tests, profiling)
        #: Run eligible rounds whole in array form (:mod:`fedsimenv.sim.fastround`); False = never.
        self.fast_rounds = fast_rounds_possible(self)
        self.fast_round_count = 0  # rounds run by the fast path (tests, profiling)
        #: The last fast round's report and summary figures (:func:`~fedsimenv.sim.fastround.report_summary`).
        self.fast_summary: FastSummary | None = None
        # The fast path's per-simulator constants (:mod:`fedsimenv.sim.fastround`).
        self.fast_templates: tuple[np.ndarray, np.ndarray] | None = None
        self.fast_sample_factor: SampleFactorCache | None = None
        self.fast_max_power: tuple[DeviceFleet, FloatArray] | None = None

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
        return self.jobs.bandwidth_hz

    @property
    def resource_block_owner(self) -> IntArray | None:
        """(R,) device of each resource block in the current round (OFDMA), -1 = unused."""
        return self._owner

    @property
    def downlink_rate_bps(self) -> float:
        """Broadcast rate of the current round's new jobs (0 if none started)."""
        return self._downlink_rate_bps

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

    @property
    def channel_gain_linear(self) -> FloatArray:
        """Linear uplink gains of the block the next round starts in (the CSI an agent can observe)."""
        return self.blocks.gain_at(self.now_s)

    # -- a round ------------------------------------------------------------------------------

    def run_round(
        self, decision: RoundDecision, workload: DeviceWorkload, *, validated: bool = False
    ) -> RoundReport:
        """Simulate one round (one aggregation) and advance the clock to its end.

        ``validated=True`` skips :meth:`RoundDecision.validate` for a decision known to be feasible
        (the env's decoded actions are, by construction).
        """
        if not validated:
            decision.validate(
                self.fleet.num_devices,
                self.network.bandwidth_hz,
                self.fleet.tx_power_w,
                self.fleet.cpu_freq_hz,
                self.uplink.num_blocks if decision.resource_block_owner is not None else None,
            )
        if self.fast_rounds and self.closed_form_rounds:
            report = run_fast_round(self, decision, workload)
            if report is not None:
                self.fast_round_count += 1
                return report
        with cyclic_gc_paused():
            return self._run_round(decision, workload)

    def _run_round(self, decision: RoundDecision, workload: DeviceWorkload) -> RoundReport:
        n = self.fleet.num_devices
        start = self.now_s
        self.blocks.start_round(start)
        on = self.availability.advance_to(start) if self.availability is not None else np.ones(n, bool)
        powered = on & (self.battery_j > 0)
        self._arrivals = []
        self._round_done = self.env.event()
        # Forget the finished jobs of earlier rounds (async jobs in flight are kept).
        idle = ~self._active
        self.jobs.status[idle] = STATUS_IDLE
        self.jobs.reason[idle] = ""
        self.jobs.stop_s[idle] = np.nan
        self.jobs.transmissions[idle] = 0
        for key in PHASES:
            self._times[key][idle] = np.nan
        self._downlink_rate_bps = 0.0

        # In async mode devices already working keep their job; the others may start one.
        starting = decision.selected & ~self._active
        unavailable = starting & ~powered
        self.mark(unavailable, STATUS_FAILED, "unavailable", start)
        starting &= powered
        owner, bandwidth = self.uplink.assign(decision.resource_block_owner, decision.bandwidth_hz.copy())
        if owner is not None:
            # Async: blocks still held by jobs in flight are not free for new jobs.
            held = self._rb_held if self._rb_held is not None else np.full(len(owner), -1)
            held = np.where((held >= 0) & self._active[np.maximum(held, 0)], held, -1)
            if (held >= 0).any():
                owner = np.where(held >= 0, -1, owner)
                counts = np.bincount(owner[owner >= 0], minlength=len(bandwidth))
                bandwidth = np.asarray(counts * self.uplink.rb_bandwidth_hz, dtype=np.float64)
            no_block = starting & (bandwidth <= 0)
            self.mark(no_block, STATUS_FAILED, "no-resource-block", start)
            starting &= ~no_block
            owner = np.where((owner >= 0) & starting[np.maximum(owner, 0)], owner, -1)
            self._owner = np.where(held >= 0, held, owner)
        starting, bandwidth = self.rules.admit(self, starting, bandwidth, start)
        if self._start_jobs(starting, bandwidth, decision, workload, start):
            self.closed_form_count += 1
        else:
            if self._num_active == 0:
                self._round_done.succeed()
            else:
                self.rules.on_round_start(self)
            self.env.run(until=self._round_done)
        end = self.now_s
        if self.rules.jobs_span_rounds:
            self.jobs.status[self._active] = STATUS_IN_FLIGHT
            self.version += 1
        report = self._report(decision, start, end, powered)
        self._rb_held, self._owner = self._owner, None
        spent = report.compute_energy_j + report.transmit_energy_j + report.idle_energy_j
        self.battery_j = np.maximum(self.battery_j - spent, 0.0)
        report = dataclasses.replace(report, battery_j=self.battery_j.copy())
        self.round_index += 1
        self.blocks.end_round(start, end)
        return report

    def mark(self, mask: NDArray[np.bool_], status: str, reason: str, time_s: float) -> None:
        self.jobs.status[mask] = status
        self.jobs.reason[mask] = reason
        self.jobs.stop_s[mask] = time_s

    def _start_jobs(
        self,
        starting: NDArray[np.bool_],
        bandwidth_hz: FloatArray,
        decision: RoundDecision,
        workload: DeviceWorkload,
        start: float,
    ) -> bool:
        """Plan every phase of the new jobs in closed form and start their SimPy processes (or, where
        nothing can interfere, end the round in closed form: returns True then)."""
        if not starting.any():
            return False
        plan = plan_phases(self, starting, bandwidth_hz, decision, workload, start, self._per_rng)
        idx, power, freq, upload = plan.idx, plan.tx_power_w, plan.cpu_freq_hz, plan.upload
        dl_finish, comp_finish, up_finish = plan.dl_finish_s, plan.comp_finish_s, upload.finish_s
        self._downlink_rate_bps = plan.downlink_rate_bps
        fleet, owner = self.fleet, self._owner

        t, jobs = self._times, self.jobs
        t["dl_start"][idx] = start
        t["dl_finish"][idx] = t["comp_start"][idx] = dl_finish[idx]
        t["comp_finish"][idx] = t["up_start"][idx] = comp_finish[idx]
        t["up_finish"][idx] = up_finish[idx]
        self._active[idx] = True
        self._num_active += len(idx)
        self._job_id[idx] += 1
        self._delivered[idx] = upload.delivered[idx]
        jobs.start(idx, self.version, bandwidth_hz, decision.pruning_rate, workload.upload_bits, power, freq)
        jobs.transmissions[idx] = upload.transmissions[idx]
        if owner is not None:
            jobs.resource_blocks[idx] = np.bincount(owner[owner >= 0], minlength=fleet.num_devices)[idx]
        jobs.status[idx] = STATUS_IN_FLIGHT
        jobs.reason[idx] = ""

        offline_at, battery_at = failure_times(self, plan, start)
        fail_at = np.where(offline_at <= battery_at, offline_at, battery_at)  # as chosen below
        watched = fail_at[idx] < up_finish[idx]
        if (
            self.closed_form_rounds
            and protocol_allows(self.rules)
            and not watched.any()
            and self._num_active == len(idx)
            and queue_is_inert(self.env)
            and finish_round(self, idx, start, dl_finish, comp_finish, up_finish)
        ):
            return True
        start_processes(self, idx, start, dl_finish, up_finish, offline_at, battery_at)
        return False

    def drop_active(self, reason: str) -> None:
        """Interrupt every job in flight: the server discards it (status dropped, ``reason``)."""
        for k in np.flatnonzero(self._active):
            process = self._processes[int(k)]
            if process.is_alive:
                process.interrupt((STATUS_DROPPED, reason))

    # -- report ---------------------------------------------------------------------------------

    def _report(
        self, decision: RoundDecision, start: float, end: float, powered: NDArray[np.bool_]
    ) -> RoundReport:
        return report_round(self, decision, start, end, powered)
