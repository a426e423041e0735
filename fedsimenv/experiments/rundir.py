"""Run directories: their files, how they are written and how they are read back.

Files of a run directory (every file but the two append-only JSONL files is written atomically):

* ``run.json``: agent, seed, checkpoint interval, timeline flag;
* ``config.yaml``: the resolved scenario (every default written out, ``seed`` set);
* ``metrics.jsonl``: one row per round (:data:`METRIC_KEYS`, simulated quantities only, so the same
  seed gives a byte-identical file), appended and flushed as each round ends; ``timeline.jsonl``
  (with ``--timeline``): one record per device and round; on resume both are rewritten atomically up
  to the checkpoint and appended to again, so a half-written last line left by ``kill -9`` disappears;
* ``gantt.png`` (with ``--timeline``): the last round as a Gantt chart;
* ``checkpoints/round-NNNNNN.pt``: ``torch.save`` of tensors, lists and numbers only, read back with
  ``torch.load(weights_only=True)``; the last :data:`KEEP_CHECKPOINTS` are kept; the final round is
  always checkpointed (``done``), so resuming a finished run returns at once
  (:mod:`fedsimenv.experiments.replay` says what a checkpoint holds);
* ``.lock`` while a process writes the directory (:func:`run_dir_lock`; a second writer is refused).

``metrics.jsonl`` is strict JSON: a round with a NaN or infinite quantity stops the run
(:class:`~fedsimenv.experiments.errors.NonFiniteResultError`) before its row is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from fedsimenv.atomic import replacing, write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.errors import NonFiniteResultError, ResumeError, RunDirectoryError
from fedsimenv.scenario import dump_scenario

#: Keys of each ``metrics.jsonl`` row, in order (``mean_pruning_rate`` is written as ``mean_rho``).
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
    "num_failed",
    "num_packet_errors",
    "mean_pruning_rate",
    "upload_bits",
    "reward",
)
#: Version of the checkpoint payload layout.
CHECKPOINT_FORMAT = 1
#: Checkpoint files kept per run (older ones are deleted after a newer one is safely on disk).
KEEP_CHECKPOINTS = 2
RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TIMELINE_FILE = "timeline.jsonl"
CHECKPOINT_DIR = "checkpoints"
#: Advisory lock file held (``flock``) by the one process writing a run / compare / sweep directory.
LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_dir_lock(path: Path) -> Iterator[None]:
    """Hold the advisory write lock of directory ``path`` (created if missing) for the block.

    The lock is ``fcntl.flock`` on ``path/.lock`` (holding the owner's pid), taken without waiting;
    the file is removed when the block ends. It is released by the kernel if the process dies.

    Raises:
        RunDirectoryError: another process holds the lock, or ``path`` cannot be used as a directory.
    """
    lock_path = path / LOCK_FILE
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise RunDirectoryError(
                    f"{path} is being written by another process (pid {owner}); wait for it to "
                    "finish or choose another --out"
                ) from None
            # The previous holder may have removed the file between our open and flock: retry on
            # the file now at lock_path, or two processes would each hold a lock on a different file.
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
    except OSError as err:
        raise RunDirectoryError(f"cannot write to {path}: {err.strerror or err}") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(fd)
        if created:  # a command that wrote nothing leaves nothing behind
            with contextlib.suppress(OSError):
                path.rmdir()


def metric_row(info: Mapping[str, Any], reward: float) -> dict[str, Any]:
    """One ``metrics.jsonl`` row from a step's info (the keys of :data:`METRIC_KEYS`).

    Raises:
        NonFiniteResultError: a quantity of the round is NaN or infinite (it never reaches a file).
    """
    row = {key: info[key] for key in METRIC_KEYS if key != "reward"}
    row["mean_rho"] = row.pop("mean_pruning_rate")
    row["reward"] = float(reward)
    for key, value in row.items():
        if isinstance(value, numbers.Real) and not math.isfinite(value):
            raise NonFiniteResultError(
                f"round {row.get('round')}: {key} is {value} (not finite); the run was stopped "
                "(metrics.jsonl holds the rounds before it)"
            )
    return row


def metric_line(row: Mapping[str, Any]) -> str:
    """A ``metrics.jsonl`` line: strict JSON (``NaN``/``Infinity`` refused)."""
    return json.dumps(dict(row), allow_nan=False) + "\n"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-blank line ([] if the file does not exist).

    A last line that does not parse is the torn write of an interrupted run and is left out; a bad
    line anywhere else means the file is damaged.

    Raises:
        RunDirectoryError: a line other than the last is not a JSON object.
    """
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise RunDirectoryError(f"{path}: line {number} is not valid JSON") from None
        if not isinstance(row, dict):
            raise RunDirectoryError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def write_run_files(out: Path, meta: Mapping[str, Any], config: ScenarioConfig) -> None:
    """``run.json`` and ``config.yaml`` of a fresh run; checkpoints of an older run are removed."""
    write_text_atomic(out / RUN_FILE, json.dumps(dict(meta), indent=2) + "\n")
    write_text_atomic(out / CONFIG_FILE, dump_scenario(config))
    # A fresh run must not resume from an older run's checkpoints left in the same directory.
    for old in (out / CHECKPOINT_DIR).glob("round-*.pt"):
        old.unlink()


def read_run_meta(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of ``run_dir``.

    Raises:
        ResumeError: the file is missing or not a JSON object.
    """
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        raise ResumeError(f"{run_dir} is not a resumable run directory: {RUN_FILE} is missing")
    try:
        meta = json.loads(run_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ResumeError(f"{run_file}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ResumeError(f"{run_file}: not a JSON object")
    return meta


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


def prune_checkpoints(folder: Path) -> None:
    """Delete all but the newest :data:`KEEP_CHECKPOINTS` checkpoints in ``folder``."""
    for old in sorted(folder.glob("round-*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink()
