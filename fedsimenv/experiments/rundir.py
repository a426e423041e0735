"""Run directories: their files, how they are written and how they are read back.

Files of a run directory (every file but the two append-only JSONL files is written atomically):

* ``run.json``: agent, seed, checkpoint interval, timeline flag and the run's fingerprint
  (:func:`~fedsimenv.experiments.checkpoints.run_fingerprint`; ``--resume`` refuses a run whose
  ``config.yaml`` or ``run.json`` no longer matches it);
* ``config.yaml``: the resolved scenario (every default written out, ``seed`` set);
* ``metrics.jsonl``: one row per round (:data:`METRIC_KEYS`, then an algorithm's own metrics, e.g.
  ``personal_accuracy``; simulated quantities only, so the same seed gives a byte-identical file),
  appended and flushed as each round ends; ``timeline.jsonl``
  (with ``--timeline``): one record per device and round; on resume both are rewritten atomically up
  to the checkpoint and appended to again, so a half-written last line left by ``kill -9`` disappears
  (complete rows after the checkpoint are kept and each recomputed round must equal them);
* ``gantt.png`` (with ``--timeline``): the last round as a Gantt chart;
* ``checkpoints/round-NNNNNN.pt`` and ``round-NNNNNN.pt.sha256``: a checkpoint and its checksum
  (:mod:`fedsimenv.experiments.checkpoints`); the last two are kept; the final round is always
  checkpointed (``done``), so resuming a finished run returns at once
  (:mod:`fedsimenv.experiments.replay` says what a checkpoint holds);
* ``.lock`` while a process writes the directory (:func:`run_dir_lock`; a second writer is refused).

A fresh run goes only into a new or empty directory or an earlier run directory
(:func:`check_output_dir`): a user's own files are never replaced.

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

from fedsimenv.atomic import write_text_atomic
from fedsimenv.config import MAX_SEED, ScenarioConfig
from fedsimenv.experiments.checkpoints import CHECKPOINT_DIR, remove_checkpoints
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
    "num_dropped",
    "num_failed",
    "num_packet_errors",
    "mean_pruning_rate",
    "upload_bits",
    "min_covering",
    "mean_covering",
    "reward",
    "agent_note",
)
RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TIMELINE_FILE = "timeline.jsonl"
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


def metric_row(info: Mapping[str, Any], reward: float, agent_note: str = "") -> dict[str, Any]:
    """One ``metrics.jsonl`` row from a step's info (the keys of :data:`METRIC_KEYS`).

    ``round`` is 1-based (the first round is 1, as in the timeline, the Gantt titles and the render);
    ``agent_note`` is the agent's fallback note of the round (its ``last_note``: why it did not
    apply its own solution, e.g. "no device meets the deadline"), empty when none.

    Raises:
        NonFiniteResultError: a quantity of the round is NaN or infinite (it never reaches a file).
    """
    row = {key: info[key] for key in METRIC_KEYS if key not in ("reward", "agent_note")}
    row["mean_rho"] = row.pop("mean_pruning_rate")
    row["reward"] = float(reward)
    row["agent_note"] = str(agent_note)
    # An algorithm's own per-round metrics (e.g. Sub-FedAvg's personalised accuracy), after the rest.
    row.update({str(k): float(v) for k, v in info.get("extra_metrics", {}).items()})
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

    Strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` are not numbers.

    A last line that does not parse is the torn write of an interrupted run and is left out; a bad
    line anywhere else means the file is damaged.

    Raises:
        RunDirectoryError: a line other than the last is not a JSON object.
    """
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunDirectoryError(f"{path}: not UTF-8 text (the file is damaged)") from None
    lines = [line for line in text.splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, ValueError):
            if number == len(lines):
                break
            raise RunDirectoryError(f"{path}: line {number} is not valid JSON") from None
        if not isinstance(row, dict):
            raise RunDirectoryError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON")


