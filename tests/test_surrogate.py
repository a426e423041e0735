"""The surrogate trainer: same interface and data as the torch trainer, bounded error on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedsimenv.cli import main
from fedsimenv.config import ScenarioConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.calibrate import record_run
from fedsimenv.learning.surrogate import CalibrationError, SurrogateTrainer, load_calibration
from fedsimenv.learning.surrogate_fit import curve_error
from fedsimenv.learning.trainer import TRAINERS
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams

#: Bound on the shipped calibration's mean absolute accuracy error on real runs it never saw.
HELD_OUT_ACCURACY_MAE_BOUND = 0.15


def test_surrogate_matches_the_torch_trainers_data_and_costs(tiny: ScenarioConfig) -> None:
    streams = EpisodeStreams(np.random.SeedSequence(42))
    real = TRAINERS.get("torch")(tiny.learning, 10)
    fake = TRAINERS.get("surrogate")(tiny.learning, 10)
    real.reset(streams)
    fake.reset(streams)
    np.testing.assert_array_equal(real.num_samples, fake.num_samples)
    assert fake.download_bits() == real.download_bits()
    for rho in (0.0, 0.3, 0.75):
        want, got = real.plan_round({0: rho}).costs[0], fake.plan_round({0: rho}).costs[0]
        assert got.upload_bits == pytest.approx(want.upload_bits, rel=0.01)
        assert got.forward_flops_per_sample == pytest.approx(want.forward_flops_per_sample, rel=0.01)
        assert abs(got.kept_params - want.kept_params) <= 0.01 * want.total_params


def test_surrogate_learns_more_with_more_data_and_less_pruning(tiny: ScenarioConfig) -> None:
    def final_accuracy(devices: list[int], rho: float) -> float:
        trainer = SurrogateTrainer(tiny.learning, 10)
        trainer.reset(EpisodeStreams(np.random.SeedSequence(0)))
        for _ in range(5):
            plan = trainer.plan_round(dict.fromkeys(devices, rho))
            result = trainer.train_round(plan, devices)
        return result.accuracy

    everyone = list(range(10))
    assert final_accuracy(everyone, 0.0) > final_accuracy(everyone, 0.8)
    assert final_accuracy(everyone, 0.0) > final_accuracy([0], 0.0)
    trainer = SurrogateTrainer(tiny.learning, 10)
    start = trainer.reset(EpisodeStreams(np.random.SeedSequence(0)))
    plan = trainer.plan_round({0: 0.0})
    assert trainer.train_round(plan, []).accuracy == start.accuracy  # nobody arrived: model unchanged
    with pytest.raises(ValueError, match="no job was planned"):
        trainer.train_round(plan, [3])


def test_shipped_calibration_error_on_unseen_real_runs_is_bounded() -> None:
    calibration = load_calibration(None)
    assert calibration.error["held_out"]["accuracy_mae"] < HELD_OUT_ACCURACY_MAE_BOUND
    config = load_scenario("tiny", {"episode.max_rounds": 8})
    runs = [record_run(config, seed) for seed in (1001, 1002)]  # seeds the calibration never used
    error = curve_error(calibration.curve, runs)
    print(f"shipped calibration on unseen real runs: {error}")
    assert error["accuracy_mae"] < HELD_OUT_ACCURACY_MAE_BOUND


def test_calibrate_cli_writes_a_usable_file_and_reports_held_out_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.json"
    assert main(["calibrate", "tiny", "--runs", "2", "--rounds", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out (1 runs, 3 rounds): accuracy MAE" in printed
    data = json.loads(out.read_text())
    assert data["error"]["held_out"]["rounds"] == 3 and data["error"]["runs_fitted"] == 1
    env = WirelessFLEnv(
        "tiny", trainer="surrogate", overrides={"learning.surrogate.calibration_file": str(out)}
    )
    env.reset(seed=0)
    env.step(np.ones(30, dtype=np.float32))
    assert main(["calibrate", "tiny", "--runs", "2", "--out", str(out)]) == 2  # exists: refused
    assert main(["calibrate", "tiny", "--runs", "1", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_bad_calibration_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_calibration(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CalibrationError, match="field 'format'"):
        load_calibration(bad)
    with pytest.raises(CalibrationError, match="neither a file nor a built-in"):
        load_calibration(tmp_path / "missing.json")
    with pytest.raises(CalibrationError, match=r"learning\.local_epochs is 5 but was 2"):
        WirelessFLEnv("tiny", trainer="surrogate", overrides={"learning.local_epochs": 5})
