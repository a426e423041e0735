"""The job engine: many episodes at once (serial, a local process pool, or Ray).

A :class:`Job` is one agent on one resolved scenario and seed, written to its own run directory; it
returns a flat summary (:func:`~fedsimenv.experiments.summary.summarise_rows`) or, if it raised, a
``failed`` row with the error, so one bad cell never stops the others. Results come back in job order
whatever the engine, and hold only simulated quantities, so the same jobs give byte-identical tables
on every engine. Worker processes run one torch / BLAS thread each (the workers already share the
cores between them; on a busy machine spinning extra threads costs several times the CPU); the
environment variable ``FEDSIMENV_WORKER_THREADS`` sets another count.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.rundir import CONFIG_FILE, RUN_FILE
from fedsimenv.experiments.session import resume_run, run_episode
from fedsimenv.experiments.summary import SUMMARY_KEYS, summarise_rows
from fedsimenv.scenario import load_scenario

T = TypeVar("T")
R = TypeVar("R")

Engine = Literal["serial", "local", "ray"]
ENGINES: tuple[Engine, ...] = ("serial", "local", "ray")


@dataclass(frozen=True)
class Job:
    """One episode: resolved scenario (as JSON-able data), agent, seed, run directory."""

    label: str
    scenario: dict[str, Any]
    agent: str
    seed: int
    out_dir: str
    target_accuracy: float | None = None
    timeline: bool = False
    checkpoint_every: int | None = 5
    resume: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    same_model: bool = False


def run_job(job: Job) -> dict[str, Any]:
    """Run one job; never raises for a failure of the episode itself (returns a ``failed`` row)."""
    base: dict[str, Any] = {"label": job.label, **job.params, "agent": job.agent, "seed": job.seed}
    try:
        out = Path(job.out_dir)
        if job.resume and (out / RUN_FILE).is_file():
            recorded = load_scenario(out / CONFIG_FILE).model_copy(update={"seed": 0})
            if recorded != ScenarioConfig.model_validate(job.scenario).model_copy(update={"seed": 0}):
                raise ValueError(
                    f"{out} holds a run of a different scenario; use --overwrite instead of --resume"
                )
            _, rows = resume_run(out)
        else:
            config = ScenarioConfig.model_validate(job.scenario)
            rows = run_episode(
                config,
                job.agent,
                job.seed,
                out,
                overwrite=True,
                timeline=job.timeline,
                checkpoint_every=job.checkpoint_every,
                same_model=job.same_model,
            )
        return {**base, "status": "ok", "error": "", **summarise_rows(rows, job.target_accuracy)}
    except Exception as err:  # a failed cell is reported, not fatal
        return {
            **base,
            "status": "failed",
            "error": f"{type(err).__name__}: {err}".replace("\n", " "),
            **dict.fromkeys(SUMMARY_KEYS),
        }


#: Environment variable that overrides the worker processes' thread count (default 1).
WORKER_THREADS_ENV = "FEDSIMENV_WORKER_THREADS"


def worker_threads() -> int:
    """Torch / BLAS threads per worker process: 1, unless ``FEDSIMENV_WORKER_THREADS`` says otherwise.

    Raises:
        ValueError: the variable is set to anything but a positive integer.
    """
    value = os.environ.get(WORKER_THREADS_ENV, "1").strip()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{WORKER_THREADS_ENV} must be a positive integer (threads per worker), got {value!r}"
        )
    return int(value)


def _init_worker() -> None:
    # One intra-op thread per worker (torch and the BLAS under numpy/scipy) unless told otherwise: the
    # workers already use every core between them, and on a busy machine extra spinning threads cost
    # several times the CPU (bench/worker_threads.py measures it).
    import torch
    from threadpoolctl import threadpool_limits

    threads = worker_threads()
    torch.set_num_threads(threads)
    threadpool_limits(threads)


def map_in_workers(
    function: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    on_done: Callable[[R], None] | None = None,
) -> list[R]:
    """``[function(item) for item in items]`` in ``workers`` spawned processes of one thread each
    (in this process when ``workers == 1``); results in item order, ``on_done`` as each completes.

    ``function`` and the items must be picklable (a module-level function, plain data).
    """
    results: dict[int, R] = {}
    if workers <= 1 or len(items) <= 1:
        for index, item in enumerate(items):
            results[index] = function(item)
            if on_done is not None:
                on_done(results[index])
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        worker_threads()  # a bad override fails here, once, with its one-line message

        # spawn, not fork: forking a process that already runs torch threads can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(function, item): index for index, item in enumerate(items)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done is not None:
                    on_done(results[futures[future]])
    return [results[index] for index in range(len(items))]


def run_jobs(
    jobs: Sequence[Job],
    engine: Engine = "local",
    workers: int | None = None,
    on_done: Callable[[Mapping[str, Any]], None] | None = None,
    ray_temp_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Run ``jobs`` on ``engine`` and return their summaries in job order.

    Args:
        jobs: The jobs.
        engine: ``serial`` (this process), ``local`` (a process pool; default) or ``ray``.
        workers: Parallel workers (default: the CPU count, at most the number of jobs).
        on_done: Called with each summary as it completes (any order).
        ray_temp_dir: Ray's session directory (default: a short folder under the system temp dir,
            because Ray's socket paths must stay under ~107 characters).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; allowed values: {', '.join(ENGINES)}")
    worker_threads()  # a bad override fails here, with its one-line message, not in every worker
    workers = max(1, min(workers or os.cpu_count() or 1, max(len(jobs), 1)))
    if engine == "ray":
        return _run_ray(jobs, workers, on_done, ray_temp_dir)
    if engine == "serial":
        workers = 1
    return map_in_workers(run_job, jobs, workers, on_done)


def _run_ray(
    jobs: Sequence[Job],
    workers: int,
    on_done: Callable[[Mapping[str, Any]], None] | None,
    ray_temp_dir: Path | None,
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "engine 'ray' needs Ray: pip install -c constraints.txt 'fedsimenv[ray]' (or use --engine local)"
        ) from None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    own_temp = ray_temp_dir is None
    temp = Path(tempfile.mkdtemp(prefix="fsray-")) if ray_temp_dir is None else ray_temp_dir
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=workers,
            include_dashboard=False,
            _temp_dir=str(temp),
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        remote = ray.remote(num_cpus=1)(_ray_job)
        pending = {remote.remote(job): index for index, job in enumerate(jobs)}
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                results[index] = ray.get(ref)
                if on_done is not None:
                    on_done(results[index] or {})
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()
        if own_temp:
            shutil.rmtree(temp, ignore_errors=True)


def _ray_job(job: Job) -> dict[str, Any]:
    _init_worker()
    return run_job(job)
