"""Checkpoint files of a run directory: written with a checksum, read back only if intact and of this run.

``checkpoints/round-NNNNNN.pt`` is a ``torch.save`` of tensors, lists, strings and numbers only (read
back with ``torch.load(weights_only=True)``, so loading never executes code). Beside it,
``round-NNNNNN.pt.sha256`` holds the SHA-256 of the ``.pt`` bytes in ``sha256sum`` format (``sha256sum
-c`` checks it by hand). The ``.pt`` is written (atomically) before its checksum, so a checkpoint cut
off by ``kill -9`` has no checksum and is never trusted.

Each payload carries the run's fingerprint (:func:`run_fingerprint`: SHA-256 of the resolved scenario,
agent and seed) and the resolved scenario itself, so a checkpoint of another run, or of this run with
an edited ``config.yaml``, is recognised and the differing fields named.

:func:`newest_valid_checkpoint` is what ``--resume`` uses: a damaged checkpoint (checksum missing or
wrong, unreadable, malformed) is skipped for the next older one, and said so; a checkpoint of a
different configuration is an error (:class:`~fedsimenv.experiments.errors.ResumeError`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from fedsimenv.atomic import replacing, write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.errors import DamagedCheckpointError, ResumeError

#: Version of the checkpoint payload layout (2: fingerprint, scenario and a ``.sha256`` beside it).
CHECKPOINT_FORMAT = 2
#: Checkpoint files kept per run (older ones are deleted after a newer one is safely on disk).
KEEP_CHECKPOINTS = 2
CHECKPOINT_DIR = "checkpoints"
CHECKSUM_SUFFIX = ".sha256"
#: Scenario fields left out of the fingerprint: a resumed run may be extended (never shortened).
FINGERPRINT_EXCLUDES = (("episode", "max_rounds"),)


def resolved_scenario(config: ScenarioConfig, seed: int) -> dict[str, Any]:
    """The scenario as ``config.yaml`` records it (plain JSON values, ``seed`` set)."""
    return config.model_copy(update={"seed": seed}).model_dump(mode="json")


def run_fingerprint(config: ScenarioConfig, agent: str, seed: int) -> str:
    """SHA-256 (hex) of the resolved scenario, agent name and seed: what identifies a run.

    ``episode.max_rounds`` is left out (:data:`FINGERPRINT_EXCLUDES`) so that a run can be resumed
    with more rounds; fewer rounds than already written is refused by the session.
    """
    scenario = resolved_scenario(config, seed)
    for section, key in FINGERPRINT_EXCLUDES:
        scenario[section].pop(key, None)
    blob = json.dumps({"scenario": scenario, "agent": agent, "seed": seed}, sort_keys=True, allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def checkpoint_paths(folder: Path) -> list[Path]:
    """The checkpoint files of ``folder``, oldest first."""
    return sorted(folder.glob("round-*.pt"))


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Write the checkpoint atomically, then its checksum file (also atomically)."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    data = buffer.getvalue()
    with replacing(path) as tmp, tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    write_text_atomic(checksum_path(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")


def _read_verified(path: Path) -> bytes:
    """The bytes of checkpoint ``path`` if its checksum file exists and matches them."""
    try:
        recorded = checksum_path(path).read_text(encoding="ascii").split()
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedCheckpointError(f"{path.name}: no checksum file (the write was cut off)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedCheckpointError(f"{path.name}: unreadable ({type(err).__name__})") from None
    if not recorded or recorded[0] != hashlib.sha256(data).hexdigest():
        raise DamagedCheckpointError(f"{path.name}: checksum mismatch (the file is damaged)")
    return data


def load_checkpoint(path: Path, fingerprint: str | None = None) -> dict[str, Any]:
    """Load a checkpoint after checking its checksum, format, layout and (if given) fingerprint.

    Raises:
        DamagedCheckpointError: checksum missing or wrong, unreadable, or not a checkpoint's layout.
        ResumeError: a checkpoint of a different format, or of a run with another fingerprint.
    """
    data = _read_verified(path)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise DamagedCheckpointError(
            f"{path.name}: not a readable checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(payload, dict):
        raise DamagedCheckpointError(f"{path.name}: not a checkpoint (a {type(payload).__name__})")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(
            f"{path}: checkpoint format {payload.get('format')!r}, expected {CHECKPOINT_FORMAT} "
            "(written by another fedsimenv version); start a new run"
        )
    _check_layout(path, payload)
    if fingerprint is not None and payload["fingerprint"] != fingerprint:
        raise ResumeError(f"{path.name}: checkpoint of a different run (fingerprint mismatch)")
    return payload


def _check_layout(path: Path, payload: Mapping[str, Any]) -> None:
    expected: dict[str, type | tuple[type, ...]] = {
        "round": int,
        "done": bool,
        "records": list,
        "fingerprint": str,
        "scenario": str,
        "trainer": (dict, type(None)),
    }
    for key, kind in expected.items():
        if not isinstance(payload.get(key), kind):
            raise DamagedCheckpointError(f"{path.name}: malformed checkpoint ({key!r} missing or mistyped)")
    if payload["round"] != len(payload["records"]) or not all(
        isinstance(r, dict) for r in payload["records"]
    ):
        raise DamagedCheckpointError(f"{path.name}: malformed checkpoint (records do not match the round)")


def checkpoint_scenario(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved scenario a checkpoint was written with ({} if it does not parse)."""
    try:
        scenario = json.loads(payload["scenario"])
    except (KeyError, TypeError, json.JSONDecodeError):
        return {}
    return scenario if isinstance(scenario, dict) else {}


def scenario_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two resolved scenarios, ``path (old -> new)``."""
    found: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += scenario_differences(a, b, path + ".")
        elif a != b:
            found.append(f"{path} ({a!r} -> {b!r})")
    return found


def _newest_first(folder: Path) -> Iterator[Path]:
    yield from reversed(checkpoint_paths(folder))


def newest_valid_checkpoint(
    folder: Path, fingerprint: str, warn: Callable[[str], None]
) -> dict[str, Any] | None:
    """The newest intact checkpoint of this run in ``folder`` (None if there is none).

    A damaged checkpoint is skipped for the next older one, calling ``warn`` with the reason.

    Raises:
        ResumeError: a checkpoint of another configuration (e.g. ``config.yaml`` edited), or of another
            format.
    """
    for path in _newest_first(folder):
        try:
            return load_checkpoint(path, fingerprint)
        except DamagedCheckpointError as err:
            warn(f"checkpoint {err}; falling back to an older checkpoint")
    return None


def prune_checkpoints(folder: Path) -> None:
    """Delete all but the newest :data:`KEEP_CHECKPOINTS` checkpoints (and their checksums)."""
    for old in checkpoint_paths(folder)[:-KEEP_CHECKPOINTS]:
        old.unlink()
        checksum_path(old).unlink(missing_ok=True)


def remove_checkpoints(folder: Path) -> None:
    """Delete every checkpoint and checksum file in ``folder`` (a fresh run in an old run's directory)."""
    for old in checkpoint_paths(folder):
        old.unlink()
    for stray in folder.glob(f"round-*.pt{CHECKSUM_SUFFIX}"):
        stray.unlink()
