"""Files written whole or not at all: a temporary file beside the target, renamed onto it at the end.

Every output of the project (configs, metrics summaries, checkpoints, plots, policies, benchmark
reports) goes through :func:`replacing`, so an interrupted or failing write never leaves a
half-written file where a reader expects a finished one.
"""

from __future__ import annotations

import os
import tempfile
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
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`, flushed to disk before the rename."""
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
