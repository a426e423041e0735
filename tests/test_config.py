"""Bad scenario files give an error naming the field path and the allowed values; the CLI exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedsimenv.cli import main
from fedsimenv.scenario import ScenarioError, builtin_scenarios, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"network": {"bandwith_hz": 1e6}}, ["network.bandwith_hz", "unknown key", "bandwidth_hz"]),
        ({"network": {"bandwidth_hz": -5.0}}, ["network.bandwidth_hz", "greater than 0", "-5.0"]),
        ({"cell": {"num_devices": "ten"}}, ["cell.num_devices", "valid integer", "'ten'"]),
        (
            {"learning": {"partition": {"method": "spectral"}}},
            ["learning.partition.method", "allowed values: dirichlet, iid, natural, shards"],
        ),
        (
            {"learning": {"dataset": "mnist"}},
            ["learning.dataset", "unknown dataset 'mnist'", "allowed values: cifar10", "digits"],
        ),
        (
            {"protocol": {"name": "gossip"}},
            ["protocol.name", "unknown protocol 'gossip'", "allowed values: async, deadline"],
        ),
        (
            {"channel": {"fading": {"model": "rice"}}},
            ["channel.fading", "unknown fading model 'rice'", "rayleigh"],
        ),
        (
            {"channel": {"path_loss": {"model": "macro-cell", "params": {"min_distance_m": 0}}}},
            ["channel.path_loss", "min_distance_m", "greater than 0"],
        ),
        ({"learning": {"model": "resnet-1000"}}, ["learning.model", "unknown model", "small-cnn"]),
        ({"reward": {"name": "accuracy-latency-energy", "params": {"speed": 1.0}}}, ["reward", "speed"]),
        ({"devices": {"cpu_freq_hz": {"low": 2e9, "high": 1e9}}}, ["devices.cpu_freq_hz", "low"]),
        ({"unknown_section": {}}, ["unknown_section", "unknown key", "network"]),
    ],
)
def test_invalid_field_is_named_with_allowed_values(
    tmp_path: Path, data: dict[str, object], expected: list[str]
) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    for fragment in expected:
        assert fragment in str(info.value)


def test_not_yaml_and_not_a_mapping_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cell: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="top level must be a mapping"):
        load_scenario(bad)


def test_unknown_scenario_name_lists_builtins() -> None:
    with pytest.raises(ScenarioError, match=r"built-in scenarios: .*tiny"):
        load_scenario("no-such-scenario")


def test_every_builtin_scenario_validates() -> None:
    names = builtin_scenarios()
    assert "tiny" in names
    for name in names:
        assert load_scenario(name).name == name


def test_overrides_are_validated_too() -> None:
    assert load_scenario("tiny", {"episode.max_rounds": 3}).episode.max_rounds == 3
    with pytest.raises(ScenarioError, match=r"episode\.max_rounds"):
        load_scenario("tiny", {"episode.max_rounds": 0})


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = ROOT / "scenarios" / "tiny.yaml"
    assert main(["validate", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = _write(tmp_path, {"network": {"bandwidth_hz": -1}})
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "network.bandwidth_hz" in err and "Traceback" not in err


def test_cli_run_with_bad_input_exits_2_without_traceback_or_output(tmp_path: Path) -> None:
    bad = _write(tmp_path, {"cell": {"num_devices": -3}})
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "fedsimenv", "run", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "cell.num_devices" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    unknown_agent = subprocess.run(
        [sys.executable, "-m", "fedsimenv", "run", "tiny", "--agent", "oracle", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown_agent.returncode == 2 and "allowed values: " in unknown_agent.stderr
    assert "equal" in unknown_agent.stderr and "random" in unknown_agent.stderr
    assert not out.exists()


def test_cli_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "tiny", "--rounds", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    before = (out / "metrics.jsonl").read_bytes()
    assert main(args) == 2
    assert (out / "metrics.jsonl").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_written_config_reloads_to_the_same_scenario(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "tiny", "--rounds", "1", "--seed", "4", "--out", str(out), "--quiet"]) == 0
    reloaded = load_scenario(out / "config.yaml")
    assert reloaded == load_scenario("tiny", {"episode.max_rounds": 1, "seed": 4})


def test_missing_dataset_files_exit_2_naming_what_to_put_where(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsimenv",
            "run",
            "cifar10-resnet20",
            "--rounds",
            "1",
            "--quiet",
            "--set",
            f"learning.data_dir={tmp_path}",
            "--set",
            "learning.device=cpu",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "data_batch_1" in result.stderr and str(tmp_path) in result.stderr
    assert "Traceback" not in result.stderr
