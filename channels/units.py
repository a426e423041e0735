"""dB / linear / dBm conversions: the one place where they are written down.

Conventions: ``*_db`` are power ratios in decibels, ``*_dbm`` are powers in dBm (decibel-milliwatts),
``*_w`` are powers in watts, ``*_linear`` are dimensionless power ratios.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def db_to_linear(value_db: ArrayLike) -> FloatArray:
    """Power ratio in dB -> linear ratio (10^(x/10))."""
    return np.power(10.0, np.asarray(value_db, dtype=np.float64) / 10.0)


def linear_to_db(value_linear: ArrayLike) -> FloatArray:
    """Linear power ratio -> dB (10 log10 x); 0 maps to -inf."""
    values = np.asarray(value_linear, dtype=np.float64)
    # Silencing the division warning of log10(0) costs more than the log of a few values (the env
    # converts its N gains every step): only where some value is not > 0 (``argmin`` picks a
    # smallest value or the first NaN).
    if values.size and values.flat[values.argmin()] > 0:
        return 10.0 * np.log10(values)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(values)


def dbm_to_watt(power_dbm: ArrayLike) -> FloatArray:
    """Power in dBm -> watts (1 mW = 0 dBm)."""
    return np.power(10.0, (np.asarray(power_dbm, dtype=np.float64) - 30.0) / 10.0)


def watt_to_dbm(power_w: ArrayLike) -> FloatArray:
    """Power in watts -> dBm; 0 W maps to -inf."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.asarray(power_w, dtype=np.float64)) + 30.0
