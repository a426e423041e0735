"""compare, resume after kill -9, sweep (local and Ray), built-in scenarios, experiment CLI errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedsimenv.cli import main
from fedsimenv.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from fedsimenv.experiments.checkpoints import load_checkpoint
from fedsimenv.experiments.compare import PLOTS
from fedsimenv.experiments.session import run_episode
from fedsimenv.experiments.summary import summarise_rows
from fedsimenv.experiments.sweep import grid_cells, parse_grid
from fedsimenv.scenario import builtin_scenarios, load_scenario

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The machinery under test does not depend on the model: a small MLP and one local epoch keep it fast.
FAST = {"learning.model": "mlp", "learning.local_epochs": 1}
FAST_SET = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]


# -- scenarios ------------------------------------------------------------------------------------


def test_every_builtin_scenario_validates() -> None:
    names = builtin_scenarios()
    assert {"tiny", "default", "urban-macro-50", "iot-heterogeneous", "vehicular"} <= set(names)
    for name in names:
        assert load_scenario(name).name == name


def test_urban_macro_50_matches_the_reference_cell() -> None:
    config = load_scenario("urban-macro-50")
    assert config.cell.num_devices == 50 and config.cell.radius_m == 500.0
    assert config.network.bandwidth_hz == 20e6 and config.network.tx_power_dbm == 10.0
    assert config.channel.path_loss.model == "macro-cell" and config.channel.shadowing_std_db == 8.0
    assert config.channel.fading.model == "rayleigh"


# -- compare --------------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk (an independent check that the file is a real PNG)."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_compare_tiny_two_agents_two_seeds(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["tiny", "--agents", "equal,optimal", "--seeds", "2", "--rounds", "3", "--workers", "1", *FAST_SET]
    code = main(["compare", *args, "--out", str(out), "--quiet"])
    assert code == EXIT_OK
    with (out / "summary.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["agent"] for row in table] == ["equal", "optimal"]
    for row in table:
        assert row["seeds_ok"] == "2"
        assert 0.0 <= float(row["final_accuracy_mean"]) <= 1.0
        assert float(row["mean_round_latency_s_mean"]) > 0
    equal = table[0]
    assert float(equal["mean_rho_mean"]) == 0.0  # the equal agent never prunes
    assert float(equal["mean_selected_mean"]) == 10.0
    markdown = (out / "summary.md").read_text()
    assert "| equal | 2/2 |" in markdown and "| optimal | 2/2 |" in markdown
    assert "±" in markdown
    for name in PLOTS:
        width, height = _png_size(out / name)
        assert width > 100 and height > 100
        with Image.open(out / name) as image:  # decodes, not only a header
            image.load()
            assert np.asarray(image).std() > 0  # not a blank canvas

    # Same seed, same world for every agent: round 1's channel gains and data split coincide.
    rows = {
        a: (out / "runs" / a / "seed-0" / "timeline.jsonl").read_text().splitlines()
        for a in ("equal", "optimal")
    }
    assert rows["equal"] and rows["optimal"]
    runs = list(csv.DictReader((out / "runs.csv").open()))
    assert [(r["agent"], r["seed"]) for r in runs] == [
        ("equal", "0"),
        ("equal", "1"),
        ("optimal", "0"),
        ("optimal", "1"),
    ]


def test_compare_agents_share_the_channel_realisation(tmp_path: Path) -> None:
    from fedsimenv.env import WirelessFLEnv

    config = load_scenario("tiny", {"episode.max_rounds": 2, **FAST})
    gains = []
    for agent in ("equal", "greedy-channel"):
        env = WirelessFLEnv(config)
        env.reset(seed=5)
        gains.append(env.simulator.channel_gain_linear.copy())
        rows = run_episode(config, agent, 5)
        assert len(rows) == 2
    np.testing.assert_array_equal(gains[0], gains[1])


def test_compare_bad_agent_is_bad_input_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    code = main(["compare", "tiny", "--agents", "equal,nope", "--out", str(out), "--quiet"])
    assert code == EXIT_BAD_INPUT
    assert "nope" in capsys.readouterr().err
    assert not out.exists()


# -- resume ---------------------------------------------------------------------------------------


def test_kill_9_then_resume_gives_the_uninterrupted_metrics(tmp_path: Path) -> None:
    rounds = 14
    args = ["tiny", "--agent", "random", "--seed", "3", "--checkpoint-every", "3", "--timeline", *FAST_SET]
    reference = tmp_path / "reference"
    assert main(["run", *args, "--rounds", str(rounds), "--out", str(reference), "--quiet"]) == EXIT_OK

    victim = tmp_path / "victim"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedsimenv",
            "run",
            *args,
            "--rounds",
            str(rounds),
            "--out",
            str(victim),
            "--quiet",
        ],
        cwd=ROOT,
    )
    metrics = victim / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    done_before = len(metrics.read_text().splitlines())
    assert 5 <= done_before < rounds, "the run must be killed mid-way"

    assert main(["run", "--resume", str(victim), "--quiet"]) == EXIT_OK
    assert metrics.read_bytes() == (reference / "metrics.jsonl").read_bytes()
    assert (victim / "timeline.jsonl").read_bytes() == (reference / "timeline.jsonl").read_bytes()
    assert (victim / "config.yaml").read_bytes() == (reference / "config.yaml").read_bytes()
    # Resuming a finished run changes nothing.
    assert main(["run", "--resume", str(victim), "--quiet"]) == EXIT_OK
    assert metrics.read_bytes() == (reference / "metrics.jsonl").read_bytes()


def test_checkpoint_holds_only_safe_types_and_the_model(tmp_path: Path) -> None:
    config = load_scenario("tiny", {"episode.max_rounds": 4, **FAST})
    run_episode(config, "uniform-pruning", 1, tmp_path, checkpoint_every=2)
    checkpoints = sorted((tmp_path / "checkpoints").glob("round-*.pt"))
    assert [p.name for p in checkpoints] == ["round-000002.pt", "round-000004.pt"]
    payload = load_checkpoint(checkpoints[-1])  # weights_only=True inside
    assert payload["round"] == 4 and payload["done"] is True and len(payload["records"]) == 4
    assert all(isinstance(v, torch.Tensor) for v in payload["trainer"]["model"].values())
    torch.load(checkpoints[-1], weights_only=True)


@pytest.mark.parametrize("agent", ["optimal", "round-robin", "random"])
def test_resume_from_every_checkpoint_matches(tmp_path: Path, agent: str) -> None:
    """Stop after round 5 (checkpoints at 2 and 4), resume: identical rows for stateful agents too."""
    from fedsimenv.experiments.session import resume_run

    config = load_scenario("tiny", {"episode.max_rounds": 6, **FAST})
    reference = run_episode(config, agent, 2)

    class Stop(Exception):
        pass

    def stop_after_5(row: object) -> None:
        if isinstance(row, dict) and row["round"] == 5:
            raise Stop

    with pytest.raises(Stop):
        run_episode(config, agent, 2, tmp_path, checkpoint_every=2, on_round=stop_after_5)
    session, rows = resume_run(tmp_path)
    assert session.replayed_rounds == 4
    assert rows == json.loads(json.dumps(reference))


def test_resume_of_a_non_run_directory_is_bad_input(tmp_path: Path) -> None:
    assert main(["run", "--resume", str(tmp_path), "--quiet"]) == EXIT_BAD_INPUT


# -- sweep ----------------------------------------------------------------------------------------


def test_parse_grid_and_cells() -> None:
    grid = parse_grid(["network.bandwidth_hz=5e6,2.0e+7", "agent=equal,optimal"])
    assert grid == {"network.bandwidth_hz": [5e6, 2e7], "agent": ["equal", "optimal"]}
    assert len(grid_cells(grid)) == 4
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        parse_grid(["nonsense"])


def test_summarise_rows_cost_to_target() -> None:
    rows = [
        {
            "round": 1,
            "accuracy": 0.5,
            "sim_time_s": 1.0,
            "energy_j": 2.0,
            "round_latency_s": 1.0,
            "num_selected": 4,
            "num_arrived": 4,
            "mean_rho": 0.2,
        },
        {
            "round": 2,
            "accuracy": 0.9,
            "sim_time_s": 3.0,
            "energy_j": 5.0,
            "round_latency_s": 2.0,
            "num_selected": 2,
            "num_arrived": 1,
            "mean_rho": 0.4,
        },
    ]
    summary = summarise_rows(rows, 0.8)
    assert summary["time_to_target_s"] == 3.0 and summary["energy_to_target_j"] == 5.0
    assert summary["mean_round_latency_s"] == 1.5 and summary["mean_selected"] == 3.0
    assert summarise_rows(rows, 0.95)["time_to_target_s"] is None


def _sweep(tmp_path: Path, engine: str, name: str) -> tuple[int, str]:
    out = tmp_path / name
    grid = ["--grid", "learning.local_epochs=1,2", "--grid", "devices.trace_csv=null,missing.csv"]
    grid += ["--set", "learning.model=mlp"]
    options = ["--seeds", "2", "--rounds", "2", "--engine", engine, "--workers", "2", "--quiet"]
    code = main(["sweep", "tiny", *grid, *options, "--out", str(out)])
    return code, (out / "results.csv").read_text()


def _strip_paths(table: str) -> str:
    return table.replace("\\", "/")


def test_sweep_local_merged_table_reports_failed_cells(tmp_path: Path) -> None:
    code, table = _sweep(tmp_path, "local", "local")
    assert code == EXIT_FAILURE  # some cells failed; the others completed
    rows = list(csv.DictReader(table.splitlines()))
    assert len(rows) == 8
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(ok) == 4 and len(failed) == 4
    assert all(r["devices.trace_csv"] == "missing.csv" for r in failed)
    assert all("missing.csv" in r["error"] for r in failed)
    assert all(0 <= float(r["final_accuracy"]) <= 1 for r in ok)
    # The pool's result equals a serial in-process run of the same cell.
    config = load_scenario(
        "tiny", {"learning.local_epochs": 1, "episode.max_rounds": 2, "learning.model": "mlp"}
    )
    serial = summarise_rows(run_episode(config, "equal", 0), None)
    first = next(r for r in ok if r["learning.local_epochs"] == "1" and r["seed"] == "0")
    assert float(first["final_accuracy"]) == serial["final_accuracy"]
    assert float(first["sim_time_s"]) == serial["sim_time_s"]
    assert "Failed runs" in (tmp_path / "local" / "results.md").read_text()


def test_sweep_bad_grid_value_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bad"
    code = main(["sweep", "tiny", "--grid", "cell.num_devices=5,-1", "--out", str(out), "--quiet"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "cell.num_devices=-1" in err and "cell.num_devices" in err
    assert not (out / "results.csv").exists()


@pytest.mark.slow
def test_sweep_ray_gives_the_local_table(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    local_code, local = _sweep(tmp_path, "local", "local")
    ray_code, ray_table = _sweep(tmp_path, "ray", "ray")
    assert local_code == ray_code == EXIT_FAILURE
    assert _strip_paths(local).replace("/local/", "/X/") == _strip_paths(ray_table).replace("/ray/", "/X/")


def test_device_cuda_is_refused_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["run", "tiny", "--rounds", "1", "--device", "cuda", "--quiet"]) == EXIT_BAD_INPUT
