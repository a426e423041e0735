"""A whole synchronous round on a static FDMA uplink in array form: the simulator's fast path.

:mod:`fedsimenv.sim.closedform` already ends eligible rounds without the SimPy event loop, but the
round around it still runs the general machinery: per-block rate callbacks, failure watchdogs that
cannot fire, resets and masked updates of every per-device array, a report rebuilt from them and a
``dataclasses.replace`` for the battery. Where the round can only go one way, this module computes
it in one pass over the starting devices and writes the simulator state and the
:class:`~fedsimenv.sim.types.RoundReport` directly, with the same floating-point operations on the
same values, so the result is the same bit for bit (``tests/test_fast_round.py`` compares pickled
reports, observations and state with the general closed form and the event loop).

Used when all of these hold (else :meth:`RoundSimulator._run_round` runs as before):

* static: the protocol is synchronous (no hook, no admission rule, no job across rounds), no
  Markov availability, one channel block per round (no coherence time), FDMA, no packet errors;
* per round: closed-form rounds are on, no job is active and no queued event has a callback,
  every battery is unlimited (so nothing can fail mid-round and every started job arrives), at
  least one device starts and every job ends at a finite time.

Imports neither gymnasium nor torch (timing plane).
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fedsimenv.sim.accounting import PHASES
from fedsimenv.sim.closedform import job_end_times, protocol_allows, queue_is_inert
from fedsimenv.sim.protocols import RoundProtocol
from fedsimenv.sim.timing import compute_power_w
from fedsimenv.sim.types import (
    STATUS_ARRIVED,
    STATUS_IDLE,
    DeviceWorkload,
    FloatArray,
    RoundDecision,
    RoundReport,
    make_report,
)

if TYPE_CHECKING:
    from fedsimenv.sim.simulator import RoundSimulator


def fast_rounds_possible(sim: RoundSimulator) -> bool:
    """The static conditions of the module docstring (fixed for a simulator's lifetime)."""
    rules, uplink = sim.rules, sim.uplink
    return (
        protocol_allows(rules)
        and type(rules).admit is RoundProtocol.admit
        and sim.availability is None
        and sim.coherence_time_s is None
        and not uplink.ofdma
        and uplink.waterfall == 0
    )


def _fdma_rate_bps(bandwidth_hz: FloatArray, power_w: FloatArray, gain: FloatArray, n0: float) -> FloatArray:
    """:func:`channels.shannon_rate_bps`'s common branch, the same operations without its input
    checks (the caller made sure that every input is >= 0, and ignores division and invalid-value
    warnings: a device without bandwidth divides by 0 here)."""
    # ``np.where(b > 0, b log2(1 + p g / (n0 b)), 0)``: every device's rate by the same elementwise
    # operations, then 0 where there is no bandwidth (written over, not selected: fewer calls).
    rate: FloatArray = bandwidth_hz * np.log2(1.0 + power_w * gain / (n0 * bandwidth_hz))
    rate[~(bandwidth_hz > 0)] = 0.0
    return rate


def _broadcast_rate_bps(bandwidth_hz: float, power_w: float, gain_min: float, n0: float) -> float:
    """:func:`channels.shannon_rate_bps` of one receiver, with the same operations on scalars."""
    if not bandwidth_hz > 0:
        return 0.0
    return float(bandwidth_hz * np.log2(1.0 + power_w * gain_min / (n0 * bandwidth_hz)))


def _smallest(values: np.ndarray) -> Any:
    """The smallest entry of a non-empty array, or its first NaN: ``np.minimum.reduce(values)``
    (a -0.0 and a 0.0 may be picked the other way round, which no comparison here sees, and which
    gives the downlink the same rate 0), read off ``argmin`` at a fraction of a reduction's cost."""
    return values[values.argmin()]


def _templates(sim: RoundSimulator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-simulator constant arrays the report starts from (copied, never handed out): the idle
    status (``<U7``, the dtype of ``np.where(has_job, "arrived", "idle")``) and the empty reasons
    (``<U1``, as ``np.full(n, "")``)."""
    cached = sim.fast_templates
    if cached is None or len(cached[0]) != n:
        cached = sim.fast_templates = (np.full(n, STATUS_IDLE, dtype="<U7"), np.full(n, ""))
    return cached


#: ``(key, factor)`` of :func:`_sample_factor`: the key is (epochs, dtype, shape, bytes) of the counts.
SampleFactorCache = tuple[tuple[int, np.dtype[Any], tuple[int, ...], bytes], FloatArray]


def _sample_factor(sim: RoundSimulator, workload: DeviceWorkload) -> np.ndarray:
    """``E x D_k x 3.0``, the first factors of ``workload.training_flops`` (the same products in
    the same order), kept while the sample counts and epochs stay the same.

    Keyed on a copy of the counts' values, not on the array object: a trainer may change its counts
    in place mid-episode (``TorchTrainer.exclude_labels``, federated unlearning), and the round must
    then be priced at the new counts, as the general path prices it."""
    samples, epochs = np.asarray(workload.num_samples), workload.local_epochs
    # Keyed on the counts' dtype and bytes: equal bytes of one dtype are equal values (a stricter
    # test than ``np.array_equal``, and cheaper; a false miss only recomputes the same factor).
    key = (epochs, samples.dtype, samples.shape, samples.tobytes())
    cached = sim.fast_sample_factor
    if cached is None or cached[0] != key:
        factor: FloatArray = np.multiply(epochs * samples, 3.0)  # ``(E x D) x 3.0``
        cached = sim.fast_sample_factor = (key, factor)
    return cached[1]


def _max_compute_power(sim: RoundSimulator) -> FloatArray:
    """``compute_power_w(kappa, f_max)`` of the fleet (its CPUs at their maxima), computed once."""
    fleet = sim.fleet
    cached = sim.fast_max_power
    if cached is None or cached[0] is not fleet:
        power = compute_power_w(fleet.kappa, fleet.cpu_freq_hz.astype(np.float64))
        cached = sim.fast_max_power = (fleet, power)
    return cached[1]


def run_fast_round(
    sim: RoundSimulator, decision: RoundDecision, workload: DeviceWorkload
) -> RoundReport | None:
    """Run one round in array form (the caller checked :func:`fast_rounds_possible`); None when a
    per-round condition fails, with nothing changed (the general path then runs the round).

    Also leaves ``sim.fast_summary``: the report and the figures of its
    :meth:`~fedsimenv.sim.types.RoundReport.summary` that this pass already has (see
    :func:`report_summary`)."""
    env = sim.env
    # ``min == inf`` is ``all(== inf)`` and ``min >= 0`` is ``all(>= 0)`` (a NaN fails both).
    minimum = _smallest
    if sim._num_active or minimum(sim.battery_j) != np.inf or (env._queue and not queue_is_inert(env)):
        return None
    selected = decision.selected
    idx = selected.nonzero()[0]
    gain = sim.blocks.gain(0)
    if len(idx) == 0 or selected.ndim != 1 or not minimum(gain) >= 0:
        return None  # the general path raises on bad gains
    fleet, n = sim.fleet, len(selected)
    status_idle, no_reason = _templates(sim, n)
    has_job = selected.astype(bool)  # a copy; True on ``idx`` (its nonzero entries) only
    start = float(env.now)
    n0 = sim.noise_psd_w_per_hz
    downlink_rate = _broadcast_rate_bps(
        float(sim.network.downlink_bandwidth_hz), sim.bs_tx_power_w, float(minimum(gain[idx])), n0
    )
    if not downlink_rate > 0:
        return None  # no download ever ends
    with np.errstate(divide="ignore", invalid="ignore"):
        # The phase plan (fedsimenv.sim.phases.plan_phases), on the starting devices. A transfer
        # that never ends (rate 0 or NaN) gives an infinite or NaN end below: the general path
        # then runs the round (through SimPy), as it would have done anyway.
        if decision.tx_power_w is None:  # ``np.where(has_job, p_max, p_max)``
            power = fleet.tx_power_w.astype(np.float64)
        else:
            power = np.where(has_job, decision.tx_power_w, fleet.tx_power_w).astype(np.float64, copy=False)
        if decision.cpu_freq_hz is None:
            freq = fleet.cpu_freq_hz.astype(np.float64)
        else:
            freq = np.where(has_job, decision.cpu_freq_hz, fleet.cpu_freq_hz).astype(np.float64, copy=False)
        dl_bits = np.asarray(workload.download_bits, dtype=np.float64)
        dl_bits = dl_bits[idx] if dl_bits.ndim else np.full(len(idx), dl_bits)
        # ``np.where(bits <= 0, start, start + bits / rate)``; the where only when some size is not
        # > 0 (a NaN size fails the test too, and takes the where).
        dl_k = start + dl_bits / downlink_rate
        if not minimum(dl_bits) > 0:
            dl_k = np.where(dl_bits <= 0, start, dl_k)
        # ``workload.training_flops / flops_per_cycle`` on the starting devices only (products and
        # quotients are exact per element, so the same values as over all N).
        cycles = _sample_factor(sim, workload)[idx] * workload.forward_flops_per_sample[idx]
        per_cycle = fleet.flops_per_cycle
        freq_k = freq[idx]
        comp_k = dl_k + (cycles / (per_cycle[idx] if np.ndim(per_cycle) else per_cycle)) / freq_k
        rate = _fdma_rate_bps(decision.bandwidth_hz, power, gain, n0)
        up_bits = np.asarray(workload.upload_bits)[idx]
        up_k = comp_k + up_bits / rate[idx]
        if not minimum(up_bits) > 0:
            up_k = np.where(up_bits <= 0, comp_k, up_k)
        t1, t2, t3 = job_end_times(start, dl_k, comp_k, up_k)
        if not math.isfinite(np.add.reduce(t3)):
            return None  # some job never ends (or the sum overflows): the general path decides

        # The state the general path leaves (closedform.finish_round): every job arrived.
        jobs, times = sim.jobs, sim.jobs.times
        order = np.lexsort((idx, t1, t2, t3))
        ended = idx[order]
        end = float(t3[order[-1]])
        # The six phase columns and the stop times, NaN where no job, as the rows of one array: the
        # job table takes the rows, the report the rows of a copy (it must not see later rounds).
        # The starting devices' columns are gathered first and written in one go. Row -1 is
        # ``stop[ended] = t3[order]`` (ended = idx[order]), that is ``stop[idx] = t3``.
        columns = np.empty((len(PHASES) + 1, len(idx)))
        columns[0] = start
        for row, values in enumerate((dl_k, dl_k, comp_k, comp_k, up_k, t3), start=1):
            columns[row] = values
        block = np.empty((len(PHASES) + 1, n))
        block.fill(np.nan)
        block[:, idx] = columns
        *phase_rows, stop_s = block
        times.update(zip(PHASES, phase_rows, strict=True))
        jobs.stop_s = stop_s
        status = jobs.status
        status.fill(STATUS_IDLE)
        status[idx] = STATUS_ARRIVED
        jobs.reason.fill("")
        jobs.transmissions[...] = has_job  # 1 where a job started, else 0
        rho_k = decision.pruning_rate[idx]
        jobs.start_at(idx, sim.version, decision.bandwidth_hz[idx], rho_k, up_bits, power[idx], freq_k)
        sim._job_id += has_job  # ``[idx] += 1`` (the devices are distinct)
        sim._delivered[idx] = True
        sim._downlink_rate_bps = downlink_rate
        sim._arrivals = ended.tolist()
        sim.blocks.start_round(start)
        queue = env._queue
        while queue and queue[0][0] <= end:
            heapq.heappop(queue)
        env._now = end
        done = sim._round_done = env.event()
        done._ok, done._value, done.callbacks = True, None, None  # type: ignore[assignment]
        sim.closed_form_count += 1

        # The report (fedsimenv.sim.accounting.report_round) and the battery update. Every time
        # below is finite, so its NaN handling only ever maps the devices without a job to 0; a
        # job's stop time is t3 <= end, so its clipping of phase ends to ``min(t3, end)`` and
        # then to ``end`` leaves ``min(b, t3)``.
        # ``max(dl_k, start)`` is dl_k and ``max(comp_k, start)`` is comp_k: a download ends at
        # start plus a quotient >= 0, the computation after it plus another one (a NaN one never
        # gets here).
        # Compute and upload time of each job, ``max(min(finish, t3) - start, 0)``, as two rows:
        # finishes (comp_k, up_k) are rows 3 and 5 of ``columns``, starts (dl_k, comp_k) rows 2 and 4.
        busy_s = np.zeros((2, n))
        busy_s[:, idx] = np.maximum(np.minimum(columns[3:6:2], t3) - columns[2:5:2], 0.0)
        compute_s, upload_s = busy_s
        idle_s = np.maximum((end - start) - compute_s - upload_s, 0.0)
        compute_energy = (
            _max_compute_power(sim) if decision.cpu_freq_hz is None else compute_power_w(fleet.kappa, freq)
        ) * compute_s
        transmit_energy = power * upload_s
        idle_energy = fleet.idle_power_w * idle_s
        sim.battery_j = np.maximum(sim.battery_j - (compute_energy + transmit_energy + idle_energy), 0.0)
    report_status = status_idle.copy()
    report_status[idx] = STATUS_ARRIVED
    # ``np.where(selected, x, 0.0)`` of float64 arrays: zeros with the selected entries.
    if decision.pruning_rate.dtype == np.float64:
        pruning_rate = np.zeros(n)
        pruning_rate[idx] = rho_k
    else:
        pruning_rate = np.where(selected, decision.pruning_rate, 0.0)
    upload_bits = np.zeros(n)
    upload_bits[idx] = up_bits  # ``jobs.bits[idx]``: the same values, cast to float64 alike
    dl_start, dl_finish, comp_start, comp_finish, up_start, up_finish, report_stop_s = block.copy()
    report = make_report(
        round_index=sim.round_index,
        start_time_s=start,
        end_time_s=end,
        selected=selected.copy(),
        arrived=has_job,
        channel_gain_linear=gain.copy(),
        bandwidth_hz=np.array(decision.bandwidth_hz, dtype=np.float64),
        pruning_rate=pruning_rate,
        uplink_rate_bps=rate,
        downlink_rate_bps=downlink_rate,
        download_start_s=dl_start,
        download_finish_s=dl_finish,
        compute_start_s=comp_start,
        compute_finish_s=comp_finish,
        upload_start_s=up_start,
        upload_finish_s=up_finish,
        upload_bits=upload_bits,
        compute_energy_j=compute_energy,
        transmit_energy_j=transmit_energy,
        idle_energy_j=idle_energy,
        status=report_status,
        reason=no_reason.copy(),  # ``<U1``, as ``astype(str)`` of empty reasons
        staleness=np.zeros(n, dtype=np.int64),
        battery_j=sim.battery_j.copy(),
        stop_s=report_stop_s,
        protocol=sim.protocol.name,
        tx_power_w=power,
        cpu_freq_hz=freq,
        transmissions=has_job.astype(np.int64),
        resource_blocks=None,
    )
    # What ``report.summary`` would compute (every selected device arrived, nothing dropped or
    # failed, no staleness), from the same values with the same reductions.
    chosen_rates = pruning_rate[idx]
    sim.fast_summary = FastSummary(
        report,
        len(idx),
        max((dl_k - start).tolist()),  # ``nanmax(download_finish_s - download_start_s)``: all finite
        float(np.add.reduce(upload_bits[idx])),
        float(np.add.reduce(chosen_rates) / len(chosen_rates)),
    )
    sim.round_index += 1
    sim.blocks.end_round(start, end)
    return report


def report_summary(sim: RoundSimulator, report: RoundReport, energy_j: float | None = None) -> dict[str, Any]:
    """``report.summary(energy_j)``; for the report of ``sim``'s last fast round, from the figures
    that round already computed (the same values: every selected device arrived, none was dropped
    or failed, no staleness)."""
    fast = sim.fast_summary
    if fast is None or fast.report is not report:
        return report.summary(energy_j)
    num = fast.num_selected
    return {
        "round_latency_s": report.round_latency_s,
        "round_energy_j": report.energy_j if energy_j is None else energy_j,
        "num_selected": num,
        "num_arrived": num,
        "num_dropped": 0,
        "num_failed": 0,
        "num_packet_errors": 0,
        "downlink_time_s": fast.downlink_time_s,
        "upload_bits": fast.upload_bits,
        "mean_pruning_rate": fast.mean_pruning_rate,
        "max_staleness": 0,
    }


class FastSummary(NamedTuple):
    """The summary figures of a fast round's report (see :func:`report_summary`)."""

    report: RoundReport
    num_selected: int
    downlink_time_s: float
    upload_bits: float
    mean_pruning_rate: float


__all__ = ["FastSummary", "fast_rounds_possible", "report_summary", "run_fast_round"]
