"""Closed-form end of a round: the SimPy event loop skipped where it cannot change the outcome.

Every phase end of a job is already computed in closed form (:mod:`fedsimenv.sim.timing`); SimPy
only orders the resulting timeouts and runs the protocol hooks and failure watchdogs between them.
When none of those can act, the order is known in advance and the round can be finished here with
numpy, giving bit for bit what the event loop gives (``tests/test_closed_form_round.py`` runs both
on random scenarios and actions and compares every observation, reward, info and report field):

* each job is three chained timeouts scheduled from the clock of the previous one, so its end is
  ``t1 = s + (dl - s)``, ``t2 = t1 + max(comp - t1, 0)``, ``t3 = t2 + max(up - t2, 0)`` (the same
  float operations as the event loop, so the same values);
* the jobs end in the order SimPy's heap gives, ``(time, event id)``, and an event's id follows the
  processing order of the event that created it, so the order is the lexicographic order of
  ``(t3, t2, t1, device)``;
* the round ends at the last job end; queued events left from earlier rounds that carry no callback
  (the timeouts of interrupted jobs) are dropped up to that time, as processing them would.

Used only when all of these hold (else the round runs through SimPy, ``RoundSimulator._run_events``):

* the protocol overrides neither ``on_round_start`` nor ``on_job_end`` and keeps no job across rounds
  (``synchronous``; ``deadline``, ``over-commit`` and ``async`` schedule events or end rounds early);
* no job would fail mid-flight: no device goes off (Markov availability) or runs its battery out
  before its upload ends (devices unavailable at the start fail without an event and are fine);
* every job end is finite, and no event with a callback is queued (nothing else can act).

Packet errors and ARQ, OFDMA, per-device download sizes, power and CPU-frequency decisions and
fading within a round (coherence blocks) only change the closed-form phase times, which both paths
share, so they are covered. Imports neither gymnasium nor torch (timing plane).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsimenv.sim.protocols import RoundProtocol
from fedsimenv.sim.types import STATUS_ARRIVED, STATUS_FAILED, FloatArray, IntArray

if TYPE_CHECKING:
    from fedsimenv.sim.simulator import RoundSimulator


def protocol_allows(rules: RoundProtocol) -> bool:
    """True when the protocol adds no event and no early end to a round (synchronous)."""
    kind = type(rules)
    return (
        not rules.jobs_span_rounds
        and kind.on_round_start is RoundProtocol.on_round_start
        and kind.on_job_end is RoundProtocol.on_job_end
    )


def queue_is_inert(env: Any) -> bool:
    """No queued SimPy event has a callback (nothing can happen but the clock moving)."""
    return all(not event.callbacks for *_, event in env._queue)


def job_end_times(
    start_s: float, dl_finish: FloatArray, comp_finish: FloatArray, up_finish: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The clock at the end of each job's three timeouts, as the event loop computes it."""
    t1 = start_s + (dl_finish - start_s)
    t2 = t1 + np.maximum(comp_finish - t1, 0.0)
    t3 = t2 + np.maximum(up_finish - t2, 0.0)
    return t1, t2, t3


def finish_round(
    sim: RoundSimulator,
    idx: IntArray,
    start_s: float,
    dl_finish: FloatArray,
    comp_finish: FloatArray,
    up_finish: FloatArray,
) -> bool:
    """End the round of the new jobs ``idx`` (all arrays over N) without events; False = not possible.

    On success the simulator's state is what the event loop would leave: statuses, stop times and
    arrivals of the jobs, no job active, the round-done event triggered and the clock at the end.
    """
    t1, t2, t3 = job_end_times(start_s, dl_finish[idx], comp_finish[idx], up_finish[idx])
    if not np.all(np.isfinite(t3)):
        return False
    order = np.lexsort((idx, t1, t2, t3))
    ended = idx[order]
    delivered = sim._delivered[ended]
    jobs = sim.jobs
    jobs.status[ended[delivered]], jobs.reason[ended[delivered]] = STATUS_ARRIVED, ""
    jobs.status[ended[~delivered]], jobs.reason[ended[~delivered]] = STATUS_FAILED, "packet-error"
    jobs.stop_s[ended] = t3[order]
    sim._arrivals.extend(ended[delivered].tolist())
    sim._active[idx] = False
    sim._num_active -= len(idx)
    end_s = float(t3[order[-1]])
    env = sim.env
    queue = env._queue
    while queue and queue[0][0] <= end_s:
        heapq.heappop(queue)
    env._now = end_s
    done = sim.round_done  # triggered and processed, as after ``env.run(until=done)``
    done._ok, done._value, done.callbacks = True, None, None  # type: ignore[assignment]
    return True


__all__ = ["finish_round", "job_end_times", "protocol_allows", "queue_is_inert"]
