"""Run directories that survive interruption: checkpoints and exact resume by deterministic replay.

Why replay: the SimPy environment (live generator-based processes), the channel and availability
processes and the agents (their RNGs, counters, solver caches) cannot be serialised safely or
generically. Only the learning state is both expensive to recompute and easy to save. So a checkpoint
after round r holds:

* the trainer's state (model weights and the ``torch.Generator`` state; any trainer with
  ``state_dict()`` / ``load_state_dict()`` is supported), as plain tensors;
* a replay log of rounds 1..r: the agent's action, the pruning request the env made, the model costs
  the trainer answered, the devices that arrived, and the learning result.

``--resume DIR`` rebuilds the env and the agent from the seed and re-runs rounds 1..r with the real
agent, simulator and reward but a :class:`ReplayTrainer` that plays back the recorded costs and
results instead of training. Every replayed action is compared bit for bit with the recorded one,
every arrival set and metric row with the recorded ones (:class:`ReplayDivergedError` on any difference), so
the simulator's clock, batteries, availability, channel and RNG streams and the agent's state end up
exactly where they were. Then the trainer state is loaded and the run continues; replay costs the
timing plane and the agent only (milliseconds per round), no training. A trainer without a state
(neither of the above) is replayed with real training: still exact, only slower.

Files of a run directory (every file but the two append-only JSONL files is written atomically):

* ``run.json``: agent, seed, checkpoint interval, timeline flag;
* ``config.yaml``: the resolved scenario (every default written out, ``seed`` set);
* ``metrics.jsonl`` (and ``timeline.jsonl``): appended and flushed per round; on resume they are
  rewritten atomically up to the checkpoint and appended to again, so a half-written last line left
  by ``kill -9`` disappears;
* ``checkpoints/round-NNNNNN.pt``: ``torch.save`` of tensors, lists and numbers only, read back with
  ``torch.load(weights_only=True)``; the last :data:`KEEP_CHECKPOINTS` are kept; the final round is
  always checkpointed (``done``), so resuming a finished run returns at once.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray

from agents import AgentContext, configure_for_agent, make_agent
from fedsimenv.atomic import replacing, write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.gantt import plot_gantt
from fedsimenv.learning.plan import DeviceJob, LearningResult, ModelCost, RoundPlan
from fedsimenv.learning.trainer import Trainer
from fedsimenv.runner import METRIC_KEYS, RunDirectoryError
from fedsimenv.scenario import dump_scenario, load_scenario
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.timeline import timeline_records

#: Version of the checkpoint payload layout.
CHECKPOINT_FORMAT = 1
#: Checkpoint files kept per run (older ones are deleted after a newer one is safely on disk).
KEEP_CHECKPOINTS = 2
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"


class ResumeError(ValueError):
    """A directory cannot be resumed (not a run directory, unknown checkpoint format): bad input."""


class ReplayDivergedError(RuntimeError):
    """Replaying the checkpointed rounds did not reproduce what was recorded (a failure, not bad input)."""


@dataclass(frozen=True)
class RoundRecord:
    """What one round needs to be replayed without training (plain lists and numbers only)."""

    action: list[float]
    request: list[tuple[int, float]]  # (device, rho) as the env asked the trainer
    costs: list[tuple[int, float, float, int, int]]  # (device, flops/sample, bits, kept, total)
    arrived: list[int]
    accuracy: float
    loss: float
    num_trained: int

    def model_costs(self) -> dict[int, ModelCost]:
        return {
            device: ModelCost(
                forward_flops_per_sample=flops, upload_bits=bits, kept_params=kept, total_params=total
            )
            for device, flops, bits, kept, total in self.costs
        }


def record_round(env: WirelessFLEnv, action: NDArray[Any]) -> RoundRecord:
    """The replay record of the round ``env`` just stepped with ``action``."""
    plan, learning, report = env.last_plan, env.last_learning, env.last_report
    if plan is None or learning is None or report is None:
        raise RuntimeError("no round stepped yet")
    return RoundRecord(
        action=[float(a) for a in np.asarray(action, dtype=np.float32)],
        request=[(int(k), float(v)) for k, v in plan.pruning_rates.items()],
        costs=[
            (
                int(k),
                float(c.forward_flops_per_sample),
                float(c.upload_bits),
                int(c.kept_params),
                int(c.total_params),
            )
            for k, c in plan.costs.items()
        ],
        arrived=[int(k) for k in np.flatnonzero(report.arrived)],
        accuracy=float(learning.accuracy),
        loss=float(learning.loss),
        num_trained=int(learning.num_trained),
    )


class ReplayTrainer(Trainer):
    """Plays back recorded rounds instead of training.

    The episode set-up (``reset``: data split, sample counts) and the cost queries of the system view
    are the real trainer's: they depend on neither the weights nor any random stream, so answering
    them from the not-yet-restored trainer is exact. Each :meth:`plan_round` must ask for exactly the
    recorded request and each :meth:`train_round` see the recorded arrivals, else
    :class:`ReplayDivergedError`.
    """

    def __init__(self, inner: Trainer, records: Sequence[RoundRecord]) -> None:
        super().__init__(inner.config, inner.num_devices)
        self.inner = inner
        self.records = list(records)
        self.index = 0

    def reset(self, streams: EpisodeStreams) -> LearningResult:
        return self.inner.reset(streams)

    @property
    def num_samples(self) -> NDArray[np.int64]:
        return self.inner.num_samples

    def download_bits(self) -> float:
        return self.inner.download_bits()

    def cost_at(self, rho: float) -> ModelCost:
        return self.inner.cost_at(rho)

    def plan_round(self, pruning_rate: Mapping[int, float], *, spans_rounds: bool = False) -> RoundPlan:
        if self.index >= len(self.records):
            raise ReplayDivergedError(
                f"replay asked for round {self.index + 1}; {len(self.records)} were recorded"
            )
        record = self.records[self.index]
        request = [(int(k), float(v)) for k, v in pruning_rate.items()]
        if request != [tuple(r) for r in record.request]:
            raise ReplayDivergedError(
                f"replay diverged in round {self.index + 1}: the env asked for pruning rates {request}, "
                f"the interrupted run recorded {record.request}"
            )
        costs = record.model_costs()
        return RoundPlan({k: DeviceJob(k, rho, costs[k]) for k, rho in request})

    def train_round(self, plan: RoundPlan, arrived: Sequence[int]) -> LearningResult:
        record = self.records[self.index]
        if [int(k) for k in arrived] != list(record.arrived):
            raise ReplayDivergedError(
                f"replay diverged in round {self.index + 1}: devices {list(arrived)} arrived, "
                f"the interrupted run recorded {record.arrived}"
            )
        self.index += 1
        return LearningResult(accuracy=record.accuracy, loss=record.loss, num_trained=record.num_trained)


def trainer_state(trainer: Trainer) -> dict[str, Any] | None:
    """The trainer's learning state as plain tensors, or None if it cannot be captured."""
    try:
        return trainer.state_dict()
    except NotImplementedError:
        return None


