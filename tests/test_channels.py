"""Channel basics against the published formulas and scipy's distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from channels import (
    FADING_MODELS,
    PATH_LOSS_MODELS,
    db_to_linear,
    dbm_to_watt,
    linear_to_db,
    shannon_rate_bps,
)
from channels.pathloss import MacroCellParams, MacroCellPathLoss


def test_macro_cell_path_loss_at_reference_distances() -> None:
    model = MacroCellPathLoss(MacroCellParams(min_distance_m=1.0))
    np.testing.assert_allclose(
        model.path_loss_db(np.array([1000.0, 100.0, 500.0])),
        [128.1, 128.1 - 37.6, 128.1 + 37.6 * math.log10(0.5)],
    )
    # Below the minimum distance the loss is clamped.
    assert model.path_loss_db(np.array([0.1]))[0] == pytest.approx(128.1 + 37.6 * math.log10(1e-3))


def test_unit_conversions() -> None:
    assert float(dbm_to_watt(30.0)) == pytest.approx(1.0)
    assert float(dbm_to_watt(10.0)) == pytest.approx(0.01)
    assert float(db_to_linear(3.0)) == pytest.approx(1.9952623)
    assert float(linear_to_db(100.0)) == pytest.approx(20.0)


def test_shannon_rate_hand_computed_and_zero_bandwidth() -> None:
    n0 = 10 ** ((-174 - 30) / 10)
    rate = shannon_rate_bps(np.array([1e6, 0.0]), 0.01, 1e-11, n0)
    assert rate[0] == pytest.approx(1e6 * math.log2(1 + 0.01 * 1e-11 / (n0 * 1e6)))
    assert rate[1] == 0.0


def test_rayleigh_power_is_exponential_by_kolmogorov_smirnov() -> None:
    fading = FADING_MODELS.get("rayleigh")(FADING_MODELS.get("rayleigh").Params())
    samples = fading.sample_power_gain(20_000, np.random.default_rng(1))
    assert stats.kstest(samples, stats.expon.cdf).pvalue > 0.01
    envelope = np.sqrt(samples)
    assert stats.kstest(envelope, stats.rayleigh(scale=math.sqrt(0.5)).cdf).pvalue > 0.01


def test_unknown_model_names_list_the_allowed_ones() -> None:
    allowed = r"allowed values: .*free-space.*macro-cell"
    with pytest.raises(ValueError, match=r"unknown path-loss model 'friis'; " + allowed):
        PATH_LOSS_MODELS.get("friis")
