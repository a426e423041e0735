"""The event-loop side of :class:`~fedsimenv.sim.simulator.RoundSimulator`: each device's job as a
SimPy process (receive the download, train, upload; stopped early by an interrupt), the watchdog
that interrupts it when the device goes off or its battery runs out, and the bookkeeping when a job
ends. Rounds that end in closed form (:mod:`fedsimenv.sim.closedform`, :mod:`fedsimenv.sim.fastround`)
never start these processes.
"""

from __future__ import annotations

import gc
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import simpy

from fedsimenv.sim.types import STATUS_ARRIVED, STATUS_FAILED, FloatArray, IntArray

if TYPE_CHECKING:
    from fedsimenv.sim.simulator import RoundSimulator


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
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


def start_processes(
    sim: RoundSimulator,
    idx: IntArray,
    start: float,
    dl_finish: FloatArray,
    up_finish: FloatArray,
    offline_at: FloatArray,
    battery_at: FloatArray,
) -> None:
    """Start the job process of each device in ``idx`` (its download ends at ``dl_finish``), and a
    watchdog where the device would go off or run flat before its upload ends (arrays over N)."""
    env = sim.env
    for k in idx:
        process = env.process(job_process(sim, int(k), env.timeout(dl_finish[k] - start)))
        sim._processes[int(k)] = process
        went_off = offline_at[k] <= battery_at[k]
        fail_at, reason = (offline_at[k], "went-offline") if went_off else (battery_at[k], "battery-depleted")
        if fail_at < up_finish[k]:
            env.process(watchdog(sim, int(k), int(sim._job_id[k]), float(fail_at), reason))


def job_process(sim: RoundSimulator, k: int, download: simpy.Event) -> Generator[simpy.Event, Any, None]:
    """One device's job: receive its download, train, upload; stops early if interrupted."""
    env, times = sim.env, sim.jobs.times
    try:
        yield download
        yield env.timeout(max(times["comp_finish"][k] - env.now, 0.0))
        yield env.timeout(max(times["up_finish"][k] - env.now, 0.0))
        if sim._delivered[k]:
            end_job(sim, k, STATUS_ARRIVED, "")
        else:
            end_job(sim, k, STATUS_FAILED, "packet-error")
    except simpy.Interrupt as interrupt:
        cause: tuple[str, str] = interrupt.cause  # type: ignore[assignment]
        end_job(sim, k, *cause)


def watchdog(
    sim: RoundSimulator, k: int, job_id: int, at_s: float, reason: str
) -> Generator[simpy.Event, Any, None]:
    """Interrupt device k's job ``job_id`` at ``at_s`` (failed, ``reason``) if it is still running."""
    yield sim.env.timeout(max(at_s - sim.env.now, 0.0))
    if sim._active[k] and sim._job_id[k] == job_id:
        sim._processes[k].interrupt((STATUS_FAILED, reason))


def end_job(sim: RoundSimulator, k: int, status: str, reason: str) -> None:
    """Device k's job ended (``status``, ``reason``) now; the round ends when the protocol says so or
    no job is left."""
    sim._active[k] = False
    sim._num_active -= 1
    sim._processes.pop(k, None)
    jobs = sim.jobs
    jobs.status[k], jobs.reason[k], jobs.stop_s[k] = status, reason, sim.now_s
    if status == STATUS_ARRIVED:
        sim._arrivals.append(k)
    end_now = sim.rules.on_job_end(sim)
    if sim.round_done.triggered:
        return
    if sim._num_active == 0 or end_now:
        sim.round_done.succeed()


__all__ = ["cyclic_gc_paused", "end_job", "job_process", "start_processes", "watchdog"]
