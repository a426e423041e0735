"""Fuzz suite of issue 17 (:mod:`tests.fuzz`): every traceback, NaN and data-loss count must be 0.

The default run takes a small, representative, seeded slice of each campaign; ``-m slow`` runs the
full ones (>= 300 mutated scenarios, every damage three times, every env id three steps per action,
three pairs of concurrent writers). ``python -m tests.fuzz_report`` prints the counts table.
"""

from __future__ import annotations

from pathlib import Path

import fuzz
import pytest


def _check(name: str, tally: fuzz.Tally) -> None:
    print(f"\n{fuzz.format_report({name: tally})}")
    assert tally.bad() == 0, tally.examples
    assert tally["tried"] > 0


def test_hostile_actions_on_every_env_id() -> None:
    tally = fuzz.env_actions(steps_per_env=1)
    _check("env actions", tally)
    # Wrong shapes and types are refused; NaN/inf are clipped as documented in fedsimenv.actions.
    assert tally["clear error"] >= 3 * 8 and tally["ok"] >= 3 * 6


def test_mutated_scenarios_validate_and_run_cleanly(tmp_path: Path) -> None:
    tally = fuzz.scenario_mutations(16, tmp_path, seed=3)
    _check("scenario mutants", tally)
    assert tally["clear error"] > 0 and tally["ok"] > 0


@pytest.mark.parametrize(
    "kinds",
    [
        [
            "flip byte in newest checkpoint",
            "flip byte in every checkpoint",
            "truncate metrics.jsonl",
            "config.yaml learning_rate",
            "config.yaml lower max_rounds",
            "forged checkpoint: malformed record",
            "run.json seed a string",
            "stale temporary files",
        ]
    ],
)
def test_damaged_run_directories_resume_or_refuse_without_losing_rows(
    tmp_path: Path, kinds: list[str]
) -> None:
    tally = fuzz.damaged_resumes(tmp_path, kinds=kinds)
    _check("damaged --resume", tally)
    assert tally["ok"] >= 3 and tally["clear error"] >= 3


def test_malicious_cifar_calibration_and_trace_files_run_nothing_and_leak_nothing(tmp_path: Path) -> None:
    tally = fuzz.malicious_files(tmp_path)
    _check("malicious files", tally)
    assert not (tmp_path / "PWNED").exists()
    assert tally["ok"] == 2  # the genuine CIFAR layout, pickled with protocols 2 and 5, still loads


def test_out_directories_are_refused_or_written_0644(tmp_path: Path) -> None:
    _check("--out directories", fuzz.output_dirs(tmp_path))


@pytest.mark.slow
def test_full_fuzz_campaigns(tmp_path: Path) -> None:
    results = {
        "env actions": fuzz.env_actions(steps_per_env=3),
        "scenario mutants": fuzz.scenario_mutations(320, _mkdir(tmp_path / "m")),
        "damaged --resume": fuzz.damaged_resumes(_mkdir(tmp_path / "r"), repeats=3),
        "concurrent writers": fuzz.concurrent_writers(_mkdir(tmp_path / "c"), pairs=3),
    }
    print("\n" + fuzz.format_report(results))
    assert results["scenario mutants"]["tried"] >= 300
    assert all(t.bad() == 0 for t in results.values()), {k: t.examples for k, t in results.items()}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path
