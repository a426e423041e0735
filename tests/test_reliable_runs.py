"""Reliable runs: nothing non-finite reaches metrics.jsonl; one writer per run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fedsimenv.cli import main
from fedsimenv.cli.common import EXIT_FAILURE
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.errors import NonFiniteResultError
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
