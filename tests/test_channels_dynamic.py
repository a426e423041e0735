"""Mobility, correlated shadowing, the time-evolving channel, and selection from scenario YAML."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import yaml

from channels import MOBILITY_MODELS, SHADOWING_MODELS, ChannelModel, DynamicChannel
from channels.base import MobilityModel, ShadowingModel
from channels.mobility import uniform_in_annulus
from fedsimenv.scenario import ScenarioError, load_scenario
from fedsimenv.sim import build_fleet
from fedsimenv.sim.builder import build_channel, build_mobility

RADIUS_M, MIN_M = 500.0, 10.0


def _mobility(name: str, **params: object) -> MobilityModel:
    cls = MOBILITY_MODELS.get(name)
    return cls(cls.Params.model_validate(params))


def _shadowing(name: str, **params: object) -> ShadowingModel:
    cls = SHADOWING_MODELS.get(name)
    return cls(cls.Params.model_validate(params))


def _start(model: MobilityModel, n: int = 300, seed: int = 0) -> MobilityModel:
    rng = np.random.default_rng(seed)
    model.reset(uniform_in_annulus(n, RADIUS_M, MIN_M, rng), RADIUS_M, MIN_M, rng)
    return model


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("static", {}),
        ("random-waypoint", {"min_speed_mps": 5.0, "max_speed_mps": 30.0, "pause_s": 2.0}),
        ("gauss-markov", {"mean_speed_mps": 20.0, "speed_std_mps": 5.0, "memory": 0.9}),
    ],
)
def test_devices_stay_in_the_cell_and_move_no_faster_than_allowed(
    name: str, params: dict[str, float]
) -> None:
    model = _start(_mobility(name, **params))
    for _ in range(200):
        before = model.position_m.copy()
        after = model.advance(1.0)
        r = np.hypot(after[:, 0], after[:, 1])
        assert np.all(r <= RADIUS_M + 1e-9) and np.all(r >= MIN_M - 1e-9)
        if name == "random-waypoint":
            # Displacement <= fastest leg speed x dt, plus the radial projection out of the inner
            # disk (at most min_distance_m at each end) that legs crossing it get.
            assert np.all(np.hypot(*(after - before).T) <= 30.0 * 1.0 + 2 * MIN_M + 1e-9)
    if name == "static":
        assert np.array_equal(model.position_m, before)


def test_gauss_markov_mobility_without_randomness_walks_straight_at_the_mean_speed() -> None:
    model = _mobility("gauss-markov", mean_speed_mps=2.0, speed_std_mps=0.0, heading_std_rad=0.0, memory=1.0)
    rng = np.random.default_rng(0)
    model.reset(np.array([[100.0, 0.0], [0.0, -50.0]]), RADIUS_M, MIN_M, rng)
    start = model.position_m.copy()
    model.advance(10.0)
    np.testing.assert_allclose(np.hypot(*(model.position_m - start).T), [20.0, 20.0])


def test_random_waypoint_walks_at_the_leg_speed() -> None:
    model = _mobility("random-waypoint", min_speed_mps=3.0, max_speed_mps=3.0)
    rng = np.random.default_rng(1)
    model.reset(np.array([[0.0, 200.0]]), RADIUS_M, MIN_M, rng)
    model.waypoint_m = np.array([[0.0, 400.0]])  # type: ignore[attr-defined]
    model.advance(10.0)
    np.testing.assert_allclose(model.position_m, [[0.0, 230.0]])


def test_gudmundson_autocorrelation_is_exponential_in_distance() -> None:
    model = _shadowing("gudmundson", std_db=8.0, decorrelation_distance_m=50.0)
    rng = np.random.default_rng(3)
    x0 = model.sample_db(40_000, rng)
    for moved in (5.0, 20.0, 100.0):
        x1 = model.update_db(x0, np.full(40_000, moved), rng)
        assert np.corrcoef(x0, x1)[0, 1] == pytest.approx(math.exp(-moved / 50.0), abs=0.02)
        assert x1.std() == pytest.approx(8.0, rel=0.03)
    assert np.array_equal(model.update_db(x0, np.zeros(40_000), rng), x0)


def test_log_normal_shadowing_is_n_0_sigma_and_frozen() -> None:
    model = _shadowing("log-normal", std_db=6.0)
    x = model.sample_db(40_000, np.random.default_rng(4))
    assert x.std() == pytest.approx(6.0, rel=0.03)
    assert np.array_equal(model.update_db(x, np.full(40_000, 10.0), np.random.default_rng(5)), x)


def _config(**channel: object) -> dict[str, object]:
    return {"cell": {"num_devices": 200, "radius_m": RADIUS_M, "min_distance_m": MIN_M}, "channel": channel}


FULL_CHANNEL = {
    "path_loss": {"model": "3gpp-uma", "params": {"carrier_freq_hz": 3.5e9, "condition": "probabilistic"}},
    "fading": {"model": "gauss-markov", "params": {"carrier_freq_hz": 3.5e9, "block_duration_s": 0.01}},
    "shadowing": {"model": "gudmundson", "params": {"std_db": 6.0, "decorrelation_distance_m": 50.0}},
    "mobility": {"model": "random-waypoint", "params": {"min_speed_mps": 1.0, "max_speed_mps": 10.0}},
}


def _dynamic(tmp_path: Path, channel: Mapping[str, object], seed: int) -> list[np.ndarray]:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_config(**channel)))
    config = load_scenario(path)
    dynamic = DynamicChannel(build_channel(config), build_mobility(config), RADIUS_M, MIN_M)
    rng = np.random.default_rng(seed)
    trace = [dynamic.reset(uniform_in_annulus(200, RADIUS_M, MIN_M, rng), rng).copy()]
    trace += [dynamic.advance(0.5).copy() for _ in range(5)]
    trace.append(dynamic.position_m.copy())
    return trace


def test_every_model_is_reachable_from_yaml_and_seeded_runs_reproduce(tmp_path: Path) -> None:
    first, again, other = (_dynamic(tmp_path, FULL_CHANNEL, s) for s in (7, 7, 8))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[-1], other[-1])
    assert all(np.all(g > 0) and np.all(np.isfinite(g)) for g in first[:-1])


@pytest.mark.parametrize("mobility", ["static", "random-waypoint", "gauss-markov"])
@pytest.mark.parametrize("shadowing", ["log-normal", "gudmundson"])
@pytest.mark.parametrize("fading", ["none", "rayleigh", "rician", "nakagami", "gauss-markov"])
def test_seeded_reproducibility_of_every_combination(
    tmp_path: Path, mobility: str, shadowing: str, fading: str
) -> None:
    channel = {
        "fading": {"model": fading},
        "shadowing": {"model": shadowing},
        "mobility": {"model": mobility},
    }
    for a, b in zip(_dynamic(tmp_path, channel, 3), _dynamic(tmp_path, channel, 3), strict=True):
        np.testing.assert_array_equal(a, b)


def test_probabilistic_los_fraction_follows_table_7_4_2_1() -> None:
    config = load_scenario("tiny", {"channel.path_loss": {"model": "3gpp-umi", "params": {}}})
    channel = build_channel(config)
    d = np.full(20_000, 100.0)
    channel.sample_gain(d, np.zeros_like(d), np.random.default_rng(0))
    los = channel.los_from_uniform(d, channel._los_uniform)  # type: ignore[arg-type]
    assert los is not None
    expected = 18 / 100 + math.exp(-100 / 36) * (1 - 18 / 100)
    assert los.mean() == pytest.approx(expected, abs=0.01)


def test_tiny_still_builds_the_skeleton_channel(tmp_path: Path) -> None:
    config = load_scenario("tiny")
    channel = build_channel(config)
    assert isinstance(channel, ChannelModel)
    assert config.channel.mobility.model == "static" and config.channel.shadowing is None
    fleet = build_fleet(config, channel, np.random.default_rng(0))
    gain = channel.sample_gain(fleet.distance_m, fleet.shadowing_db, np.random.default_rng(1))
    assert gain.shape == (10,) and np.all(gain > 0)


@pytest.mark.parametrize(
    ("channel", "fragments"),
    [
        ({"fading": {"model": "rician", "params": {"k_factor": -1}}}, ["channel.fading", "k_factor"]),
        ({"fading": {"model": "nakagami", "params": {"m": 0.2}}}, ["channel.fading", "0.5"]),
        ({"mobility": {"model": "teleport"}}, ["unknown mobility model 'teleport'", "random-waypoint"]),
        (
            {"mobility": {"model": "random-waypoint", "params": {"min_speed_mps": 5, "max_speed_mps": 1}}},
            ["channel.mobility", "min_speed_mps"],
        ),
        ({"shadowing": {"model": "gudmundson", "params": {"std_db": -2}}}, ["channel.shadowing", "std_db"]),
        (
            {"shadowing_std_db": 4.0, "shadowing": {"model": "log-normal"}},
            ["either shadowing_std_db or a shadowing model"],
        ),
        (
            {"path_loss": {"model": "3gpp-uma", "params": {"carrier_freq_hz": 1e8}}},
            ["carrier_freq_hz", "500000000"],
        ),
    ],
)
def test_bad_channel_sections_are_named(
    tmp_path: Path, channel: dict[str, object], fragments: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_config(**channel)))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_mobility_rejects_bad_geometry_and_time() -> None:
    model = _mobility("random-waypoint")
    with pytest.raises(ValueError, match="min_distance_m"):
        model.reset(np.zeros((1, 2)), 100.0, 200.0, np.random.default_rng(0))
    model = _start(model)
    with pytest.raises(ValueError, match="dt_s must be >= 0"):
        model.advance(-1.0)
