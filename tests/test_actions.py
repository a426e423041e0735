"""The canonical Box action decoder, against hand-computed decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsimenv.actions import decode_action, encode_decision
from fedsimenv.config import ActionConfig

CFG = ActionConfig(rho_max=0.8, selection_threshold=0.0, bandwidth_logit_scale=2.0)
B = 10e6


def test_hand_computed_decode() -> None:
    action = np.array([0.5, -0.2, 0.1, -1.0, 0.0, 1.0, 0.3, 0.9, -0.3])
    d = decode_action(action, 3, CFG, B)
    np.testing.assert_array_equal(d.selected, [True, False, True])
    np.testing.assert_allclose(d.pruning_rate, [0.0, 0.4, 0.8])
    # softmax of 2 * [0.3, -0.3] over devices 0 and 2 only
    w0, w2 = math.exp(0.6), math.exp(-0.6)
    np.testing.assert_allclose(d.bandwidth_hz, [B * w0 / (w0 + w2), 0.0, B * w2 / (w0 + w2)])


def test_at_least_one_device_is_selected() -> None:
    d = decode_action(np.array([-0.5, -0.1, -0.9, 0, 0, 0, 0, 0, 0]), 3, CFG, B)
    np.testing.assert_array_equal(d.selected, [False, True, False])
    assert d.bandwidth_hz[1] == pytest.approx(B)


def test_non_finite_and_out_of_range_entries_are_clipped_as_documented() -> None:
    action = np.array([np.nan, np.inf, -np.inf, 5.0, -7.0, np.nan, np.nan, 3.0, 0.0])
    d = decode_action(action, 3, CFG, B)
    # select: nan -> 0 (not > 0), inf -> 1, -inf -> -1
    np.testing.assert_array_equal(d.selected, [False, True, False])
    np.testing.assert_allclose(d.pruning_rate, [0.8, 0.0, 0.4])
    assert d.bandwidth_hz.sum() == pytest.approx(B)
    assert np.all(np.isfinite(d.bandwidth_hz))


def test_random_actions_always_decode_to_feasible_decisions() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        raw = rng.normal(0, 3, 30)
        raw[rng.random(30) < 0.1] = np.nan
        d = decode_action(raw, 10, CFG, B)
        d.validate(10, B)
        assert d.bandwidth_hz.sum() == pytest.approx(B)


def test_wrong_length_is_an_error_naming_the_expected_size() -> None:
    with pytest.raises(ValueError, match="3 \\* num_devices = 9"):
        decode_action(np.zeros(8), 3, CFG, B)


def test_encode_then_decode_recovers_the_decision() -> None:
    selected = np.array([True, True, False, True])
    rho = np.array([0.1, 0.0, 0.5, 0.8])
    share = np.array([1.0, 2.0, 1.0, 0.5])
    d = decode_action(encode_decision(selected, rho, share, CFG), 4, CFG, B)
    np.testing.assert_array_equal(d.selected, selected)
    np.testing.assert_allclose(d.pruning_rate[selected], rho[selected], atol=1e-6)
    np.testing.assert_allclose(d.bandwidth_hz, B * np.array([1, 2, 0, 0.5]) / 3.5, rtol=1e-5)
