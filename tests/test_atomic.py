"""fedsimenv.atomic: a file is replaced whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fedsimenv.atomic import replacing, write_text_atomic


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "summary.md"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), replacing(target, ".png") as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["summary.md"]


def test_a_finished_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "policy.zip"
    with replacing(target, ".zip") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".zip"  # same directory: an atomic rename
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["policy.zip"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path, umask: int) -> None:
    # What open(path, "w") would give a new file: 0o666 less the umask (POSIX creat semantics).
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "summary.md", "x\n")
        with replacing(tmp_path / "plot.png", ".png") as tmp:
            tmp.write_bytes(b"png")
        reference = tmp_path / "reference"
        reference.write_text("x\n")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(reference.stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "summary.md").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "plot.png").stat().st_mode) == expected
