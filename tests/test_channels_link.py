"""Link formulas: hand-computed cases, closed forms and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import (
    FADING_MODELS,
    allocate_resource_blocks,
    broadcast_rate_bps,
    noise_power_w,
    ofdma_rate_bps,
    outage_probability,
    packet_error_rate,
    shannon_rate_bps,
    sinr_linear,
)

N0 = 10 ** ((-174 - 30) / 10)  # -174 dBm/Hz in W/Hz

powers = st.floats(1e-4, 10.0)  # W
gains = st.floats(1e-15, 1e-6)  # linear
bandwidths = st.floats(1e3, 1e8)  # Hz


def test_noise_and_sinr_hand_computed() -> None:
    # -174 dBm/Hz over 1 MHz with a 9 dB noise figure: -174 + 60 + 9 = -105 dBm.
    assert float(noise_power_w(1e6, N0, 9.0)) == pytest.approx(10 ** ((-105 - 30) / 10))
    sinr = sinr_linear(0.1, 1e-10, N0, 1e6, noise_figure_db=9.0, interference_w=1e-13)
    assert float(sinr) == pytest.approx(0.1 * 1e-10 / (10 ** (-13.5) + 1e-13))


def test_rate_with_noise_figure_and_interference_hand_computed() -> None:
    rate = shannon_rate_bps(2e6, 0.2, 3e-11, N0, noise_figure_db=5.0, interference_w=2e-14)
    noise = N0 * 2e6 * 10**0.5
    assert float(rate) == pytest.approx(2e6 * math.log2(1 + 0.2 * 3e-11 / (noise + 2e-14)))


@settings(max_examples=60, deadline=None)
@given(p=powers, g=gains, b=bandwidths, factor=st.floats(1.01, 100.0))
def test_rate_increases_with_power_and_bandwidth(p: float, g: float, b: float, factor: float) -> None:
    base = float(shannon_rate_bps(b, p, g, N0))
    assert float(shannon_rate_bps(b, p * factor, g, N0)) > base
    assert float(shannon_rate_bps(b * factor, p, g, N0)) > base


@settings(max_examples=60, deadline=None)
@given(p=powers, g=gains)
def test_rate_tends_to_the_wideband_limit(p: float, g: float) -> None:
    limit = p * g / (N0 * math.log(2))
    # At SNR 1e-6 the gap b log2(1 + x) vs b x / ln 2 is a relative x/2 = 5e-7.
    b = p * g / (N0 * 1e-6)
    rate = float(shannon_rate_bps(b, p, g, N0))
    assert rate < limit
    assert rate == pytest.approx(limit, rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(p=powers, g=gains, b=bandwidths, m=st.floats(1e-3, 1e3), factor=st.floats(1.01, 100.0))
def test_per_is_a_probability_and_decreases_with_power(
    p: float, g: float, b: float, m: float, factor: float
) -> None:
    q = float(packet_error_rate(p, g, b, N0, m))
    q_more = float(packet_error_rate(p * factor, g, b, N0, m))
    assert 0.0 <= q_more <= q <= 1.0
    if 0 < q < 1:
        assert q_more < q


def test_per_hand_computed_and_edge_cases() -> None:
    q = packet_error_rate(0.01, 1e-10, 1e6, N0, 0.023, interference_w=1e-14)
    assert float(q) == pytest.approx(1 - math.exp(-0.023 * (1e-14 + 1e6 * N0) / (0.01 * 1e-10)))
    assert float(packet_error_rate(0.0, 1e-10, 1e6, N0, 0.023)) == 1.0
    assert float(packet_error_rate(0.01, 1e-10, 1e6, N0, 0.0)) == 0.0


def test_ofdma_rate_hand_computed() -> None:
    w = 180e3
    rate = ofdma_rate_bps(np.array([0, 1, 4]), w, 0.1, 1e-12, N0, interference_w_per_rb=1e-16)
    assert rate[0] == 0.0
    assert rate[1] == pytest.approx(w * math.log2(1 + 0.1e-12 / (N0 * w + 1e-16)))
    assert rate[2] == pytest.approx(4 * w * math.log2(1 + 0.1e-12 / (4 * (N0 * w + 1e-16))))
    # With no interference, n blocks of width W are the FDMA rate of bandwidth n W.
    np.testing.assert_allclose(
        ofdma_rate_bps(np.array([3]), w, 0.1, 1e-12, N0), shannon_rate_bps(3 * w, 0.1, 1e-12, N0)
    )
    with pytest.raises(ValueError, match="num_resource_blocks must be integers"):
        ofdma_rate_bps(np.array([1.5]), w, 0.1, 1e-12, N0)


def test_resource_block_allocation_largest_remainder() -> None:
    blocks = allocate_resource_blocks(np.array([0.5, 0.3, 0.2]), 10)
    np.testing.assert_array_equal(blocks, [5, 3, 2])
    # 0.45 * 7 = 3.15, 0.35 * 7 = 2.45, 0.2 * 7 = 1.4: floors 3, 2, 1; the spare block -> device 1.
    np.testing.assert_array_equal(allocate_resource_blocks(np.array([0.45, 0.35, 0.2]), 7), [3, 3, 1])
    with pytest.raises(ValueError, match="sum to <= 1"):
        allocate_resource_blocks(np.array([0.7, 0.7]), 10)


def test_broadcast_rate_is_set_by_the_weakest_receiver() -> None:
    g = np.array([1e-9, 3e-12, 5e-11])
    expected = 20e6 * math.log2(1 + 2.0 * 3e-12 / (N0 * 20e6))
    assert broadcast_rate_bps(20e6, 2.0, g, N0) == pytest.approx(expected)


@pytest.mark.parametrize("target_rate_bps", [1e5, 1e6, 5e6])
def test_rayleigh_outage_closed_form(target_rate_bps: float) -> None:
    b, p, g = 1e6, 0.01, 1e-12
    rayleigh = FADING_MODELS.get("rayleigh")(FADING_MODELS.get("rayleigh").Params())
    got = float(outage_probability(target_rate_bps, b, p, g, N0, rayleigh, noise_figure_db=3.0))
    snr_mean = p * g / (N0 * b * 10**0.3)
    assert got == pytest.approx(1 - math.exp(-(2 ** (target_rate_bps / b) - 1) / snr_mean))


@pytest.mark.parametrize(("name", "params"), [("nakagami", {"m": 2.0}), ("rician", {"k_factor": 5.0})])
def test_outage_matches_monte_carlo(name: str, params: dict[str, float]) -> None:
    b, p, g, target = 1e6, 0.01, 1e-12, 2e6
    cls = FADING_MODELS.get(name)
    model = cls(cls.Params.model_validate(params))
    rng = np.random.default_rng(9)
    # Draw |h|^2 in the test, from numpy directly, not through the model.
    if name == "nakagami":
        h2 = rng.gamma(2.0, 0.5, 200_000)
    else:
        k = params["k_factor"]
        h = math.sqrt(k / (k + 1)) + math.sqrt(1 / (k + 1)) * (
            rng.standard_normal(200_000) + 1j * rng.standard_normal(200_000)
        ) / math.sqrt(2)
        h2 = np.abs(h) ** 2
    empirical = np.mean(b * np.log2(1 + p * g * h2 / (N0 * b)) < target)
    assert float(outage_probability(target, b, p, g, N0, model)) == pytest.approx(empirical, abs=0.005)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"bandwidth_hz": -1.0}, "bandwidth_hz must be >= 0"),
        ({"tx_power_w": -0.1}, "tx_power_w must be >= 0"),
        ({"gain_linear": np.array([1e-9, -1e-9])}, "gain_linear must be >= 0"),
        ({"interference_w": -1e-12}, "interference_w must be >= 0"),
    ],
)
def test_bad_link_input_names_the_argument(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {"bandwidth_hz": 1e6, "tx_power_w": 0.1, "gain_linear": 1e-9}
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        shannon_rate_bps(noise_psd_w_per_hz=N0, **args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="waterfall_threshold"):
        packet_error_rate(0.1, 1e-9, 1e6, N0, -1.0)
