"""Files written whole or not at all: a temporary file beside the target, renamed onto it at the end.

Every output of the project (configs, metrics summaries, checkpoints, plots, policies, benchmark
reports) goes through :func:`replacing`, so an interrupted or failing write never leaves a
half-written file where a reader expects a finished one. Finished files get the mode any newly created
file gets (``0o666`` less the process umask), not the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` (same directory, so the rename is atomic) to write to.

    When the block ends without an exception the temporary file replaces ``path``; otherwise it is
    removed and ``path`` is untouched. ``suffix`` is the temporary file's extension, for writers that
    choose the format by it (matplotlib, Stable-Baselines3's ``.zip``). The parent directory is created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_unique(path.parent, f".{path.name}.", suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_unique(directory: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file with a random name in ``directory`` and return its path.

    Like :func:`tempfile.mkstemp` (``O_EXCL``, so never an existing file) but with mode ``0o666``: the
    kernel applies the umask at creation, which reading and restoring ``os.umask`` could not do without
    racing other threads.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        candidate = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(candidate, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"no free temporary name for {prefix}*{suffix} in {directory}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`, flushed to disk before the rename."""
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
