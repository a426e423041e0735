"""One round of a session, as written to a run directory: the agent's action with its fallback note,
the round's timeline records, and the replay of checkpointed rounds (``--resume``).

:class:`~fedsimenv.experiments.session.EpisodeSession` plays rounds with these; a replay re-runs
the checkpointed rounds without training (:class:`~fedsimenv.experiments.replay.ReplayTrainer`) and
checks that the agent chooses the recorded actions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from agents.base import Agent
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.errors import NonFiniteResultError, ReplayDivergedError
from fedsimenv.experiments.replay import ReplayTrainer, RoundRecord, load_trainer_state, record_round
from fedsimenv.experiments.rundir import metric_row
from fedsimenv.sim.timeline import timeline_records

Observation = dict[str, Any]


def append_text(handle: IO[str] | None, text: str) -> None:
    """Write and flush (each round reaches the disk as it ends)."""
    if handle is not None:
        handle.write(text)
        handle.flush()


def act_with_note(agent: Agent, observation: Observation, info: Mapping[str, Any]) -> tuple[Any, str]:
    """The agent's action and its fallback note of this round (``last_note``, cleared before the
    call so a note never outlives its round; "" for agents without one)."""
    if hasattr(agent, "last_note"):
        agent.last_note = ""
    action = agent.act(observation, info)
    return action, str(getattr(agent, "last_note", "") or "")


def timeline_text(env: WirelessFLEnv, agent_note: str = "") -> str:
    """The round's timeline records, each with the agent's fallback note of the round."""
    assert env.last_report is not None
    records = [{**record, "agent_note": agent_note} for record in timeline_records(env.last_report)]
    try:  # strict JSON, like metrics.jsonl
        return "".join(json.dumps(record, allow_nan=False) + "\n" for record in records)
    except ValueError:
        raise NonFiniteResultError(
            f"round {env.last_report.round_index + 1}: a timeline quantity is not finite; the run was stopped"
        ) from None


@dataclass
class Replayed:
    """The state after replaying a checkpoint's rounds."""

    observation: Observation
    info: dict[str, Any]
    done: bool
    records: list[RoundRecord] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    timeline_lines: list[str] = field(default_factory=list)


def replay_checkpoint(
    env: WirelessFLEnv,
    agent: Agent,
    agent_name: str,
    checkpoint: Mapping[str, Any],
    observation: Observation,
    info: dict[str, Any],
    timeline: bool,
) -> Replayed:
    """Re-run the checkpointed rounds without training; return the state after the last of them.

    Raises:
        ReplayDivergedError: The agent chose another action, or (no trainer state) training gave
            other results than recorded.
    """
    records = [RoundRecord.from_dict(r) for r in checkpoint["records"]]
    state = checkpoint["trainer"]
    trainer = env.trainer
    if state is not None:
        env.trainer = ReplayTrainer(trainer, records)
    out = Replayed(observation, info, False)
    for index, record in enumerate(records):
        raw_action, note = act_with_note(agent, out.observation, out.info)
        action = np.asarray(raw_action, dtype=np.float32)
        if not np.array_equal(action, np.asarray(record.action, dtype=np.float32)):
            raise ReplayDivergedError(
                f"replay diverged in round {index + 1}: agent {agent_name!r} chose a different "
                "action than the interrupted run (is the agent deterministic given its seed?)"
            )
        out.observation, reward, terminated, truncated, out.info = env.step(action)
        if state is None and record_round(env, action) != record:
            raise ReplayDivergedError(
                f"replay diverged in round {index + 1}: training gave different results"
            )
        out.records.append(record)
        out.rows.append(metric_row(out.info, float(reward), note))
        if timeline:
            out.timeline_lines.append(timeline_text(env, note))
        out.done = terminated or truncated
    env.trainer = trainer
    if state is not None:
        load_trainer_state(trainer, state)
    return out
