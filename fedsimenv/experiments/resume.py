"""What ``--resume`` checks before it continues a run: the directory still describes the run that
wrote it, and which recorded rows a resumed run must reproduce; after the replay, the check of the
replayed rounds against ``metrics.jsonl`` and the rewrite of the run's files.

The session (:mod:`fedsimenv.experiments.session`) calls these under the run directory's lock; what
they repair or skip is reported as a :class:`ResumeWarning`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsimenv.atomic import write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.checkpoints import (
    CHECKPOINT_DIR,
    FINGERPRINT_EXCLUDES,
    checkpoint_paths,
    checkpoint_scenario,
    load_checkpoint,
    newest_valid_checkpoint,
    resolved_scenario,
    scenario_differences,
)
from fedsimenv.experiments.errors import ReplayDivergedError, ResumeError
from fedsimenv.experiments.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    RUN_FILE,
    TIMELINE_FILE,
    metric_line,
    read_jsonl,
)


def check_resumable(out: Path, recorded: str, current: str, scenario: Mapping[str, Any]) -> None:
    """Refuse to resume if ``run.json``'s fingerprint (``recorded``) is not the one of the scenario,
    agent and seed now in the directory (``current``); names the edited fields where a checkpoint
    still holds the original scenario.

    Raises:
        ResumeError: the fingerprints differ (``config.yaml`` or ``run.json`` was edited).
    """
    if recorded == current:
        return
    changed = _changed_fields(out, scenario)
    what = (
        f"{CONFIG_FILE} was edited: {', '.join(changed)}"
        if changed
        else f"{CONFIG_FILE} or {RUN_FILE} was edited"
    )
    raise ResumeError(
        f"{out} no longer matches the run that wrote it ({what}); resume refused (nothing was changed): "
        "restore the files or start a new run"
    )


def _changed_fields(out: Path, scenario: Mapping[str, Any]) -> list[str]:
    """Fields of ``scenario`` that differ from the one recorded in the newest intact checkpoint."""
    excluded = {f"{section}.{key}" for section, key in FINGERPRINT_EXCLUDES}
    for path in reversed(checkpoint_paths(out / CHECKPOINT_DIR)):
        try:
            original = checkpoint_scenario(load_checkpoint(path))
        except ResumeError:
            continue
        if original:
            changed = scenario_differences(original, scenario)
            return [c for c in changed if c.split(" ", 1)[0] not in excluded][:5]
    return []


def comparable(row: Mapping[str, Any]) -> dict[str, Any]:
    """A metric row as it reads back from ``metrics.jsonl`` (tuples become lists, and so on)."""
    result: dict[str, Any] = json.loads(json.dumps(dict(row), allow_nan=False))
    return result


def restored_rows(metrics_path: Path) -> list[dict[str, Any]]:
    """The complete rows of ``metrics.jsonl`` (a torn last line, left by ``kill -9``, is dropped).

    Raises:
        RunDirectoryError: a line before the last is not a strict-JSON object (the file is damaged).
    """
    return read_jsonl(metrics_path)


def checkpoint_to_resume(
    out: Path,
    config: ScenarioConfig,
    seed: int,
    recorded_fingerprint: str | None,
    fingerprint: str,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The newest intact checkpoint of this run (None: recompute from round 1) and the complete rows of
    ``metrics.jsonl`` a resumed run must reproduce, after checking that the directory still describes
    the run that wrote it."""
    if recorded_fingerprint is None:
        raise ResumeError(f"{out}: resume a run directory with EpisodeSession.from_run_dir")
    check_resumable(out, recorded_fingerprint, fingerprint, resolved_scenario(config, seed))
    folder = out / CHECKPOINT_DIR
    checkpoint = newest_valid_checkpoint(folder, fingerprint, _warn)
    recorded = restored_rows(out / METRICS_FILE)
    done = 0 if checkpoint is None else int(checkpoint["round"])
    if checkpoint is None and recorded:
        _warn(
            f"no intact checkpoint in {folder}: recomputing from round 1, each round checked "
            "against metrics.jsonl"
        )
    limit = config.episode.max_rounds
    if limit < max(done, len(recorded)):
        raise ResumeError(
            f"episode.max_rounds is {limit} but {out} already holds {max(done, len(recorded))} rounds; "
            "resume refused (nothing was changed): restore config.yaml or start a new run"
        )
    return checkpoint, recorded


def rewrite_replayed_files(
    out: Path,
    recorded: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    timeline: bool,
    timeline_lines: list[str],
) -> list[dict[str, Any]]:
    """After a replay: ``metrics.jsonl`` holds the replayed rounds (``rows``) and the complete rows
    recorded after them (a torn tail is dropped); ``timeline.jsonl`` the replayed rounds (later ones are
    rewritten as they are recomputed). Returns the recorded rows after the replayed rounds, which the
    rounds still to run must reproduce."""
    for index, (old, new) in enumerate(zip(recorded, rows, strict=False)):
        replayed = comparable(new)
        if old != replayed:
            keys = sorted(k for k in set(old) | set(replayed) if old.get(k) != replayed.get(k))
            raise ReplayDivergedError(
                f"replay diverged: round {index + 1} of metrics.jsonl differs from the replayed round "
                f"in {', '.join(keys)} (nothing was changed)"
            )
    if len(recorded) < len(rows):
        _warn(
            f"metrics.jsonl held {len(recorded)} of the {len(rows)} checkpointed rounds; "
            "the others were restored from the checkpoint"
        )
    pending_rows = recorded[len(rows) :]
    lines = [metric_line(r) for r in [*rows, *pending_rows]]
    write_text_atomic(out / METRICS_FILE, "".join(lines))
    if timeline:
        write_text_atomic(out / TIMELINE_FILE, "".join(timeline_lines))
    return pending_rows


def _warn(message: str) -> None:
    warnings.warn(message, ResumeWarning, stacklevel=3)


class ResumeWarning(UserWarning):
    """What ``--resume`` repaired or skipped (a damaged checkpoint, a truncated metrics.jsonl)."""
