"""Fading against scipy.stats distributions and Jakes' autocorrelation J0(2 pi f_D T)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from channels import FADING_MODELS, start_fading
from channels.base import FadingModel
from channels.temporal import GaussMarkovFading, GaussMarkovParams, GaussMarkovProcess

N_SAMPLES = 20_000
P_MIN = 1e-3  # KS p-value floor; seeds are fixed, so this is a deterministic check


def _model(name: str, **params: object) -> FadingModel:
    cls = FADING_MODELS.get(name)
    return cls(cls.Params.model_validate(params))


@pytest.mark.parametrize("k_factor", [0.0, 1.0, 5.0, 20.0])
def test_rician_envelope_is_scipy_rice(k_factor: float) -> None:
    power = _model("rician", k_factor=k_factor).sample_power_gain(N_SAMPLES, np.random.default_rng(2))
    # |h| ~ Rice(nu, sigma) with nu^2 = K/(K+1) and 2 sigma^2 = 1/(K+1); scipy: b = nu/sigma.
    sigma = math.sqrt(1 / (2 * (k_factor + 1)))
    nu = math.sqrt(k_factor / (k_factor + 1))
    result = stats.kstest(np.sqrt(power), stats.rice(b=nu / sigma, scale=sigma).cdf)
    assert result.pvalue > P_MIN
    assert power.mean() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("m", [0.5, 1.0, 2.5, 10.0])
def test_nakagami_envelope_is_scipy_nakagami(m: float) -> None:
    power = _model("nakagami", m=m).sample_power_gain(N_SAMPLES, np.random.default_rng(3))
    assert stats.kstest(np.sqrt(power), stats.nakagami(m).cdf).pvalue > P_MIN
    # The power is Gamma(m, 1/m): a second, independent parametrisation.
    assert stats.kstest(power, stats.gamma(m, scale=1 / m).cdf).pvalue > P_MIN


def test_rayleigh_envelope_and_nakagami_one_agree_with_scipy_rayleigh() -> None:
    for name, params in (("rayleigh", {}), ("nakagami", {"m": 1.0}), ("rician", {"k_factor": 0.0})):
        power = _model(name, **params).sample_power_gain(N_SAMPLES, np.random.default_rng(4))
        assert stats.kstest(np.sqrt(power), stats.rayleigh(scale=math.sqrt(0.5)).cdf).pvalue > P_MIN


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("rayleigh", {}),
        ("rician", {"k_factor": 4.0}),
        ("nakagami", {"m": 3.0}),
        ("gauss-markov", {"k_factor": 2.0}),
    ],
)
def test_power_cdf_matches_scipy(name: str, params: dict[str, float]) -> None:
    x = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 5.0])
    model = _model(name, **params)
    if name == "rayleigh":
        expected = stats.expon.cdf(x)
    elif name == "nakagami":
        expected = stats.nakagami(3.0).cdf(np.sqrt(x))
    else:
        k = params["k_factor"]
        sigma = math.sqrt(1 / (2 * (k + 1)))
        expected = stats.rice(b=math.sqrt(k / (k + 1)) / sigma, scale=sigma).cdf(np.sqrt(x))
    np.testing.assert_allclose(model.power_cdf(x), expected, rtol=1e-6, atol=1e-12)


# --- Gauss-Markov (Jakes) -------------------------------------------------------------------


def _gm_trace(
    speed_mps: float, step_s: float, k_factor: float = 0.0, devices: int = 2000, steps: int = 100
) -> np.ndarray:
    model = GaussMarkovFading(GaussMarkovParams(carrier_freq_hz=2e9, speed_mps=speed_mps, k_factor=k_factor))
    process = start_fading(model, devices, np.random.default_rng(5))
    assert isinstance(process, GaussMarkovProcess)
    trace = np.empty((steps, devices), dtype=complex)
    for t in range(steps):
        trace[t] = process.gain_complex
        process.advance(step_s)
    return trace


@pytest.mark.parametrize(
    ("speed_mps", "step_s"), [(3.0, 5e-3), (30.0, 1e-3), (1.0, 0.1), (30.0, 2e-2), (120.0, 1e-3)]
)
def test_gauss_markov_lag_one_autocorrelation_is_j0(speed_mps: float, step_s: float) -> None:
    h = _gm_trace(speed_mps, step_s)
    expected = special.j0(2 * np.pi * speed_mps * 2e9 / 299_792_458.0 * step_s)
    lag1 = np.mean(h[1:] * np.conj(h[:-1])).real / np.mean(np.abs(h) ** 2)
    assert lag1 == pytest.approx(expected, abs=0.02)
    # For a zero-mean complex Gaussian h, corr(|h_t|^2, |h_t+1|^2) = |rho|^2 (Isserlis' theorem).
    p = np.abs(h) ** 2
    power_corr = np.corrcoef(p[1:].ravel(), p[:-1].ravel())[0, 1]
    assert power_corr == pytest.approx(expected**2, abs=0.02)


def test_gauss_markov_marginal_stays_rician() -> None:
    h = _gm_trace(10.0, 1e-2, k_factor=3.0, devices=5000, steps=20)
    sigma = math.sqrt(1 / 8)
    rice = stats.rice(b=math.sqrt(3 / 4) / sigma, scale=sigma)
    assert stats.kstest(np.abs(h[-1]), rice.cdf).pvalue > P_MIN


def test_gauss_markov_uses_per_device_speed() -> None:
    model = GaussMarkovFading(GaussMarkovParams(carrier_freq_hz=2e9, speed_mps=1.0))
    process = start_fading(model, 2, np.random.default_rng(0))
    before = process.power_gain.copy()
    after = process.advance(1e-3, speed_mps=np.array([0.0, 50.0]))
    assert after[0] == before[0]  # J0(0) = 1: a device at rest keeps its channel
    assert after[1] != before[1]


def test_gauss_markov_through_sample_power_gain_steps_one_block() -> None:
    model = _model("gauss-markov", speed_mps=3.0, block_duration_s=5e-3)
    rng = np.random.default_rng(6)
    powers = np.array([model.sample_power_gain(3000, rng) for _ in range(40)])
    expected = special.j0(2 * np.pi * 3.0 * 2e9 / 299_792_458.0 * 5e-3) ** 2
    assert np.corrcoef(powers[1:].ravel(), powers[:-1].ravel())[0, 1] == pytest.approx(expected, abs=0.03)


# --- block fading ---------------------------------------------------------------------------


def test_block_fading_redraws_only_at_coherence_boundaries() -> None:
    process = start_fading(_model("rayleigh", coherence_time_s=0.01), 4, np.random.default_rng(7))
    gains = [process.power_gain.copy()]
    for _ in range(10):
        gains.append(process.advance(0.004).copy())
    # Times 0, 4, 8 | 12, 16 | 20, 24, 28 | 32, 36 | 40 ms: blocks of 10 ms.
    blocks = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4]
    for i in range(1, len(gains)):
        same = np.array_equal(gains[i], gains[i - 1])
        assert same == (blocks[i] == blocks[i - 1]), i


def test_without_coherence_time_every_advance_is_a_new_block() -> None:
    process = start_fading(_model("nakagami", m=2.0), 5, np.random.default_rng(8))
    first = process.power_gain.copy()
    assert not np.array_equal(process.advance(1e-6), first)


# --- reproducibility and bad input ----------------------------------------------------------


@pytest.mark.parametrize("name", FADING_MODELS.names())
def test_seeded_reproducibility(name: str) -> None:
    def run(seed: int) -> np.ndarray:
        model = _model(name)
        rng = np.random.default_rng(seed)
        draws = [model.sample_power_gain(50, rng) for _ in range(3)]
        process = start_fading(_model(name), 50, np.random.default_rng(seed))
        draws += [process.advance(0.01) for _ in range(3)]
        return np.array(draws)

    np.testing.assert_array_equal(run(11), run(11))
    if name != "none":
        assert not np.array_equal(run(11), run(12))


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("rician", {"k_factor": -1.0}, r"k_factor[\s\S]*greater than or equal to 0"),
        ("nakagami", {"m": 0.4}, r"m\n[\s\S]*greater than or equal to 0.5"),
        ("rayleigh", {"coherence_time_s": 0.0}, "coherence_time_s"),
        ("gauss-markov", {"speed_mps": -3.0}, "speed_mps"),
        ("rayleigh", {"k_factor": 1.0}, "k_factor"),
    ],
)
def test_bad_params_name_the_field_and_range(name: str, params: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        FADING_MODELS.get(name).Params.model_validate(params)


def test_negative_time_step_is_rejected() -> None:
    process = start_fading(_model("rayleigh"), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="dt_s must be >= 0"):
        process.advance(-1.0)
