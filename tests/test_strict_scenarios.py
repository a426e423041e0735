"""Strict scenarios: finite bounded numbers, no duplicate keys, no YAML 1.1 coercions, no bool-as-int;
and a seeded mutation fuzz over every built-in scenario that only ever yields a config or a ScenarioError."""

from __future__ import annotations

import collections
import random
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzz import duplicate_key_line

from fedsimenv.config import ScenarioConfig
from fedsimenv.scenario import ScenarioError, load_scenario, strict_yaml_load


def _load_text(tmp_path: Path, text: str) -> ScenarioConfig:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("cell:\n  radius_m: .inf\n", "cell.radius_m"),
        ("network:\n  bandwidth_hz: .nan\n", "network.bandwidth_hz"),
        ("learning:\n  learning_rate: .inf\n", "learning.learning_rate"),
        ("devices:\n  kappa: .inf\n", "devices.kappa"),
        ("devices:\n  cpu_freq_hz: {distribution: uniform, low: 1.0e9, high: .inf}\n", "devices.cpu_freq_hz"),
        ("devices:\n  tx_power_dbm: {distribution: list, values: [.nan]}\n", "devices.tx_power_dbm"),
        ("reward:\n  params: {time_weight: .inf}\n", "reward.params"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.")) as info:
        _load_text(tmp_path, text)
    assert "finite" in str(info.value) or "valid number" in str(info.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("cell:\n  radius_m: 1e300\n", "cell.radius_m"),
        ("devices:\n  cpu_freq_hz: 1e30\n", "devices.cpu_freq_hz"),
        ("devices:\n  kappa: 1.0\n", "devices.kappa"),
        ("learning:\n  learning_rate: 1e30\n", "learning.learning_rate"),
        ("devices:\n  tx_power_dbm: 18446744073709551616\n", "devices.tx_power_dbm"),
        ("seed: 18446744073709551616\n", "seed"),
    ],
)
def test_huge_numbers_are_refused(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ScenarioError, match="\n  " + re.escape(field) + ":"):
        _load_text(tmp_path, text)


def test_yaml_1_2_floats_are_numbers(tmp_path: Path) -> None:
    config = _load_text(tmp_path, "network:\n  bandwidth_hz: 5e6\ncell:\n  radius_m: 300\n")
    assert config.network.bandwidth_hz == 5e6
    assert config.cell.radius_m == 300.0


def test_duplicate_key_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"duplicate key 'radius_m' \(line 3\)"):
        _load_text(tmp_path, "cell:\n  radius_m: 300\n  radius_m: 400\n")
    with pytest.raises(ScenarioError, match="duplicate key 'cell'"):
        _load_text(tmp_path, "cell: {}\nseed: 1\ncell: {}\n")


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "On", "NO"])
def test_yaml_1_1_booleans_are_not_booleans(tmp_path: Path, word: str) -> None:
    assert strict_yaml_load(f"a: {word}") == {"a": word}
    with pytest.raises(ScenarioError, match=r"learning\.partition\.per_device_test"):
        _load_text(tmp_path, f"learning:\n  partition:\n    per_device_test: {word}\n")
    config = _load_text(tmp_path, "learning:\n  partition:\n    per_device_test: True\n")
    assert config.learning.partition.per_device_test


def test_sexagesimal_is_not_a_number(tmp_path: Path) -> None:
    assert strict_yaml_load("a: 12:30:00") == {"a": "12:30:00"}
    with pytest.raises(ScenarioError, match=r"episode\.max_rounds.*'12:30:00'"):
        _load_text(tmp_path, "episode:\n  max_rounds: 12:30:00\n")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("episode:\n  max_rounds: true\n", "episode.max_rounds"),
        ("cell:\n  radius_m: false\n", "cell.radius_m"),
        ("cell:\n  num_devices: '5'\n", "cell.num_devices"),
        ("seed: 010\n", "seed"),
    ],
)
def test_booleans_and_strings_are_not_numbers(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ScenarioError, match="\n  " + re.escape(field) + ":"):
        _load_text(tmp_path, text)


# --- seeded mutation fuzz -----------------------------------------------------------------------------

_REPLACEMENTS: list[Any] = [
    float("inf"),
    float("-inf"),
    float("nan"),
    0,
    -1,
    1e300,
    2**70,
    True,
    False,
    "abc",
    "on",
    "12:30:00",
]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [leaf for key, child in node.items() for leaf in _leaves(child, (*path, key))] or [path]
    if isinstance(node, list):
        return [leaf for i, child in enumerate(node) for leaf in _leaves(child, (*path, i))] or [path]
    return [path]


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _delete(data: Any, path: tuple[Any, ...]) -> None:
    for part in path[:-1]:
        data = data[part]
    if isinstance(data, dict):
        del data[path[-1]]


def _mutant(rng: random.Random, text: str) -> str:
    kind = rng.choice(["replace", "replace", "replace", "delete", "duplicate"])
    if kind == "duplicate":
        return duplicate_key_line(rng, text)
    data = strict_yaml_load(text)
    paths = [p for p in _leaves(data) if p]
    path = rng.choice(paths)
    if kind == "delete":
        _delete(data, path)
    else:
        leaf_paths = [p for p in paths if isinstance(_get(data, p), int | float)] or paths
        _set(data, rng.choice(leaf_paths), rng.choice(_REPLACEMENTS))
    return yaml.safe_dump(data, sort_keys=False)


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def test_mutated_builtin_scenarios_load_or_fail_cleanly(tmp_path: Path) -> None:
    root = resources.files("scenarios")
    texts = {p.name: p.read_text(encoding="utf-8") for p in root.iterdir() if p.name.endswith(".yaml")}
    assert texts
    rng = random.Random(17)
    outcomes: collections.Counter[str] = collections.Counter()
    other: list[str] = []
    path = tmp_path / "mutant.yaml"
    started = time.monotonic()
    tries = 360
    for n in range(tries):
        name = sorted(texts)[n % len(texts)]
        path.write_text(_mutant(rng, texts[name]), encoding="utf-8")
        try:
            config = load_scenario(path)
        except ScenarioError:
            outcomes["clear error"] += 1
            continue
        except Exception as err:  # the point of the test
            outcomes["other exception"] += 1
            other.append(f"{name}: {type(err).__name__}: {err}\n{path.read_text()}")
            continue
        outcomes["valid"] += 1
        assert isinstance(config, ScenarioConfig)
    print(f"\nmutation fuzz: tried {tries}, " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    assert not other, other[:3]
    assert outcomes["clear error"] > 0 and outcomes["valid"] > 0
    assert time.monotonic() - started < 20
