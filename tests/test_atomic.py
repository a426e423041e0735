"""fedsimenv.atomic: a file is replaced whole or not at all."""

from __future__ import annotations

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
