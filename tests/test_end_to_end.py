"""The README's vertical slice, end to end: real training over the simulated cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsimenv.cli import main
from fedsimenv.experiments.rundir import METRIC_KEYS


@pytest.mark.parametrize(
    ("rounds", "min_accuracy"),
    [
        # 3 rounds reach ~0.91 on CPU (chance is 0.1): 0.7 leaves room and still needs real learning.
        (3, 0.70),
        pytest.param(10, 0.90, marks=pytest.mark.slow),
    ],
)
def test_equal_agent_on_tiny_learns_the_digits(tmp_path: Path, rounds: int, min_accuracy: float) -> None:
    out = tmp_path / "run"
    args = ["run", "tiny", "--agent", "equal", "--rounds", str(rounds), "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(1, rounds + 1))
    for key in ("round", "sim_time_s", "round_latency_s", "energy_j", "accuracy", "num_selected"):
        assert all(key in r for r in rows), key
    assert rows[-1]["accuracy"] >= min_accuracy
    assert all(r["num_selected"] == 10 and r["mean_rho"] == 0.0 for r in rows)
    # Cumulative columns are the running sums of the per-round ones.
    assert rows[-1]["sim_time_s"] == pytest.approx(sum(r["round_latency_s"] for r in rows))
    assert rows[-1]["energy_j"] == pytest.approx(sum(r["round_energy_j"] for r in rows))
    assert (out / "config.yaml").read_text().startswith("name: tiny")


def test_random_agent_runs_and_prunes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "tiny", "--agent", "random", "--rounds", "3", "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Digits has 10 classes: the general top-5 column follows the standard ones.
    assert set(rows[0]) == {*METRIC_KEYS, "mean_rho", "top5_accuracy"} - {"mean_pruning_rate"}
    assert all(0 < r["mean_rho"] < 0.9 for r in rows)
    assert all(1 <= r["num_selected"] <= 10 for r in rows)


def test_cli_run_prints_a_per_round_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "tiny", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "latency s" in out and "accuracy" in out
    assert "done: 2 rounds" in out


def test_cli_list_prints_every_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "equal" in out and "random" in out and "optimal" in out
    assert "tiny" in out.split("scenarios: ")[1].splitlines()[0].split(", ")
    for section in (
        "scenarios: ",
        "agents: ",
        "path-loss models:",
        "fading models:",
        "pruning methods: ",
        "rewards:",
        "trainers: ",
    ):
        assert section in out
    pruning_line = next(line for line in out.splitlines() if line.startswith("pruning methods:"))
    assert "magnitude" in pruning_line and "l1-filter" in pruning_line
    assert "surrogate" in out and "torch" in out and "time-to-target" in out