def load_trainer_state(trainer: Trainer, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`trainer_state`."""
    try:
        trainer.load_state_dict(state)
    except NotImplementedError:
        raise ResumeError(f"trainer {type(trainer).__name__} has no state to load") from None


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` via a temporary file and rename (no half-written checkpoint is ever visible)."""
    with replacing(path) as tmp, tmp.open("wb") as handle:
        torch.save(dict(payload), handle)
        handle.flush()
        os.fsync(handle.fileno())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors, lists, dicts and numbers only)."""
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(
            f"{path}: checkpoint format {payload.get('format')!r}, expected {CHECKPOINT_FORMAT}"
        )
    return payload


def latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint of ``run_dir``, or None if there is none."""
    for path in sorted((run_dir / CHECKPOINT_DIR).glob("round-*.pt"), reverse=True):
        try:
            return load_checkpoint(path)
        except (OSError, RuntimeError, EOFError) as err:  # unreadable: fall back to an older one
            if isinstance(err, ResumeError):
                raise
    return None


def metric_row(info: Mapping[str, Any], reward: float) -> dict[str, Any]:
    """One ``metrics.jsonl`` row from a step's info (the keys of :data:`METRIC_KEYS`)."""
    row = {key: info[key] for key in METRIC_KEYS if key != "reward"}
    row["mean_rho"] = row.pop("mean_pruning_rate")
    row["reward"] = float(reward)
    return row


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the last line may be half-written after kill -9
                break
    return rows


