"""Many episodes at once: the job engine (serial, local process pool, Ray) and parameter sweeps.

A :class:`Job` is one agent on one resolved scenario and seed, written to its own run directory; it
returns a flat summary (:func:`summarise_rows`) or, if it raised, a ``failed`` row with the error, so
one bad cell never stops the others. Results come back in job order whatever the engine, and hold only
simulated quantities, so the same jobs give byte-identical tables on every engine.

``fedsimenv sweep SCENARIO --grid key=v1,v2 ... --seeds K`` runs the Cartesian product of the grid
(dotted scenario keys, values parsed as YAML; the key ``agent`` varies the agent) over K seeds and
writes one merged table: ``results.csv`` (one row per cell and seed), ``results.md`` (mean +- std
over seeds per cell, failed cells listed with their error) and a run directory per cell and seed.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fedsimenv.atomic import write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.scenario import ScenarioError, load_scenario

#: Target accuracy for "time / energy to target" when neither the option nor the scenario gives one.
DEFAULT_TARGET_ACCURACY = 0.9

Engine = Literal["serial", "local", "ray"]
ENGINES: tuple[Engine, ...] = ("serial", "local", "ray")

#: Columns of a job summary, in table order (simulated quantities only: reproducible across engines).
SUMMARY_KEYS = (
    "rounds",
    "final_accuracy",
    "sim_time_s",
    "energy_j",
    "time_to_target_s",
    "energy_to_target_j",
    "rounds_to_target",
    "mean_round_latency_s",
    "mean_selected",
    "mean_arrived",
    "mean_rho",
)


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


def summarise_rows(rows: Sequence[Mapping[str, Any]], target_accuracy: float | None) -> dict[str, Any]:
    """Episode summary from metric rows: final values, cost to reach the target, per-round means.

    ``time_to_target_s``, ``energy_to_target_j`` and ``rounds_to_target`` are None if the target was
    never reached (or none was given).
    """
    if not rows:
        raise ValueError("no rounds to summarise")
    reached = next(
        (r for r in rows if target_accuracy is not None and float(r["accuracy"]) >= target_accuracy), None
    )
    n = len(rows)
    return {
        "rounds": n,
        "final_accuracy": float(rows[-1]["accuracy"]),
        "sim_time_s": float(rows[-1]["sim_time_s"]),
        "energy_j": float(rows[-1]["energy_j"]),
        "time_to_target_s": None if reached is None else float(reached["sim_time_s"]),
        "energy_to_target_j": None if reached is None else float(reached["energy_j"]),
        "rounds_to_target": None if reached is None else int(reached["round"]),
        "mean_round_latency_s": sum(float(r["round_latency_s"]) for r in rows) / n,
        "mean_selected": sum(float(r["num_selected"]) for r in rows) / n,
        "mean_arrived": sum(float(r["num_arrived"]) for r in rows) / n,
        "mean_rho": sum(float(r["mean_rho"]) for r in rows) / n,
    }


def run_job(job: Job) -> dict[str, Any]:
    """Run one job; never raises for a failure of the episode itself (returns a ``failed`` row)."""
    from fedsimenv.checkpoint import RUN_FILE, resume_run
    from fedsimenv.runner import run_episode

    base: dict[str, Any] = {"label": job.label, **job.params, "agent": job.agent, "seed": job.seed}
    try:
        out = Path(job.out_dir)
        if job.resume and (out / RUN_FILE).is_file():
            recorded = load_scenario(out / "config.yaml").model_copy(update={"seed": 0})
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
            )
        return {**base, "status": "ok", "error": "", **summarise_rows(rows, job.target_accuracy)}
    except Exception as err:  # a failed cell is reported, not fatal
        return {
            **base,
            "status": "failed",
            "error": f"{type(err).__name__}: {err}".replace("\n", " "),
            **dict.fromkeys(SUMMARY_KEYS),
        }


def _init_worker() -> None:
    # One intra-op thread per worker: the workers already use every core between them.
    import torch

    torch.set_num_threads(1)


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
    workers = max(1, min(workers or os.cpu_count() or 1, max(len(jobs), 1)))
    if engine == "ray":
        return _run_ray(jobs, workers, on_done, ray_temp_dir)
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    if engine == "serial" or workers == 1:
        for index, job in enumerate(jobs):
            results[index] = run_job(job)
            if on_done is not None:
                on_done(results[index] or {})
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: forking a process that already runs torch threads can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(run_job, job): index for index, job in enumerate(jobs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done is not None:
                    on_done(results[futures[future]] or {})
    return [r for r in results if r is not None]


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


# -- sweeps -------------------------------------------------------------------------------------


def parse_grid(pairs: Sequence[str]) -> dict[str, list[Any]]:
    """``["learning.local_epochs=1,2", "agent=equal,optimal"]`` -> ``{key: [values]}`` (YAML values)."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key or not values:
            raise ValueError(
                f"--grid expects KEY=V1,V2,... (e.g. network.bandwidth_hz=5e6,2e7), got {pair!r}"
            )
        if key in grid:
            raise ValueError(f"--grid key {key!r} given twice")
        grid[key] = [_scalar(v) for v in values.split(",")]
    return grid