def write_run_files(out: Path, meta: Mapping[str, Any], config: ScenarioConfig) -> None:
    """``run.json`` and ``config.yaml`` of a fresh run; checkpoints of an older run are removed."""
    write_text_atomic(out / RUN_FILE, json.dumps(dict(meta), indent=2) + "\n")
    write_text_atomic(out / CONFIG_FILE, dump_scenario(config))
    # A fresh run must not resume from an older run's checkpoints left in the same directory.
    remove_checkpoints(out / CHECKPOINT_DIR)


#: What ``run.json`` must hold: key -> (accepted types, description for the error message).
_RUN_META: dict[str, tuple[tuple[type, ...], str]] = {
    "agent": ((str,), "an agent name"),
    "seed": ((int,), f"an integer seed in [0, {MAX_SEED}]"),
    "checkpoint_every": ((int, type(None)), "a number of rounds >= 1 or null"),
    "timeline": ((bool,), "true or false"),
    "same_model": ((bool,), "true or false"),
    "fingerprint": ((str,), "the run's fingerprint (written by fedsimenv run)"),
}


def read_run_meta(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of ``run_dir``, checked key by key.

    Raises:
        ResumeError: the file is missing, not a JSON object, or a key is missing or of a wrong type.
    """
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        raise ResumeError(f"{run_dir} is not a resumable run directory: {RUN_FILE} is missing")
    try:
        meta = json.loads(run_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResumeError(f"{run_file}: not valid JSON ({type(err).__name__})") from None
    except OSError as err:
        raise ResumeError(f"{run_file}: cannot be read ({err.strerror or err})") from None
    if not isinstance(meta, dict):
        raise ResumeError(f"{run_file}: not a JSON object")
    for key, (types, what) in _RUN_META.items():
        value = meta.get(key)
        valid = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if valid and isinstance(value, int) and key in ("seed", "checkpoint_every"):
            valid = 0 <= value <= MAX_SEED if key == "seed" else value >= 1
        if not valid:
            raise ResumeError(f"{run_file}: {key!r} must be {what}, got {value!r:.40}")
    return meta


#: Entries a run directory may hold besides temporary files (anything else belongs to the user).
RUN_DIR_ENTRIES = frozenset(
    {RUN_FILE, CONFIG_FILE, METRICS_FILE, TIMELINE_FILE, "gantt.png", CHECKPOINT_DIR, LOCK_FILE}
)


def check_output_dir(out: Path) -> None:
    """Refuse ``--out`` that is not a directory we may write a run into.

    Allowed: a path that does not exist yet, an empty directory, or a run directory (holding
    ``run.json``). A directory with other files is refused, so a user's files are never replaced.

    Raises:
        RunDirectoryError: ``out`` is a file, or a non-empty directory that is not a run directory.
    """
    if not out.exists():
        if out.parent.exists() and not out.parent.is_dir():
            raise RunDirectoryError(f"--out {out}: {out.parent} is not a directory")
        return
    if not out.is_dir():
        raise RunDirectoryError(f"--out {out} is a file, not a directory; choose a directory")
    entries = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE and not _is_temporary(p.name))
    if entries and RUN_FILE not in entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirectoryError(
            f"--out {out} is a non-empty directory that is not a run directory (it holds {shown}); "
            "choose a new or empty directory (nothing was written)"
        )


def _is_temporary(name: str) -> bool:
    """A temporary file of :func:`fedsimenv.atomic.replacing`: ``.NAME.<12 hex>.SUFFIX``."""
    parts = name.split(".")
    return (
        name.startswith(".")
        and len(parts) >= 4
        and len(parts[-2]) == 12
        and all(c in "0123456789abcdef" for c in parts[-2])
    )


def remove_temporaries(out: Path) -> list[Path]:
    """Delete temporary files left by an interrupted write in ``out`` and its checkpoint folder.

    Only call this holding :func:`run_dir_lock` (no other writer can be using them). Returns them.
    """
    removed = []
    for folder in (out, out / CHECKPOINT_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and _is_temporary(path.name):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
