"""Running one agent on one scenario for a number of rounds, writing a run directory.

Run directory contents:

* ``config.yaml``: the fully resolved scenario (every default written out), written atomically;
* ``metrics.jsonl``: one JSON object per round, appended and flushed as each round ends;
* with ``timeline=True``: ``timeline.jsonl`` (one record per device and round: status, phase times,
  energy) and ``gantt.png`` (the last round as a Gantt chart).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from agents import AgentContext, configure_for_agent, make_agent
from fedsimenv.config import ScenarioConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.scenario import dump_scenario, write_text_atomic
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.timeline import append_timeline_jsonl, plot_gantt

#: Keys of each ``metrics.jsonl`` row, in order. Only simulated quantities: wall-clock time is left
#: out so that the same seed gives a byte-identical file.
METRIC_KEYS = (
    "round",
    "sim_time_s",
    "round_latency_s",
    "energy_j",
    "round_energy_j",
    "accuracy",
    "loss",
    "num_selected",
    "num_arrived",
    "mean_pruning_rate",
    "upload_bits",
    "reward",
)


class RunDirectoryError(ValueError):
    """The output directory already holds a run."""


def run_episode(
    config: ScenarioConfig,
    agent_name: str,
    seed: int,
    out_dir: Path | None = None,
    overwrite: bool = False,
    on_round: Callable[[Mapping[str, Any]], None] | None = None,
    timeline: bool = False,
) -> list[dict[str, Any]]:
    """Run ``agent_name`` on ``config`` for ``config.episode.max_rounds`` rounds (or until terminated).

    Returns the metric rows; writes the run directory if ``out_dir`` is given.
    """
    if timeline and out_dir is None:
        raise ValueError(
            "--timeline needs --out (the run directory to write timeline.jsonl and gantt.png to)"
        )
    metrics_path = out_dir / "metrics.jsonl" if out_dir is not None else None
    if metrics_path is not None and metrics_path.exists() and not overwrite:
        raise RunDirectoryError(f"{metrics_path} already exists; choose another --out or pass --overwrite")

    env = WirelessFLEnv(configure_for_agent(config, agent_name))
    assert isinstance(env.action_space, spaces.Box)
    agent = make_agent(
        agent_name,
        AgentContext.from_scenario(env.config, env.action_space, system_view=env.system_view),
        seed=EpisodeStreams(np.random.SeedSequence(seed)).int_seed("agent"),
    )
    agent.bind(env)
    observation, info = env.reset(seed=seed)
    agent.reset(info)

    rows: list[dict[str, Any]] = []
    handle = timeline_handle = None
    if out_dir is not None and metrics_path is not None:
        write_text_atomic(
            out_dir / "config.yaml", dump_scenario(env.config.model_copy(update={"seed": seed}))
        )
        handle = metrics_path.open("w", encoding="utf-8")
        if timeline:
            timeline_handle = (out_dir / "timeline.jsonl").open("w", encoding="utf-8")
    try:
        done = False
        while not done:
            action = agent.act(observation, info)
            observation, reward, terminated, truncated, info = env.step(action)
            row = {key: info[key] for key in METRIC_KEYS if key != "reward"}
            row["mean_rho"] = row.pop("mean_pruning_rate")
            row["reward"] = float(reward)
            rows.append(row)
            if handle is not None:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
            if timeline_handle is not None and env.last_report is not None:
                append_timeline_jsonl(env.last_report, timeline_handle)
            if on_round is not None:
                on_round(row)
            done = terminated or truncated
    finally:
        for open_file in (handle, timeline_handle):
            if open_file is not None:
                open_file.close()
    if timeline and out_dir is not None and env.last_report is not None:
        plot_gantt(env.last_report, out_dir / "gantt.png")
    return rows
