"""Link-level formulas: SNR and Shannon rate of an FDMA bandwidth share. Vectorised over devices."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from channels.units import FloatArray


def snr_linear(
    tx_power_w: ArrayLike, gain_linear: ArrayLike, noise_psd_w_per_hz: float, bandwidth_hz: ArrayLike
) -> FloatArray:
    """Received SNR ``p g / (N0 b)`` (linear); infinite where ``bandwidth_hz`` is 0."""
    noise_w = noise_psd_w_per_hz * np.asarray(bandwidth_hz, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(np.asarray(tx_power_w, dtype=np.float64) * np.asarray(gain_linear) / noise_w)


def shannon_rate_bps(
    bandwidth_hz: ArrayLike, tx_power_w: ArrayLike, gain_linear: ArrayLike, noise_psd_w_per_hz: float
) -> FloatArray:
    """Uplink rate ``r = b log2(1 + p g / (N0 b))`` in bit/s for bandwidth ``b`` Hz; 0 where b = 0.

    Concave and increasing in ``b``; tends to ``p g / (N0 ln 2)`` as ``b`` grows.
    """
    b = np.asarray(bandwidth_hz, dtype=np.float64)
    received_w = np.asarray(tx_power_w, dtype=np.float64) * np.asarray(gain_linear, dtype=np.float64)
    safe_b = np.where(b > 0, b, 1.0)
    rate = safe_b * np.log2(1.0 + received_w / (noise_psd_w_per_hz * safe_b))
    return np.where(b > 0, rate, 0.0)
