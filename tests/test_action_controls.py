"""Optional action controls (power, CPU frequency, first resource block) in the canonical action and
its wrappers, against hand-computed decisions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from fedsimenv.actions import decode_action, encode_decision, place_resource_blocks
from fedsimenv.config import ActionConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.wrappers import DictActionWrapper, MultiDiscreteActionWrapper

ALL = ("select", "rho", "bandwidth", "power", "cpu_freq")
CFG = ActionConfig(controls=ALL, rho_max=0.8, power_range_db=20.0, cpu_freq_min_fraction=0.2)
P_MAX = np.array([0.1, 0.2])
F_MAX = np.array([1e9, 2e9])


def test_power_and_frequency_decode_by_hand() -> None:
    # [select | rho | bandwidth | power | cpu_freq] for two devices
    action = np.array([1, 1, -1, 1, 0, 0, 1.0, 0.0, -1.0, 0.5])
    d = decode_action(action, 2, CFG, 1e6, tx_power_max_w=P_MAX, cpu_freq_max_hz=F_MAX)
    assert d.tx_power_w is not None and d.cpu_freq_hz is not None
    # power: p_max 10^(-20 (1 - a) / 20): a = 1 -> p_max, a = 0 -> 10 dB below
    np.testing.assert_allclose(d.tx_power_w, [0.1, 0.02])
    # cpu: f_max (0.2 + 0.8 (a + 1) / 2): a = -1 -> 0.2 f_max, a = 0.5 -> 0.8 f_max
    np.testing.assert_allclose(d.cpu_freq_hz, [0.2e9, 1.6e9])


def test_encode_then_decode_recovers_the_settings() -> None:
    power, freq = np.array([0.05, 0.2]), np.array([0.5e9, 2e9])
    action = encode_decision(
        [True, True],
        [0.1, 0.4],
        [1.0, 3.0],
        CFG,
        tx_power_fraction=power / P_MAX,
        cpu_freq_fraction=freq / F_MAX,
    )
    assert action.shape == (10,)
    d = decode_action(action, 2, CFG, 1e6, tx_power_max_w=P_MAX, cpu_freq_max_hz=F_MAX)
    assert d.tx_power_w is not None and d.cpu_freq_hz is not None
    np.testing.assert_allclose(d.tx_power_w, power, rtol=1e-6)
    np.testing.assert_allclose(d.cpu_freq_hz, freq, rtol=1e-6)
    np.testing.assert_allclose(d.bandwidth_hz, [0.25e6, 0.75e6], rtol=1e-5)


def test_default_controls_keep_the_three_part_layout() -> None:
    assert ActionConfig().controls == ("select", "rho", "bandwidth")
    assert encode_decision([True], [0.0], [1.0], ActionConfig()).shape == (3,)
    with pytest.raises(ValueError, match="must include select, rho, bandwidth"):
        ActionConfig(controls=("select", "power"))
    with pytest.raises(ValueError, match="unknown control"):
        ActionConfig(controls=("select", "rho", "bandwidth", "phase"))


def test_resource_blocks_are_claimed_from_each_first_block() -> None:
    # counts 2, 1, 1 of 5 blocks; device 0 (largest count) from block 3 takes 3, 4; device 1 wants 4
    # (taken) and moves on to 0; device 2 wants 3 -> taken, 4 taken, 0 taken, gets 1.
    owner = place_resource_blocks(np.array([2, 1, 1]), np.array([3, 4, 3]), 5)
    np.testing.assert_array_equal(owner, [1, 2, -1, 0, 0])


def _env(**overrides: Any) -> WirelessFLEnv:
    base = {"trainer": "surrogate", "episode.max_rounds": 2}
    return WirelessFLEnv("tiny", overrides={**base, **overrides})


def test_env_applies_decided_power_and_frequency() -> None:
    env = _env(**{"action.controls": list(ALL)})
    assert env.action_space.shape == (50,)
    env.reset(seed=0)
    fleet = env.simulator.fleet
    action = encode_decision(
        np.ones(10, bool), np.zeros(10), np.ones(10), env.config.action,
        tx_power_fraction=np.full(10, 0.5), cpu_freq_fraction=np.full(10, 0.5),
    )  # fmt: skip
    env.step(action)
    report = env.last_report
    assert report is not None
    np.testing.assert_allclose(report.tx_power_w, 0.5 * fleet.tx_power_w, rtol=1e-5)
    np.testing.assert_allclose(report.cpu_freq_hz, 0.5 * fleet.cpu_freq_hz, rtol=1e-5)


def test_dict_and_multidiscrete_wrappers_carry_the_controls() -> None:
    env = DictActionWrapper(_env(**{"action.controls": list(ALL)}))
    assert isinstance(env.action_space, spaces.Dict)
    assert set(env.action_space.spaces) >= {"tx_power_fraction", "cpu_freq_fraction"}
    env.reset(seed=0)
    action = {
        "selected": np.ones(10),
        "pruning_rate": np.zeros(10),
        "bandwidth_share": np.ones(10),
        "tx_power_fraction": np.full(10, 0.1),
        "cpu_freq_fraction": np.full(10, 0.5),
    }
    env.step(action)
    base = env.unwrapped
    assert isinstance(base, WirelessFLEnv) and base.last_report is not None
    np.testing.assert_allclose(base.last_report.tx_power_w, 0.1 * base.simulator.fleet.tx_power_w, rtol=1e-5)

    md = MultiDiscreteActionWrapper(_env(**{"action.controls": list(ALL)}), levels=2)
    assert isinstance(md.action_space, spaces.MultiDiscrete)
    np.testing.assert_array_equal(md.action_space.nvec, [3] * 10 + [4] * 20)
    md.reset(seed=0)
    md.step(np.array([1] * 10 + [0] * 10 + [3] * 10))
    inner = md.unwrapped
    assert isinstance(inner, WirelessFLEnv) and inner.last_report is not None
    # power level 0 = power_range_db (30 dB) below the maximum
    np.testing.assert_allclose(
        inner.last_report.tx_power_w, inner.simulator.fleet.tx_power_w * 10 ** (-30 / 10), rtol=1e-5
    )
    assert math.isfinite(inner.last_report.energy_j)
