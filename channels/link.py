"""Link-level formulas, vectorised over devices: SNR/SINR, FDMA and OFDMA Shannon rates, downlink
broadcast rate, packet error rate and outage probability.

Units: powers in watts, gains linear (path loss x shadowing x fading), bandwidths in Hz, noise power
spectral density ``N0`` in W/Hz (``dbm_to_watt(-174)`` for -174 dBm/Hz), noise figure ``F`` in dB.
The receiver noise over bandwidth ``B`` is ``N0 B 10^(F/10)``; an optional interference term ``I`` (W,
over the device's band) adds to it. Negative bandwidths, powers, gains or interference raise
``ValueError`` naming the argument.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from channels.base import FadingModel
from channels.checks import as_float_array, check_nonnegative
from channels.units import FloatArray, db_to_linear


def noise_power_w(
    bandwidth_hz: ArrayLike, noise_psd_w_per_hz: float, noise_figure_db: float = 0.0
) -> FloatArray:
    """Thermal noise power ``N0 B F`` in watts over ``bandwidth_hz``, with noise figure ``F`` dB."""
    b = check_nonnegative("bandwidth_hz", bandwidth_hz)
    check_nonnegative("noise_psd_w_per_hz", noise_psd_w_per_hz)
    return np.asarray(noise_psd_w_per_hz * b * db_to_linear(noise_figure_db))


def _received_w(tx_power_w: ArrayLike, gain_linear: ArrayLike) -> FloatArray:
    return check_nonnegative("tx_power_w", tx_power_w) * check_nonnegative("gain_linear", gain_linear)


def sinr_linear(
    tx_power_w: ArrayLike,
    gain_linear: ArrayLike,
    noise_psd_w_per_hz: float,
    bandwidth_hz: ArrayLike,
    *,
    noise_figure_db: float = 0.0,
    interference_w: ArrayLike = 0.0,
) -> FloatArray:
    """SINR ``p g / (N0 B F + I)`` (linear); infinite where the denominator is 0."""
    noise = noise_power_w(bandwidth_hz, noise_psd_w_per_hz, noise_figure_db)
    denominator = noise + check_nonnegative("interference_w", interference_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(_received_w(tx_power_w, gain_linear) / denominator)


def snr_linear(
    tx_power_w: ArrayLike,
    gain_linear: ArrayLike,
    noise_psd_w_per_hz: float,
    bandwidth_hz: ArrayLike,
    *,
    noise_figure_db: float = 0.0,
) -> FloatArray:
    """Received SNR ``p g / (N0 B F)`` (linear); infinite where ``bandwidth_hz`` is 0."""
    return sinr_linear(
        tx_power_w, gain_linear, noise_psd_w_per_hz, bandwidth_hz, noise_figure_db=noise_figure_db
    )


def shannon_rate_bps(
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    gain_linear: ArrayLike,
    noise_psd_w_per_hz: float,
    *,
    noise_figure_db: float = 0.0,
    interference_w: ArrayLike = 0.0,
) -> FloatArray:
    """FDMA uplink rate ``r = b log2(1 + p g / (N0 b F + I))`` in bit/s for a bandwidth share ``b`` Hz.

    0 where ``b = 0``. Without interference, concave and increasing in ``b`` and tends to
    ``p g / (N0 F ln 2)`` as ``b`` grows.
    """
    b = check_nonnegative("bandwidth_hz", bandwidth_hz)
    safe_b = np.where(b > 0, b, 1.0)
    if noise_figure_db == 0 and type(interference_w) in (float, int) and interference_w == 0:
        # The common call (the simulator's, every round): the same operations as the general branch
        # (``N0 b x 1 + 0`` is ``N0 b`` exactly), with each input checked once.
        received = _received_w(tx_power_w, gain_linear)
        noise = check_nonnegative("noise_psd_w_per_hz", noise_psd_w_per_hz) * safe_b
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, safe_b * np.log2(1.0 + received / noise), 0.0)
    sinr = sinr_linear(
        tx_power_w,
        gain_linear,
        noise_psd_w_per_hz,
        safe_b,
        noise_figure_db=noise_figure_db,
        interference_w=interference_w,
    )
    return np.where(b > 0, safe_b * np.log2(1.0 + sinr), 0.0)


def ofdma_rate_bps(
    num_resource_blocks: ArrayLike,
    rb_bandwidth_hz: float,
    tx_power_w: ArrayLike,
    gain_linear: ArrayLike,
    noise_psd_w_per_hz: float,
    *,
    noise_figure_db: float = 0.0,
    interference_w_per_rb: ArrayLike = 0.0,
) -> FloatArray:
    """OFDMA rate with an integer number ``n`` of resource blocks of width ``W`` Hz per device.

    The device spreads its power evenly over its blocks (flat fading across them), so
    ``r = n W log2(1 + p g / (n (N0 W F + I_rb)))``; 0 for ``n = 0``.

    Raises:
        ValueError: ``num_resource_blocks`` is negative or not integral, or ``rb_bandwidth_hz`` <= 0.
    """
    n = check_nonnegative("num_resource_blocks", num_resource_blocks)
    if not np.all(n == np.floor(n)):
        raise ValueError("num_resource_blocks must be integers >= 0 (allowed range {0, 1, 2, ...})")
    if not rb_bandwidth_hz > 0:
        raise ValueError(f"rb_bandwidth_hz must be > 0 (allowed range (0, inf)), got {rb_bandwidth_hz!r}")
    per_rb_noise = noise_power_w(rb_bandwidth_hz, noise_psd_w_per_hz, noise_figure_db) + check_nonnegative(
        "interference_w_per_rb", interference_w_per_rb
    )
    safe_n = np.where(n > 0, n, 1.0)
    sinr = _received_w(tx_power_w, gain_linear) / (safe_n * per_rb_noise)
    return np.where(n > 0, safe_n * rb_bandwidth_hz * np.log2(1.0 + sinr), 0.0)


def allocate_resource_blocks(bandwidth_share: ArrayLike, num_resource_blocks: int) -> NDArray[np.int64]:
    """Integer resource blocks per device from fractional shares (sum <= 1), largest remainder first.

    Devices get ``floor(share K)`` blocks; the blocks left over go to the largest remainders. The
    total never exceeds ``round(sum(share) K)``.
    """
    share = check_nonnegative("bandwidth_share", bandwidth_share)
    if share.sum() > 1 + 1e-9:
        raise ValueError(f"bandwidth_share must sum to <= 1, got {share.sum()!r}")
    if num_resource_blocks < 0:
        raise ValueError(f"num_resource_blocks must be >= 0, got {num_resource_blocks!r}")
    exact = share * num_resource_blocks
    blocks = np.floor(exact).astype(np.int64)
    left = round(float(exact.sum())) - int(blocks.sum())
    if left > 0:
        order = np.argsort(-(exact - blocks), kind="stable")
        blocks[order[:left]] += 1
    return blocks


def broadcast_rate_bps(
    bandwidth_hz: float,
    tx_power_w: float,
    gain_linear: ArrayLike,
    noise_psd_w_per_hz: float,
    *,
    noise_figure_db: float = 0.0,
    interference_w: ArrayLike = 0.0,
) -> float:
    """Downlink broadcast rate (bit/s): one common stream, so the weakest receiver sets the rate."""
    gains = as_float_array(gain_linear)
    if gains.size == 0:
        raise ValueError("gain_linear must hold at least one receiver")
    rates = shannon_rate_bps(
        bandwidth_hz,
        tx_power_w,
        gains,
        noise_psd_w_per_hz,
        noise_figure_db=noise_figure_db,
        interference_w=interference_w,
    )
    return float(np.min(rates))


def packet_error_rate(
    tx_power_w: ArrayLike,
    gain_linear: ArrayLike,
    bandwidth_hz: ArrayLike,
    noise_psd_w_per_hz: float,
    waterfall_threshold: float,
    *,
    noise_figure_db: float = 0.0,
    interference_w: ArrayLike = 0.0,
) -> FloatArray:
    """Packet error rate ``q = 1 - exp(-m (I + B N0 F) / (p g))`` (Chen et al., IEEE TWC 2021).

    ``m`` is the waterfall threshold. ``q`` is in [0, 1], decreasing in ``p g``; 1 where ``p g = 0``.
    """
    if not waterfall_threshold >= 0:
        raise ValueError(
            f"waterfall_threshold must be >= 0 (allowed range [0, inf)), got {waterfall_threshold!r}"
        )
    noise = noise_power_w(bandwidth_hz, noise_psd_w_per_hz, noise_figure_db)
    disturbance = noise + check_nonnegative("interference_w", interference_w)
    received = _received_w(tx_power_w, gain_linear)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = -np.expm1(-waterfall_threshold * disturbance / received)
    return np.asarray(np.where(received > 0, q, 1.0))


def outage_probability(
    target_rate_bps: ArrayLike,
    bandwidth_hz: ArrayLike,
    tx_power_w: ArrayLike,
    mean_gain_linear: ArrayLike,
    noise_psd_w_per_hz: float,
    fading: FadingModel,
    *,
    noise_figure_db: float = 0.0,
    interference_w: ArrayLike = 0.0,
) -> FloatArray:
    """``P(b log2(1 + p G |h|^2 / (N0 b F + I)) < R)`` over the fading ``|h|^2`` of ``fading``.

    ``mean_gain_linear`` is the large-scale gain ``G`` (path loss x shadowing); the fading's power CDF
    is evaluated at ``(2^(R/b) - 1) (N0 b F + I) / (p G)``.
    """
    rate = check_nonnegative("target_rate_bps", target_rate_bps)
    b = check_nonnegative("bandwidth_hz", bandwidth_hz)
    disturbance = noise_power_w(b, noise_psd_w_per_hz, noise_figure_db) + check_nonnegative(
        "interference_w", interference_w
    )
    received = _received_w(tx_power_w, mean_gain_linear)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        threshold = np.expm1(rate / b * np.log(2.0)) * disturbance / received
    threshold = np.where(rate == 0, 0.0, np.nan_to_num(threshold, nan=np.inf, posinf=np.inf))
    return np.asarray(np.where(rate == 0, 0.0, fading.power_cdf(threshold)))