def _scalar(text: str) -> Any:
    """A YAML scalar, reading ``5e6`` as a number too (YAML 1.1 wants ``5.0e+6``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def grid_cells(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid, in the order the keys and values were given."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def sweep_jobs(
    scenario: str | Path | ScenarioConfig,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    out_dir: Path,
    agent: str = "equal",
    overrides: Mapping[str, Any] | None = None,
    target_accuracy: float | None = None,
) -> list[Job]:
    """One job per grid cell and seed; every cell's scenario is validated first.

    Raises:
        ScenarioError: a cell's scenario is invalid (the message names the cell and the field).
        ValueError: an unknown agent name.
    """
    from agents import AGENTS

    jobs = []
    for index, cell in enumerate(grid_cells(grid)):
        cell_agent = str(cell.get("agent", agent))
        AGENTS.get(cell_agent)
        scenario_overrides = {**(overrides or {}), **{k: v for k, v in cell.items() if k != "agent"}}
        try:
            config = load_scenario(scenario, scenario_overrides)
        except ScenarioError as err:
            raise ScenarioError(f"grid cell {_cell_name(cell)}: {err}") from None
        target = target_accuracy or config.episode.target_accuracy or DEFAULT_TARGET_ACCURACY
        for seed in seeds:
            jobs.append(
                Job(
                    label=f"cell-{index:03d}",
                    scenario=config.model_dump(mode="json"),
                    agent=cell_agent,
                    seed=seed,
                    out_dir=str(out_dir / "runs" / f"cell-{index:03d}" / f"seed-{seed}"),
                    target_accuracy=target,
                    params=dict(cell),
                )
            )
    return jobs


def _cell_name(cell: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items())


def results_csv(results: Sequence[Mapping[str, Any]]) -> str:
    """The merged table as CSV text (columns: label, grid keys, agent, seed, status, error, summary)."""
    if not results:
        return ""
    columns = list(results[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in results:
        writer.writerow({k: "" if row.get(k) is None else _csv_value(row.get(k)) for k in columns})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the non-None values."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return math.nan, math.nan, 0
    mean = sum(kept) / len(kept)
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)) if len(kept) > 1 else 0.0
    return mean, std, len(kept)


def format_mean_std(values: Sequence[float | None], digits: int = 3) -> str:
    mean, std, count = mean_std(values)
    if count == 0:
        return "—"
    text = (
        f"{mean:.{digits}g} ± {std:.2g}"
        if abs(mean) >= 10 ** (digits + 1)
        else f"{mean:.{digits}f} ± {std:.{digits}f}"
    )
    return text + (f" ({count}/{len(values)})" if count < len(values) else "")


def sweep_markdown(results: Sequence[Mapping[str, Any]], grid_keys: Sequence[str]) -> str:
    """Per cell (grid values): mean +- std over seeds of the main metrics; failed runs listed."""
    cells: dict[str, list[Mapping[str, Any]]] = {}
    for row in results:
        cells.setdefault(str(row["label"]), []).append(row)
    columns = [
        ("final_accuracy", "final accuracy"),
        ("time_to_target_s", "time to target (s)"),
        ("energy_to_target_j", "energy to target (J)"),
        ("mean_round_latency_s", "round latency (s)"),
        ("mean_selected", "selected"),
        ("mean_rho", "rho"),
    ]
    keys = [k for k in grid_keys if k != "agent"] + ["agent"]
    header = ["cell", *keys, "runs ok", *(title for _, title in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    failures = []
    for label, rows in cells.items():
        ok = [r for r in rows if r["status"] == "ok"]
        failures += [r for r in rows if r["status"] != "ok"]
        values = [str(rows[0].get(k)) for k in keys]
        stats = [format_mean_std([r[key] for r in ok]) for key, _ in columns]
        lines.append("| " + " | ".join([label, *values, f"{len(ok)}/{len(rows)}", *stats]) + " |")
    if failures:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r['label']} seed {r['seed']}: {r['error']}" for r in failures]
    return "\n".join(lines) + "\n"


def write_sweep_tables(out_dir: Path, results: Sequence[Mapping[str, Any]], grid_keys: Sequence[str]) -> None:
    """``results.csv`` (merged, one row per cell and seed) and ``results.md``, both atomically."""
    write_text_atomic(out_dir / "results.csv", results_csv(results))
    write_text_atomic(out_dir / "results.md", sweep_markdown(results, grid_keys))
