"""Input checks shared by the channel library: bad input raises ``ValueError`` naming the parameter.

Kept cheap (one vectorised comparison per array) because they run in the hot path.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from channels.units import FloatArray


def as_float_array(value: ArrayLike) -> FloatArray:
    """``value`` as a float64 array (no copy when it already is one)."""
    return np.asarray(value, dtype=np.float64)


def check_nonnegative(name: str, value: ArrayLike) -> FloatArray:
    """Return ``value`` as a float array; raise if any entry is negative or NaN.

    Raises:
        ValueError: ``value`` has an entry outside [0, inf]; the message names ``name``.
    """
    array = as_float_array(value)
    if not np.all(array >= 0):  # also catches NaN
        raise ValueError(f"{name} must be >= 0 (allowed range [0, inf)), got min {np.nanmin(array)!r}")
    return array