class EpisodeSession:
    """One agent on one scenario and seed, optionally writing (and resuming) a run directory.

    Args:
        config: The scenario.
        agent_name: Registered agent name.
        seed: Episode seed (channel, data split, model init, agent stream all derive from it).
        out_dir: Run directory, or None to keep everything in memory.
        timeline: Also write ``timeline.jsonl`` and ``gantt.png`` (last round).
        checkpoint_every: Checkpoint every this many rounds (and at the end); None = never.
        on_round: Called with each new metric row.
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
        on_round: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        if timeline and out_dir is None:
            raise ValueError(
                "--timeline needs --out (the run directory to write timeline.jsonl and gantt.png to)"
            )
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 (rounds), got {checkpoint_every}")
        if checkpoint_every is not None and out_dir is None:
            raise ValueError("checkpoints need a run directory (--out)")
        if config.protocol.name == "async" and checkpoint_every is not None:
            # Async jobs (and their pruned sub-models) span rounds: the replay log does not hold them yet.
            warnings.warn(
                "checkpoints are not supported with protocol 'async'; running without", stacklevel=2
            )
            checkpoint_every = None
        # An agent may need learning settings of its own (e.g. FedMP: l1-filter + r2sp); the run
        # directory records the configuration that actually ran.
        self.config = configure_for_agent(config, agent_name)
        self.agent_name = agent_name
        self.seed = seed
        self.out_dir = out_dir
        self.timeline = timeline
        self.checkpoint_every = checkpoint_every
        self.on_round = on_round
        self.records: list[RoundRecord] = []
        self.rows: list[dict[str, Any]] = []
        self.replayed_rounds = 0

    @classmethod
    def from_run_dir(
        cls, run_dir: Path, on_round: Callable[[Mapping[str, Any]], None] | None = None
    ) -> EpisodeSession:
        """The session recorded in ``run_dir`` (``run.json`` and ``config.yaml``), ready to resume."""
        run_file = run_dir / RUN_FILE
        if not run_file.is_file():
            raise ResumeError(f"{run_dir} is not a resumable run directory: {RUN_FILE} is missing")
        meta = json.loads(run_file.read_text(encoding="utf-8"))
        config = load_scenario(run_dir / "config.yaml")
        return cls(
            config,
            meta["agent"],
            int(meta["seed"]),
            run_dir,
            timeline=bool(meta["timeline"]),
            checkpoint_every=meta["checkpoint_every"],
            on_round=on_round,
        )

    # -- running ------------------------------------------------------------------------------

    def run(self, *, resume: bool = False, overwrite: bool = False) -> list[dict[str, Any]]:
        """Run to the end of the episode (from the latest checkpoint if ``resume``); returns all rows."""
        out = self.out_dir
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
                stacklevel=2,
            )
            self.checkpoint_every = None
        observation, info = env.reset(seed=self.seed)
        agent.reset(info)
        trainer = env.trainer

        checkpoint = None
        if resume:
            assert out is not None
            checkpoint = latest_checkpoint(out)
        elif out is not None:
            metrics_path = out / "metrics.jsonl"
            if metrics_path.exists() and not overwrite:
                raise RunDirectoryError(
                    f"{metrics_path} already exists; choose another --out, pass --overwrite, or --resume it"
                )
            self._write_run_files(out)

        timeline_lines: list[str] = []
        done = False
        if checkpoint is not None:
            observation, info, done, timeline_lines = self._replay(env, agent, checkpoint, observation, info)
        metrics = timeline_handle = None
        if out is not None:
            if resume:
                self._check_recorded_rows(out)
                write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))
                if self.timeline:
                    write_text_atomic(out / "timeline.jsonl", "".join(timeline_lines))
            metrics = (out / "metrics.jsonl").open("a" if resume else "w", encoding="utf-8")
            if self.timeline:
                timeline_handle = (out / "timeline.jsonl").open("a" if resume else "w", encoding="utf-8")
        try:
            while not done:
                action = agent.act(observation, info)
                observation, reward, terminated, truncated, info = env.step(action)
                if self.checkpoint_every is not None:  # the replay log only serves checkpoints
                    self.records.append(record_round(env, action))
                row = metric_row(info, float(reward))
                self.rows.append(row)
                if metrics is not None:
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                if timeline_handle is not None and env.last_report is not None:
                    timeline_handle.write(_timeline_text(env))
                    timeline_handle.flush()
                done = terminated or truncated
                every = self.checkpoint_every
                if every is not None and (done or len(self.rows) % every == 0):
                    self._checkpoint(trainer, done)
                if self.on_round is not None:
                    self.on_round(row)
        finally:
            for handle in (metrics, timeline_handle):
                if handle is not None:
                    handle.close()
        if self.timeline and out is not None and env.last_report is not None:
            plot_gantt(env.last_report, out / "gantt.png")
        return self.rows

    def _write_run_files(self, out: Path) -> None:
        meta = {
            "agent": self.agent_name,
            "seed": self.seed,
            "checkpoint_every": self.checkpoint_every,
            "timeline": self.timeline,
        }
        write_text_atomic(out / RUN_FILE, json.dumps(meta, indent=2) + "\n")
        write_text_atomic(
            out / "config.yaml", dump_scenario(self.config.model_copy(update={"seed": self.seed}))
        )
        # A fresh run must not resume from an older run's checkpoints left in the same directory.
        for old in (out / CHECKPOINT_DIR).glob("round-*.pt"):
            old.unlink()

    def _replay(
        self,
        env: WirelessFLEnv,
        agent: Any,
        checkpoint: Mapping[str, Any],
        observation: dict[str, Any],
        info: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any], bool, list[str]]:
        """Re-run the checkpointed rounds without training; return the state after the last of them."""
        records = [RoundRecord(**r) for r in checkpoint["records"]]
        state = checkpoint["trainer"]
        trainer = env.trainer
        if state is not None:
            env.trainer = ReplayTrainer(trainer, records)
        lines: list[str] = []
        done = False
        for index, record in enumerate(records):
            action = np.asarray(agent.act(observation, info), dtype=np.float32)
            if not np.array_equal(action, np.asarray(record.action, dtype=np.float32)):
                raise ReplayDivergedError(
                    f"replay diverged in round {index + 1}: agent {self.agent_name!r} chose a different "
                    "action than the interrupted run (is the agent deterministic given its seed?)"
                )
            observation, reward, terminated, truncated, info = env.step(action)
            if state is None and record_round(env, action) != record:
                raise ReplayDivergedError(
                    f"replay diverged in round {index + 1}: training gave different results"
                )
            self.records.append(record)
            self.rows.append(metric_row(info, float(reward)))
            if self.timeline:
                lines.append(_timeline_text(env))
            done = terminated or truncated
        if state is not None:
            load_trainer_state(trainer, state)
        env.trainer = trainer
        self.replayed_rounds = len(records)
        return observation, info, done, lines

    def _check_recorded_rows(self, out: Path) -> None:
        recorded = _read_jsonl(out / "metrics.jsonl")[: len(self.rows)]
        for index, (old, new) in enumerate(zip(recorded, self.rows, strict=False)):
            if old != json.loads(json.dumps(new)):
                raise ReplayDivergedError(
                    f"replay diverged: round {index + 1} of metrics.jsonl differs from the replayed round"
                )

    def _checkpoint(self, trainer: Trainer, done: bool) -> None:
        assert self.out_dir is not None
        round_index = len(self.rows)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "round": round_index,
            "done": done,
            "trainer": trainer_state(trainer),
            "records": [asdict(r) for r in self.records],
        }
        folder = self.out_dir / CHECKPOINT_DIR
        save_checkpoint(folder / f"round-{round_index:06d}.pt", payload)
        for old in sorted(folder.glob("round-*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()


def _timeline_text(env: WirelessFLEnv) -> str:
    assert env.last_report is not None
    return "".join(json.dumps(record) + "\n" for record in timeline_records(env.last_report))


def resume_run(
    run_dir: Path, on_round: Callable[[Mapping[str, Any]], None] | None = None
) -> tuple[EpisodeSession, list[dict[str, Any]]]:
    """Continue the run in ``run_dir`` from its latest checkpoint; returns the session and all rows."""
    session = EpisodeSession.from_run_dir(run_dir, on_round)
    return session, session.run(resume=True)
