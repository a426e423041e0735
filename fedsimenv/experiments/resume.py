"""What ``--resume`` checks before it continues a run: the directory still describes the run that
wrote it, and which recorded rows a resumed run must reproduce.

The session (:mod:`fedsimenv.experiments.session`) calls these under the run directory's lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsimenv.experiments.checkpoints import (
    CHECKPOINT_DIR,
    FINGERPRINT_EXCLUDES,
    checkpoint_paths,
    checkpoint_scenario,
    load_checkpoint,
    scenario_differences,
)
from fedsimenv.experiments.errors import ResumeError
from fedsimenv.experiments.rundir import CONFIG_FILE, RUN_FILE, read_jsonl


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
