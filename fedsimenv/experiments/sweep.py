"""Parameter sweeps: ``fedsimenv sweep SCENARIO --grid key=v1,v2 ... --seeds K``.

The Cartesian product of the grid (dotted scenario keys, values parsed as YAML; the key ``agent``
varies the agent) runs over K seeds on the job engine (:mod:`fedsimenv.experiments.jobs`) and one
merged table is written: ``results.csv`` (one row per cell and seed), ``results.md`` (mean +- std
over seeds per cell, failed cells listed with their error) and a run directory per cell and seed.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents import check_agent_name
from fedsimenv.atomic import write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.jobs import Job
from fedsimenv.experiments.summary import DEFAULT_TARGET_ACCURACY, format_mean_std
from fedsimenv.scenario import ScenarioError, load_scenario, strict_yaml_load


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
    value = strict_yaml_load(text)
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
    jobs = []
    for index, cell in enumerate(grid_cells(grid)):
        cell_agent = str(cell.get("agent", agent))
        check_agent_name(cell_agent)
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
