"""Compare agents side by side: the same scenario, the same seeds, tables and plots.

Every agent runs on the same seeds, and a seed fixes the device placement, the channel process, the
data split and the initial model independently of the agent (:mod:`fedsimenv.seeding`), so agents
see the same channel and data realisations. Output directory:

* ``summary.csv`` / ``summary.md``: per agent, mean +- std over seeds of the final accuracy, simulated
  time and energy to reach the target accuracy (with how many seeds reached it), mean round latency,
  mean selected devices and mean rho (``summary.csv`` has separate ``_mean`` / ``_std`` columns);
* ``runs.csv``: the same quantities per agent and seed;
* ``accuracy_vs_time.png``, ``accuracy_vs_energy.png``, ``rho_distribution.png``,
  ``bandwidth_distribution.png`` and ``gantt.png`` (round 1 of the first seed, one panel per agent);
* ``runs/AGENT/seed-S/``: each episode's run directory (metrics, timeline, checkpoints), so an
  interrupted comparison continues with ``--resume``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents import check_agent_name
from agents.base import learning_changes
from fedsimenv.atomic import write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.errors import RunDirectoryError
from fedsimenv.experiments.jobs import Engine, Job, run_jobs
from fedsimenv.experiments.plots import plot_accuracy_curves, plot_distributions
from fedsimenv.experiments.rundir import METRICS_FILE, TIMELINE_FILE, read_jsonl, run_dir_lock
from fedsimenv.experiments.summary import DEFAULT_TARGET_ACCURACY, format_mean_std, mean_std
from fedsimenv.gantt import plot_gantt_side_by_side

#: (summary key, table title) of the per-agent columns.
SUMMARY_COLUMNS = (
    ("final_accuracy", "final accuracy"),
    ("time_to_target_s", "sim time to target (s)"),
    ("energy_to_target_j", "energy to target (J)"),
    ("mean_round_latency_s", "mean round latency (s)"),
    ("mean_selected", "mean selected"),
    ("mean_arrived", "mean arrived"),
    ("mean_dropped", "mean dropped or failed"),
    ("mean_rho", "mean rho (selected)"),
    ("note_rounds", "fallback rounds"),
    ("sim_time_s", "total sim time (s)"),
    ("energy_j", "total energy (J)"),
)

PLOTS = (
    "accuracy_vs_time.png",
    "accuracy_vs_energy.png",
    "rho_distribution.png",
    "bandwidth_distribution.png",
    "gantt.png",
)


@dataclass(frozen=True)
class CompareResult:
    """What ``compare`` produced: per-run summaries (agent-major, seed-minor) and the files written."""

    runs: list[dict[str, Any]]
    target_accuracy: float
    files: list[Path]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] != "ok"]


def compare_agents(
    config: ScenarioConfig,
    agents: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    *,
    target_accuracy: float | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 5,
    on_done: Callable[[Mapping[str, Any]], None] | None = None,
    same_model: bool = True,
) -> CompareResult:
    """Run every agent on every seed of ``config`` and write the tables and plots to ``out_dir``.

    With ``same_model`` (the default) every agent trains the scenario's model: an agent's overrides
    of the model itself (``agents.base.MODEL_KEYS``, e.g. DWNP's LayerNorm) are withheld; either way
    the summary lists every agent whose learning settings differ from the scenario's.

    Raises:
        ValueError: unknown agent, no agents or seeds, or ``out_dir`` already holds a comparison
            (without ``resume`` / ``overwrite``).
    """
    if not agents:
        raise ValueError("--agents needs at least one agent name")
    if len(set(agents)) != len(agents):
        raise ValueError(f"--agents lists an agent twice: {', '.join(agents)}")
    for name in agents:
        check_agent_name(name)  # unknown name -> ValueError listing the allowed ones, before any work
    if not seeds:
        raise ValueError("--seeds must be >= 1")
    with run_dir_lock(out_dir):  # one compare per output directory
        if (out_dir / "summary.csv").exists() and not (resume or overwrite):
            raise RunDirectoryError(
                f"{out_dir} already holds a comparison; choose another --out, or pass --resume or --overwrite"
            )
        target = target_accuracy or config.episode.target_accuracy or DEFAULT_TARGET_ACCURACY
        scenario = config.model_dump(mode="json")
        jobs = [
            Job(
                label=agent,
                scenario=scenario,
                agent=agent,
                seed=seed,
                out_dir=str(run_dir(out_dir, agent, seed)),
                target_accuracy=target,
                timeline=True,
                checkpoint_every=checkpoint_every,
                resume=resume,
                same_model=same_model,
            )
            for agent in agents
            for seed in seeds
        ]
        runs = run_jobs(jobs, engine=engine, workers=workers, on_done=on_done)
        flagged = learning_flags(config, agents, same_model)
        files = write_report(out_dir, agents, seeds, runs, target, flagged)
        return CompareResult(runs=runs, target_accuracy=target, files=files)


def run_dir(out_dir: Path, agent: str, seed: int) -> Path:
    """``out_dir/runs/AGENT/seed-S``; a saved policy ``ppo:PATH`` gets a folder name without separators."""
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", agent).strip("_") or "agent"
    return out_dir / "runs" / folder / f"seed-{seed}"


def write_report(
    out_dir: Path,
    agents: Sequence[str],
    seeds: Sequence[int],
    runs: Sequence[Mapping[str, Any]],
    target_accuracy: float,
    flagged: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write the tables and plots from the run summaries and the run directories' JSONL files."""
    ok = {(r["agent"], r["seed"]) for r in runs if r["status"] == "ok"}
    write_text_atomic(out_dir / "runs.csv", _runs_csv(runs))
    write_text_atomic(out_dir / "summary.csv", summary_csv(agents, runs))
    write_text_atomic(out_dir / "summary.md", summary_markdown(agents, runs, target_accuracy, flagged))
    files = [out_dir / name for name in ("summary.csv", "summary.md", "runs.csv")]

    curves: dict[str, list[list[dict[str, Any]]]] = {}
    rho: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    bandwidth: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    first_round: dict[str, list[dict[str, Any]]] = {}
    for agent in agents:
        curves[agent], rho_values, bandwidth_values = [], [], []
        for seed in seeds:
            if (agent, seed) not in ok:
                continue
            folder = run_dir(out_dir, agent, seed)
            curves[agent].append(read_jsonl(folder / METRICS_FILE))
            records = read_jsonl(folder / TIMELINE_FILE)
            # A device with a job: its rho and its share of the band in that round.
            rho_values += [r["pruning_rate"] for r in records]
            bandwidth_values += [r["bandwidth_hz"] / 1e6 for r in records]
            if agent not in first_round:
                first_round[agent] = [r for r in records if r["round"] == 1]
        rho[agent] = np.asarray(rho_values, dtype=np.float64)
        bandwidth[agent] = np.asarray(bandwidth_values, dtype=np.float64)
    if not any(curves.values()):
        return files
    plot_accuracy_curves(
        curves, "sim_time_s", "simulated time (s)", out_dir / "accuracy_vs_time.png", target_accuracy
    )
    plot_accuracy_curves(
        curves,
        "energy_j",
        "cumulative device energy (J)",
        out_dir / "accuracy_vs_energy.png",
        target_accuracy,
    )
    plot_distributions(
        rho,
        "pruning rate rho",
        "rho of the selected devices (all rounds, seeds; triangle = mean rho of the table)",
        out_dir / "rho_distribution.png",
        log_if_wide=False,
    )
    plot_distributions(
        bandwidth,
        "bandwidth (MHz)",
        "bandwidth of the selected devices (all rounds, seeds)",
        out_dir / "bandwidth_distribution.png",
    )
    plot_gantt_side_by_side(
        first_round,
        f"round 1, seed {seeds[0]}: same channel realisation for every agent",
        out_dir / "gantt.png",
    )
    return files + [out_dir / name for name in PLOTS]


def _runs_csv(runs: Sequence[Mapping[str, Any]]) -> str:
    columns = ["agent", "seed", "status", "error", *(k for k, _ in SUMMARY_COLUMNS), "rounds_to_target"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for run in runs:
        writer.writerow({k: "" if run.get(k) is None else run.get(k) for k in columns})
    return buffer.getvalue()


def summary_csv(agents: Sequence[str], runs: Sequence[Mapping[str, Any]]) -> str:
    """Per agent: ``KEY_mean``, ``KEY_std`` and ``KEY_n`` (seeds with a value) of each summary column."""
    columns = ["agent", "seeds", "seeds_ok"]
    for key, _ in SUMMARY_COLUMNS:
        columns += [f"{key}_mean", f"{key}_std", f"{key}_n"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for agent in agents:
        mine = [r for r in runs if r["agent"] == agent]
        ok = [r for r in mine if r["status"] == "ok"]
        row: list[Any] = [agent, len(mine), len(ok)]
        for key, _ in SUMMARY_COLUMNS:
            mean, std, count = mean_std([r[key] for r in ok])
            row += ["" if count == 0 else f"{mean:.6g}", "" if count == 0 else f"{std:.6g}", count]
        writer.writerow(row)
    return buffer.getvalue()


def learning_flags(config: ScenarioConfig, agents: Sequence[str], same_model: bool) -> dict[str, str]:
    """Per agent whose learning settings differ from the scenario's: what it changed (and, under
    ``same_model``, which model overrides were withheld)."""
    flags: dict[str, str] = {}
    for agent in agents:
        changes = learning_changes(config, agent, same_model)
        parts = [f"{k}={v}" for k, v in changes["applied"].items()]
        parts += [f"{k}={v} withheld (--same-model)" for k, v in changes["withheld"].items()]
        if parts:
            flags[agent] = ", ".join(parts)
    return flags


def summary_markdown(
    agents: Sequence[str],
    runs: Sequence[Mapping[str, Any]],
    target_accuracy: float,
    flagged: Mapping[str, str] | None = None,
) -> str:
    """The per-agent table (mean ± std over seeds) as Markdown, failed runs listed below it."""
    titles = [t.replace("target", f"acc {target_accuracy:g}") for _, t in SUMMARY_COLUMNS]
    header = ["agent", "seeds", *titles]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for agent in agents:
        mine = [r for r in runs if r["agent"] == agent]
        ok = [r for r in mine if r["status"] == "ok"]
        cells = []
        for key, _ in SUMMARY_COLUMNS:
            # Cost to target: over the seeds that reached it; format_mean_std adds "(k/K)".
            values = [r[key] for r in ok]
            cells.append(format_mean_std(values, 3))
        lines.append("| " + " | ".join([agent, f"{len(ok)}/{len(mine)}", *cells]) + " |")
    notes = [
        "",
        f"Mean ± sample std over seeds. Cost to accuracy {target_accuracy:g}: over the seeds that "
        "reached it; (k/K) = reached in k of K seeds, — = never. Per round: selected, arrived and "
        "dropped-or-failed devices; mean rho over every selected device and round (the mean of the "
        "rho distribution plot); fallback rounds: rounds in which the agent did not apply its own "
        "solution (its note below, also in metrics.jsonl `agent_note` and the timeline).",
    ]
    fallbacks = [
        f"- {agent}: "
        + " | ".join(
            dict.fromkeys(r["agent_notes"] for r in runs if r["agent"] == agent and r.get("agent_notes"))
        )
        for agent in agents
        if any(r["agent"] == agent and r.get("agent_notes") for r in runs)
    ]
    if fallbacks:
        notes += ["", "Agent fallbacks:", "", *fallbacks]
    if flagged:
        notes += ["", "Agents whose learning settings differ from the scenario's (flagged):", ""]
        notes += [f"- {agent}: {text}" for agent, text in flagged.items()]
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        notes += ["", "Failed runs:", ""] + [f"- {r['agent']} seed {r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines + notes) + "\n"
