"""Reliable runs: nothing non-finite reaches metrics.jsonl; one writer per run directory."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fedsimenv.cli import main
from fedsimenv.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.errors import NonFiniteResultError, RunDirectoryError
from fedsimenv.experiments.rundir import LOCK_FILE, run_dir_lock
from fedsimenv.experiments.session import run_episode
from fedsimenv.scenario import load_scenario

FAST = {"trainer": "surrogate", "episode.max_rounds": 3}


def _strict_rows(path: Path) -> list[dict[str, Any]]:
    def refuse(constant: str) -> float:
        raise ValueError(f"non-strict JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.fixture
def nan_accuracy_in_round_2(monkeypatch: pytest.MonkeyPatch) -> None:
    step = WirelessFLEnv.step

    def poisoned(self: WirelessFLEnv, action: Any) -> Any:
        observation, reward, terminated, truncated, info = step(self, action)
        if info["round"] == 2:
            info = {**info, "accuracy": math.nan}
        return observation, reward, terminated, truncated, info

    monkeypatch.setattr(WirelessFLEnv, "step", poisoned)


@pytest.mark.usefixtures("nan_accuracy_in_round_2")
def test_a_nan_result_stops_the_run_naming_quantity_and_round(tmp_path: Path) -> None:
    config = load_scenario("tiny", FAST)
    with pytest.raises(NonFiniteResultError, match=r"round 2: accuracy is nan"):
        run_episode(config, "equal", 0, out_dir=tmp_path / "run")
    rows = _strict_rows(tmp_path / "run" / "metrics.jsonl")
    assert [row["round"] for row in rows] == [1]


@pytest.mark.usefixtures("nan_accuracy_in_round_2")
def test_a_nan_result_is_exit_1_with_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["run", "tiny", "--agent", "equal", "--out", str(out), "--quiet"]
    code = main([*args, "--set", "trainer=surrogate", "--set", "episode.max_rounds=3"])
    assert code == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith("fedsimenv: error: round 2: accuracy is nan")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert [row["round"] for row in _strict_rows(out / "metrics.jsonl")] == [1]


# -- one writer per run directory --------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
RUN_ARGS = ["run", "tiny", "--agent", "equal", "--rounds", "3", "--overwrite", "--quiet"]
RUN_SET = ["--set", "trainer=surrogate"]

#: The first writer waits in its first round until the test creates the release file, so the second
#: writer deterministically finds the directory locked.
_HELD_WRITER = """
import os, sys, time
from pathlib import Path
from fedsimenv.cli import main
from fedsimenv.env import WirelessFLEnv

release = Path(os.environ["RELEASE_FILE"])
step = WirelessFLEnv.step

def held(self, action):
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return step(self, action)

WirelessFLEnv.step = held
sys.exit(main(sys.argv[1:]))
"""


def test_a_second_lock_holder_gets_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with run_dir_lock(out):
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
        with (
            pytest.raises(
                RunDirectoryError, match=rf"being written by another process \(pid {os.getpid()}\)"
            ),
            run_dir_lock(out),
        ):
            pass
        assert (out / LOCK_FILE).exists()
    assert not (out / LOCK_FILE).exists()
    with run_dir_lock(out):  # free again
        pass
    assert not out.exists()  # created for nothing: removed again


def test_a_locked_run_directory_is_refused_by_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with run_dir_lock(out):
        assert main([*RUN_ARGS, "--out", str(out), *RUN_SET]) == EXIT_BAD_INPUT
    assert "is being written by another process" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()


def test_two_concurrent_writers_one_wins_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    release = tmp_path / "release"
    env = {**os.environ, "RELEASE_FILE": str(release)}
    args = [*RUN_ARGS, "--out", str(out), *RUN_SET]
    first = subprocess.Popen(
        [sys.executable, "-c", _HELD_WRITER, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (out / "metrics.jsonl").exists(), "the first writer did not start"
        second = subprocess.run(
            [sys.executable, "-m", "fedsimenv", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    finally:
        release.touch()
        _, first_err = first.communicate(timeout=120)
    assert first.returncode == EXIT_OK, first_err
    assert second.returncode == EXIT_BAD_INPUT
    assert second.stderr.strip() == (
        f"fedsimenv: error: {out} is being written by another process (pid {first.pid}); wait for it to "
        "finish or choose another --out"
    )
    assert [row["round"] for row in _strict_rows(out / "metrics.jsonl")] == [1, 2, 3]
    assert not (out / LOCK_FILE).exists()
