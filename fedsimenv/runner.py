"""Running one agent on one scenario for a number of rounds, writing a run directory.

Run directory contents:

* ``config.yaml``: the fully resolved scenario (every default written out), written atomically;
* ``metrics.jsonl``: one JSON object per round, appended and flushed as each round ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from agents import AgentContext, make_agent
from fedsimenv.config import ScenarioConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.scenario import dump_scenario, write_text_atomic
from fedsimenv.seeding import EpisodeStreams

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
) -> list[dict[str, Any]]:
    """Run ``agent_name`` on ``config`` for ``config.episode.max_rounds`` rounds (or until terminated).

    Returns the metric rows; writes the run directory if ``out_dir`` is given.
    """
    metrics_path = out_dir / "metrics.jsonl" if out_dir is not None else None
    if metrics_path is not None and metrics_path.exists() and not overwrite:
        raise RunDirectoryError(f"{metrics_path} already exists; choose another --out or pass --overwrite")

    env = WirelessFLEnv(config)
    assert isinstance(env.action_space, spaces.Box)
    agent = make_agent(
        agent_name,
        AgentContext.from_scenario(env.config, env.action_space, system_view=env.system_view),
        seed=EpisodeStreams(np.random.SeedSequence(seed)).int_seed("agent"),
    )
    observation, info = env.reset(seed=seed)
    agent.reset(info)

    rows: list[dict[str, Any]] = []
    handle = None
    if out_dir is not None and metrics_path is not None:
        write_text_atomic(
            out_dir / "config.yaml", dump_scenario(env.config.model_copy(update={"seed": seed}))
        )
        handle = metrics_path.open("w", encoding="utf-8")
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
            if on_round is not None:
                on_round(row)
            done = terminated or truncated
    finally:
        if handle is not None:
            handle.close()
    return rows
