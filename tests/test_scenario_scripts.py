"""Smoke tests: each scenario script runs as ``python scenarios/NAME.py`` on a tiny budget."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fast_tiny(tmp_path: Path) -> str:
    """``tiny`` with a small MLP and one local epoch, as a YAML file (the scripts take a path)."""
    from fedsimenv.scenario import dump_scenario, load_scenario

    path = tmp_path / "fast-tiny.yaml"
    path.write_text(
        dump_scenario(load_scenario("tiny", {"learning.model": "mlp", "learning.local_epochs": 1}))
    )
    return str(path)


SCRIPTS = ("run_scenario", "train_rl_policy", "compare_optimal_rl_heuristics", "dwnp_table", "unlearning")


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_runs_as_a_file(name: str) -> None:
    # ``python scenarios/NAME.py --help``: the file is a runnable script (its work is imported lazily).
    result = subprocess.run(
        [sys.executable, str(ROOT / "scenarios" / f"{name}.py"), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage:" in result.stdout


def _script(name: str, *args: str) -> str:
    """Run script ``name``'s ``main(args)`` in this process (the file itself: see above); its output."""
    module = importlib.import_module(f"scenarios.{name}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        module.main(list(args))
    return buffer.getvalue()


def test_run_scenario_script_writes_and_resumes(tmp_path: Path, fast_tiny: str) -> None:
    out = tmp_path / "run"
    stdout = _script(
        "run_scenario", "--scenario", fast_tiny, "--agent", "equal", "--rounds", "2", "--out", str(out)
    )
    assert "final accuracy" in stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2]
    assert (out / "gantt.png").stat().st_size > 0
    assert "replayed 2 rounds" in _script("run_scenario", "--resume", str(out))


def test_train_rl_policy_script(tmp_path: Path, fast_tiny: str) -> None:
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "ppo"
    stdout = _script(
        "train_rl_policy",
        "--scenario",
        fast_tiny,
        "--rounds",
        "2",
        "--total-timesteps",
        "4",
        "--bc-episodes",
        "1",
        "--out",
        str(out),
    )
    assert "trained PPO" in stdout
    assert (out / "policy.zip").stat().st_size > 0
    assert len((out / "eval.jsonl").read_text().splitlines()) == 2


def test_compare_optimal_rl_heuristics_script(tmp_path: Path, fast_tiny: str) -> None:
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "cmp"
    stdout = _script(
        "compare_optimal_rl_heuristics",
        *(
            "--scenario",
            fast_tiny,
            "--rounds",
            "2",
            "--seeds",
            "1",
            "--rl-timesteps",
            "4",
            "--bc-episodes",
            "1",
            "--baselines",
            "equal",
            "--out",
            str(out),
        ),
    )
    for agent in ("optimal", f"ppo:{out / 'ppo' / 'policy.zip'}", "equal"):
        assert f"| {agent} | 1/1 |" in stdout
    assert (out / "compare" / "summary.csv").exists()
    # --policy takes the directory fedsimenv train wrote; a run that fails makes the exit status 1.
    module = importlib.import_module("scenarios.compare_optimal_rl_heuristics")
    common = ["--scenario", fast_tiny, "--rounds", "1", "--seeds", "1", "--baselines", "equal"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert module.main([*common, "--policy", str(out / "ppo"), "--out", str(tmp_path / "a")]) == 0
        bad = tmp_path / "stale"
        bad.mkdir()
        (bad / "policy.zip").write_bytes((out / "ppo" / "policy.zip").read_bytes())
        meta = json.loads((out / "ppo" / "train.json").read_text())
        (bad / "train.json").write_text(json.dumps({**meta, "features": "an-older-version"}))
        assert module.main([*common, "--policy", str(bad), "--out", str(tmp_path / "b")]) == 1


def test_unlearning_script_reports_both_accuracies_and_the_cost(fast_tiny: str) -> None:
    stdout = _script("unlearning", "--scenario", fast_tiny, "--rounds", "2", "--prune-ratio", "0.2")
    assert "| after fine-tuning |" in stdout and "retained-class acc" in stdout
    assert "unlearning cost: activation pass" in stdout
