"""The surrogate where RL goes: the pruning floor, fitted noise, calibration regions, per-region error,
recorded runs and the re-calibration loop's pieces (fast; real-training loops are marked slow)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedsimenv.config import ScenarioConfig
from fedsimenv.experiments.calibrate import REGIONS, held_out_count, region_action
from fedsimenv.learning.surrogate import Calibration, SurrogateTrainer, load_calibration
from fedsimenv.learning.surrogate_fit import (
    PackedRuns,
    RoundRecord,
    RunRecord,
    error_by_region,
    fit_curve,
    predict_run,
    records_from_json,
    records_to_json,
)
from fedsimenv.seeding import EpisodeStreams

CURVE = replace(
    load_calibration(None).curve,
    max_accuracy=0.97,
    rate=0.4,
    shape=1.5,
    share_exponent=0.4,
    prune_exponent=1.5,
    coverage_exponent=1.0,
    prune_floor=0.3,
    accuracy_noise_std=0.0,
)


def test_pruning_floor_hand_computed() -> None:
    share = np.array([0.25, 0.25])
    # kept 0.8 and 0.2 with floor 0.3: useful (0.8 - 0.3) / 0.7 and 0; K = 0.25 * 5/7 / 0.5 = 5/14.
    got = CURVE.progress_increment(share, np.array([0.2, 0.8]))
    assert got == pytest.approx(0.5**0.4 * (5 / 14) ** 1.5)
    assert CURVE.progress_increment(share, np.array([0.75, 0.9])) == 0.0  # nothing above the floor
    assert replace(CURVE, prune_floor=0.0).progress_increment(share, np.array([0.2, 0.8])) == pytest.approx(
        0.5**0.4 * 0.5**1.5
    )


def _synthetic_runs(curve: object, seeds: range, noise_std: float = 0.0) -> list[RunRecord]:
    """Runs of every region-like shape whose accuracies ``curve`` generates (plus noise)."""
    runs = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        rounds = []
        for _ in range(15):
            n = int(rng.integers(1, 11))
            share = np.full(n, 0.1)
            rho = rng.choice([0.0, 0.2, 0.5, 0.75, 0.9], size=n)
            rounds.append(RoundRecord(share, rho, float(rng.uniform(0.2, 1.0)), 0.0, 1.0))
        run = RunRecord(0.1, 2.3, tuple(rounds), REGIONS[seed % len(REGIONS)])
        acc, _ = predict_run(curve, run)  # type: ignore[arg-type]
        acc = acc + noise_std * rng.standard_normal(len(acc))
        runs.append(
            RunRecord(
                0.1,
                2.3,
                tuple(replace(r, accuracy=float(a)) for r, a in zip(run.rounds, acc, strict=True)),
                run.region,
            )
        )
    return runs


def test_fit_recovers_a_known_floor_and_the_noise_level() -> None:
    runs = _synthetic_runs(CURVE, range(12), noise_std=0.02)
    fitted = fit_curve(runs, noise=True)
    assert fitted.prune_floor == pytest.approx(0.3, abs=0.08)
    assert fitted.accuracy_noise_std == pytest.approx(0.02, abs=0.006)
    assert fit_curve(runs).accuracy_noise_std == 0.0


def test_noise_is_reproducible_per_seed_and_centred(tiny: ScenarioConfig) -> None:
    calibration = load_calibration(None)
    noisy = Calibration(
        calibration.fingerprint,
        replace(calibration.curve, accuracy_noise_std=0.03),
        calibration.costs,
        calibration.error,
    )

    def accuracies(seed: int, cal: Calibration) -> list[float]:
        trainer = SurrogateTrainer(tiny.learning, 10, calibration=cal)
        trainer.reset(EpisodeStreams(np.random.SeedSequence(seed)))
        out = []
        for _ in range(12):
            plan = trainer.plan_round(dict.fromkeys(range(10), 0.0))
            out.append(trainer.train_round(plan, list(range(10))).accuracy)
        return out

    assert accuracies(5, noisy) == accuracies(5, noisy)
    assert accuracies(5, noisy) != accuracies(6, noisy)
    clean = np.array(accuracies(5, calibration))
    # The noise is the episode's own stream times the std (the learning state is untouched).
    draws = EpisodeStreams(np.random.SeedSequence(5)).numpy("surrogate-noise").standard_normal(12)
    np.testing.assert_allclose(accuracies(5, noisy), np.clip(clean + 0.03 * draws, 0.0, 1.0))


def test_region_actions_visit_what_rl_visits() -> None:
    rng = np.random.default_rng(0)
    gains = np.array([1.0, 5.0, 2.0, 0.5])
    selected, rho, _ = region_action("degenerate", rng, {}, gains, 0.9)
    assert selected.tolist() == [False, True, False, False] and np.all(rho == 0.9)
    for _ in range(20):
        selected, rho, _ = region_action("few-devices", rng, {}, gains, 0.9)
        assert 1 <= selected.sum() <= 3
        selected, rho, _ = region_action("high-rho", rng, {}, gains, 0.9)
        assert selected.any() and np.all((rho >= 0.54) & (rho <= 0.9))
        selected, rho, _ = region_action("extreme", rng, {}, gains, 0.9)
        assert selected.sum() in (1, 4) and set(rho.tolist()) <= {0.0, 0.9}
    skewed = np.array([True, False, True, False])
    selected, rho, _ = region_action("skewed-labels", rng, {"skewed": skewed}, gains, 0.9)
    assert selected.tolist() == skewed.tolist() and np.all(rho == 0.0)
    with pytest.raises(ValueError, match="allowed values: random, degenerate"):
        region_action("nope", rng, {}, gains, 0.9)
    assert held_out_count(24) == len(REGIONS) and held_out_count(8) == 2 and held_out_count(2) == 1


def test_error_by_region_hand_computed() -> None:
    curve = replace(CURVE, prune_floor=0.0)
    one = RoundRecord(np.array([0.5]), np.array([0.9]), 0.3, 0.0, 1.0)
    many = RoundRecord(np.full(5, 0.1), np.zeros(5), 0.9, 0.0, 1.0)
    run = RunRecord(0.1, 2.3, (one, many), "extreme")
    predicted = predict_run(curve, run)[0]
    run = RunRecord(
        0.1,
        2.3,
        (replace(one, accuracy=predicted[0] - 0.1), replace(many, accuracy=predicted[1] + 0.05)),
        "extreme",
    )
    errors = error_by_region(curve, [run])
    assert errors["devices=1"] == pytest.approx({"rounds": 1, "accuracy_mae": 0.1, "accuracy_bias": 0.1})
    assert errors["devices>=4"]["accuracy_bias"] == pytest.approx(-0.05)
    assert errors["rho>=0.6"]["rounds"] == 1 and errors["coverage<0.5"]["accuracy_mae"] == pytest.approx(0.1)
    assert errors["run:extreme"]["accuracy_mae"] == pytest.approx(0.075)
    assert "devices=2-3" not in errors


def test_recorded_runs_round_trip_and_bad_files(tmp_path: Path) -> None:
    runs = _synthetic_runs(CURVE, range(3))
    back = records_from_json(records_to_json(runs), "x")
    assert [r.region for r in back] == [r.region for r in runs]
    for a, b in zip(runs, back, strict=True):
        for ra, rb in zip(a.rounds, b.rounds, strict=True):
            np.testing.assert_array_equal(ra.rho, rb.rho)
            assert ra.accuracy == rb.accuracy and ra.coverage == rb.coverage
    with pytest.raises(ValueError, match="not a calibration runs file"):
        records_from_json(json.dumps({"format": "other"}), "f.json")
    text = records_to_json(runs).replace('"accuracy": ', '"accuracy": 1e999, "x": ', 1)
    with pytest.raises(ValueError, match=r"f\.json"):
        records_from_json(text, "f.json")


def test_version_one_calibration_files_still_load(tmp_path: Path) -> None:
    data = json.loads(load_calibration(None).to_json())
    for name in ("prune_floor", "accuracy_noise_std"):
        data["curve"].pop(name)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    curve = load_calibration(old).curve
    assert curve.prune_floor == 0.0 and curve.accuracy_noise_std == 0.0
    data["curve"]["prune_floor"] = 1.5
    old.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"curve\.prune_floor"):
        load_calibration(old)


def test_packed_prediction_equals_the_plain_one() -> None:
    runs = _synthetic_runs(CURVE, range(4))
    empty = RoundRecord(np.zeros(0), np.zeros(0), 0.0, 0.0, 0.0)
    runs.append(RunRecord(0.1, 2.3, (empty, *runs[0].rounds[:3], empty, empty, runs[1].rounds[0]), "random"))
    runs.append(RunRecord(0.1, 2.3, (empty, empty), "random"))
    packed = PackedRuns(runs).predict(CURVE)
    plain = [np.concatenate([predict_run(CURVE, run)[i] for run in runs]) for i in (0, 1)]
    np.testing.assert_allclose(packed[0], plain[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(packed[1], plain[1], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_recalibrate_cli_runs_the_loop_and_reports_the_gap(tmp_path: Path) -> None:
    from fedsimenv.cli import main

    out = tmp_path / "loop"
    args = ["recalibrate", "tiny", "--out", str(out), "--runs", "2", "--policy-runs", "2", "--rounds", "3"]
    args += ["--timesteps", "64", "--eval-every", "0", "--bc-episodes", "2", "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "recalibrate.json").read_text())
    row = report["iterations"][0]
    assert row["gap_before_refit"]["rounds"] == 6 and 0 <= row["policy_real_final_accuracy"] <= 1
    runs = json.loads((out / "runs.json").read_text())
    assert [r["region"] for r in runs["runs"]] == ["random", "degenerate", "policy", "policy"]
    assert runs["held_out"] == [False, True, False, True]
    assert load_calibration(out / "calibration-1.json").error["runs_fitted"] == 2
    assert main(args) == 2  # exists: refused
