"""Running one agent on one scenario for a number of rounds, writing a run directory.

Run directory contents:

* ``run.json`` (agent, seed, checkpoint interval) and ``config.yaml`` (the fully resolved scenario,
  every default written out), written atomically;
* ``metrics.jsonl``: one JSON object per round, appended and flushed as each round ends;
* with ``timeline=True``: ``timeline.jsonl`` (one record per device and round: status, phase times,
  energy) and ``gantt.png`` (the last round as a Gantt chart);
* with ``checkpoint_every=k``: ``checkpoints/round-NNNNNN.pt`` for ``--resume`` (:mod:`fedsimenv.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fedsimenv.config import ScenarioConfig

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
    checkpoint_every: int | None = None,
) -> list[dict[str, Any]]:
    """Run ``agent_name`` on ``config`` for ``config.episode.max_rounds`` rounds (or until terminated).

    Returns the metric rows; writes the run directory if ``out_dir`` is given, with a checkpoint every
    ``checkpoint_every`` rounds (see :mod:`fedsimenv.checkpoint` for ``--resume``).
    """
    from fedsimenv.checkpoint import EpisodeSession  # imports this module: import late

    session = EpisodeSession(
        config,
        agent_name,
        seed,
        out_dir,
        timeline=timeline,
        checkpoint_every=checkpoint_every,
        on_round=on_round,
    )
    return session.run(overwrite=overwrite)
