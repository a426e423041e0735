"""The experiments layer's errors (no dependencies, so the CLI can catch them before loading torch)."""

from __future__ import annotations


class RunDirectoryError(ValueError):
    """The output directory already holds a run, or a file in it cannot be read: bad input."""


class ResumeError(ValueError):
    """A directory cannot be resumed (not a run directory, unknown checkpoint format): bad input."""


class NonFiniteResultError(RuntimeError):
    """A round produced a NaN or infinite quantity (a failure of the run, not bad input)."""


class ReplayDivergedError(RuntimeError):
    """Replaying the checkpointed rounds did not reproduce what was recorded (a failure, not bad input)."""


class DamagedCheckpointError(ResumeError):
    """A checkpoint file fails its checksum or cannot be read (resume falls back to an older one)."""
