"""One agent on one scenario and seed: the episode loop, writing (and resuming) a run directory.

:func:`run_episode` runs an episode to its end; :func:`resume_run` continues an interrupted one from
its latest checkpoint (:mod:`fedsimenv.experiments.replay`), after the checks of
:mod:`fedsimenv.experiments.resume`. The files of a run directory are described in
:mod:`fedsimenv.experiments.rundir`.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np
from gymnasium import spaces

from agents import AgentContext, configure_for_agent, make_agent
from agents.base import Agent
from fedsimenv.config import ScenarioConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.checkpoints import (
    CHECKPOINT_DIR,
    CHECKPOINT_FORMAT,
    prune_checkpoints,
    resolved_scenario,
    run_fingerprint,
    save_checkpoint,
)
from fedsimenv.experiments.errors import (
    ReplayDivergedError,
    RunDirectoryError,
)
from fedsimenv.experiments.replay import (
    RoundRecord,
    record_round,
    trainer_state,
)
from fedsimenv.experiments.resume import (
    ResumeWarning,
    checkpoint_to_resume,
    comparable,
    rewrite_replayed_files,
)
from fedsimenv.experiments.rounds import act_with_note, append_text, replay_checkpoint, timeline_text
from fedsimenv.experiments.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    TIMELINE_FILE,
    check_output_dir,
    metric_line,
    metric_row,
    read_run_meta,
    remove_temporaries,
    run_dir_lock,
    write_run_files,
)
from fedsimenv.gantt import plot_gantt
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.protocols import PROTOCOLS

Observation = dict[str, Any]
OnRound = Callable[[Mapping[str, Any]], None]

# ResumeWarning lives with the resume checks that issue it; it stays importable from here.
__all__ = ["EpisodeSession", "Observation", "OnRound", "ResumeWarning", "resume_run", "run_episode"]


class EpisodeSession:
    """One agent on one scenario and seed, optionally writing (and resuming) a run directory.

    Args:
        config: The scenario.
        agent_name: Registered agent name, or ``ALGO:PATH`` for a saved policy.
        seed: Episode seed (channel, data split, model init, agent stream all derive from it).
        out_dir: Run directory, or None to keep everything in memory.
        timeline: Also write ``timeline.jsonl`` and ``gantt.png`` (last round).
        checkpoint_every: Checkpoint every this many rounds (and at the end); None = never.
        on_round: Called with each new metric row.
        same_model: Leave out the agent's overrides of the model itself (``agents.base.MODEL_KEYS``),
            so it trains the scenario's model (``compare``'s default).
    """

    def __init__(
        self,
        config: ScenarioConfig,
        agent_name: str,
        seed: int,
        out_dir: Path | None = None,
        *,
        timeline: bool = False,
        checkpoint_every: int | None = None,
        on_round: OnRound | None = None,
        same_model: bool = False,
    ) -> None:
        if timeline and out_dir is None:
            raise ValueError(
                "--timeline needs --out (the run directory to write timeline.jsonl and gantt.png to)"
            )
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 (rounds), got {checkpoint_every}")
        if checkpoint_every is not None and out_dir is None:
            raise ValueError("checkpoints need a run directory (--out)")
        if PROTOCOLS.get(config.protocol.name).jobs_span_rounds and checkpoint_every is not None:
            # Async jobs (and their pruned sub-models) span rounds: the replay log does not hold them.
            warnings.warn(
                f"checkpoints are not supported with protocol {config.protocol.name!r}; running without",
                stacklevel=2,
            )
            checkpoint_every = None
        # An agent may need learning settings of its own (e.g. FedMP: l1-filter + r2sp); the run
        # directory records the configuration that actually ran.
        self.config = configure_for_agent(config, agent_name, same_model)
        self.same_model = same_model
        self.agent_name = agent_name
        self.seed = seed
        self.out_dir = out_dir
        self.timeline = timeline
        self.checkpoint_every = checkpoint_every
        self.on_round = on_round
        self.records: list[RoundRecord] = []
        self.rows: list[dict[str, Any]] = []
        self.replayed_rounds = 0
        self.fingerprint = run_fingerprint(self.config, agent_name, seed)
        #: Fingerprint ``run.json`` recorded (a session made by :meth:`from_run_dir`).
        self.recorded_fingerprint: str | None = None
        #: Complete rows of ``metrics.jsonl`` after the checkpoint (resume): each recomputed round
        #: must equal its row, which is kept, not rewritten.
        self.pending_rows: list[dict[str, Any]] = []

    @classmethod
    def from_run_dir(cls, run_dir: Path, on_round: OnRound | None = None) -> EpisodeSession:
        """The session recorded in ``run_dir`` (``run.json`` and ``config.yaml``), ready to resume."""
        meta = read_run_meta(run_dir)
        config = load_scenario(run_dir / CONFIG_FILE)
        session = cls(
            config,
            meta["agent"],
            meta["seed"],
            run_dir,
            timeline=meta["timeline"],
            checkpoint_every=meta["checkpoint_every"],
            on_round=on_round,
            same_model=meta["same_model"],
        )
        session.recorded_fingerprint = meta["fingerprint"]
        return session

    # -- running ------------------------------------------------------------------------------

    def run(self, *, resume: bool = False, overwrite: bool = False) -> list[dict[str, Any]]:
        """Run to the end of the episode (from the latest checkpoint if ``resume``); returns all rows.

        Raises:
            RunDirectoryError: ``out_dir`` is not a directory a run may be written to (checked before
                any work), or is being written by another process.
            ResumeError: (resume) the run directory does not match its record or is damaged beyond
                what falling back to an older checkpoint can repair.
            ReplayDivergedError: (resume) a replayed or recomputed round differs from the recorded one.
        """
        if self.out_dir is not None and not resume:
            check_output_dir(self.out_dir)
            if (self.out_dir / METRICS_FILE).exists() and not overwrite:
                raise RunDirectoryError(
                    f"{self.out_dir / METRICS_FILE} already exists; choose another --out, pass "
                    "--overwrite, or --resume it"
                )
        env, agent = self._build()
        observation, info = env.reset(seed=self.seed)
        agent.reset(info)
        lock = run_dir_lock(self.out_dir) if self.out_dir is not None else contextlib.nullcontext()
        with lock:  # one writer per run directory
            return self._run_locked(env, agent, observation, info, resume, overwrite)

    def _run_locked(
        self,
        env: WirelessFLEnv,
        agent: Agent,
        observation: Observation,
        info: dict[str, Any],
        resume: bool,
        overwrite: bool,
    ) -> list[dict[str, Any]]:
        checkpoint = self._open_run_dir(resume, overwrite)
        done, timeline_lines = False, list[str]()
        if checkpoint is not None:
            replayed = replay_checkpoint(
                env, agent, self.agent_name, checkpoint, observation, info, self.timeline
            )
            observation, info, done = replayed.observation, replayed.info, replayed.done
            self.records, self.rows = replayed.records, replayed.rows
            self.replayed_rounds, timeline_lines = len(replayed.records), replayed.timeline_lines
        if resume and self.out_dir is not None:
            self.pending_rows = rewrite_replayed_files(
                self.out_dir, self.pending_rows, self.rows, self.timeline, timeline_lines
            )
        self._play(env, agent, observation, info, done, append=resume)
        if self.timeline and self.out_dir is not None and env.last_report is not None:
            plot_gantt(env.last_report, self.out_dir / "gantt.png")
        return self.rows

    def _build(self) -> tuple[WirelessFLEnv, Agent]:
        env = WirelessFLEnv(self.config)
        assert isinstance(env.action_space, spaces.Box)
        agent = make_agent(
            self.agent_name,
            AgentContext.from_scenario(env.config, env.action_space, system_view=env.system_view),
            seed=EpisodeStreams(np.random.SeedSequence(self.seed)).int_seed("agent"),
        )
        # Literature algorithms install their server-side strategy in the trainer here.
        agent.bind(env)
        if getattr(env.trainer, "strategy", None) is not None and self.checkpoint_every is not None:
            # The strategy's own state (bandit statistics, hypernetwork, masks) is not in the
            # replay log, so a resumed run could not reproduce it.
            warnings.warn(
                f"checkpoints are not supported with agent {self.agent_name!r} (server-side strategy); "
                "running without",
                stacklevel=3,
            )
            self.checkpoint_every = None
        return env, agent

    def _open_run_dir(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """The checkpoint to resume from (resume), after checking / preparing the run directory."""
        out = self.out_dir
        if out is None:
            return None
        remove_temporaries(out)  # left by a process killed mid-write; we hold the lock
        if resume:
            checkpoint, self.pending_rows = checkpoint_to_resume(
                out, self.config, self.seed, self.recorded_fingerprint, self.fingerprint
            )
            return checkpoint
        check_output_dir(out)
        meta = {
            "agent": self.agent_name,
            "seed": self.seed,
            "checkpoint_every": self.checkpoint_every,
            "timeline": self.timeline,
            "same_model": self.same_model,
            "fingerprint": self.fingerprint,
        }
        write_run_files(out, meta, self.config.model_copy(update={"seed": self.seed}))
        return None

    def _play(
        self,
        env: WirelessFLEnv,
        agent: Agent,
        observation: Observation,
        info: dict[str, Any],
        done: bool,
        append: bool,
    ) -> None:
        """Step the episode to its end, writing each round as it ends."""
        out = self.out_dir
        mode = "a" if append else "w"
        metrics: IO[str] | None = None
        timeline: IO[str] | None = None
        try:
            if out is not None:
                metrics = (out / METRICS_FILE).open(mode, encoding="utf-8")
                if self.timeline:
                    timeline = (out / TIMELINE_FILE).open(mode, encoding="utf-8")
            while not done:
                action, note = act_with_note(agent, observation, info)
                observation, reward, terminated, truncated, info = env.step(action)
                if self.checkpoint_every is not None:  # the replay log only serves checkpoints
                    self.records.append(record_round(env, action))
                row = metric_row(info, float(reward), note)
                self._check_pending(row, metrics)
                self.rows.append(row)
                if timeline is not None:
                    append_text(timeline, timeline_text(env, note))
                done = terminated or truncated
                every = self.checkpoint_every
                if every is not None and (done or len(self.rows) % every == 0):
                    self._checkpoint(env, done)
                if self.on_round is not None:
                    self.on_round(row)
            if self.pending_rows:
                raise ReplayDivergedError(
                    f"the resumed run ended after round {len(self.rows)} but metrics.jsonl holds "
                    f"{len(self.rows) + len(self.pending_rows)} rounds (it was left as it was)"
                )
        finally:
            for handle in (metrics, timeline):
                if handle is not None:
                    handle.close()

    def _check_pending(self, row: Mapping[str, Any], metrics: IO[str] | None) -> None:
        """Write a new round's row, or (resume) check it against the row already recorded for it."""
        if not self.pending_rows:
            append_text(metrics, metric_line(row))
            return
        expected = self.pending_rows.pop(0)
        if expected != comparable(row):
            raise ReplayDivergedError(
                f"resume diverged: round {len(self.rows) + 1} recomputed differs from its row in "
                "metrics.jsonl (the file was left as it was; is the run deterministic on this machine?)"
            )

    def _checkpoint(self, env: WirelessFLEnv, done: bool) -> None:
        assert self.out_dir is not None
        round_index = len(self.rows)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "round": round_index,
            "done": done,
            "fingerprint": self.fingerprint,
            "scenario": json.dumps(resolved_scenario(self.config, self.seed), sort_keys=True),
            "trainer": trainer_state(env.trainer),
            "records": [asdict(r) for r in self.records],
        }
        folder = self.out_dir / CHECKPOINT_DIR
        save_checkpoint(folder / f"round-{round_index:06d}.pt", payload)
        prune_checkpoints(folder)


def run_episode(
    config: ScenarioConfig,
    agent_name: str,
    seed: int,
    out_dir: Path | None = None,
    overwrite: bool = False,
    on_round: OnRound | None = None,
    timeline: bool = False,
    checkpoint_every: int | None = None,
    same_model: bool = False,
) -> list[dict[str, Any]]:
    """Run ``agent_name`` on ``config`` for ``config.episode.max_rounds`` rounds (or until terminated).

    Returns the metric rows; writes the run directory if ``out_dir`` is given, with a checkpoint every
    ``checkpoint_every`` rounds (for ``--resume``).
    """
    session = EpisodeSession(
        config,
        agent_name,
        seed,
        out_dir,
        timeline=timeline,
        checkpoint_every=checkpoint_every,
        on_round=on_round,
        same_model=same_model,
    )
    return session.run(overwrite=overwrite)


def resume_run(run_dir: Path, on_round: OnRound | None = None) -> tuple[EpisodeSession, list[dict[str, Any]]]:
    """Continue the run in ``run_dir`` from its latest checkpoint; returns the session and all rows."""
    session = EpisodeSession.from_run_dir(run_dir, on_round)
    return session, session.run(resume=True)
