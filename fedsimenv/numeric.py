"""Small array helpers shared by the per-step code of the env and the learning plane."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def clip(values: ArrayLike, low: ArrayLike, high: ArrayLike) -> NDArray[np.float64]:
    """``np.clip(values, low, high)`` as two ufunc calls, without ``np.clip``'s Python-level
    dispatch (a few microseconds a call, on paths that run every env step).

    NaN stays NaN and +-inf go to the bounds, as with ``np.clip``. The two can differ only in the
    sign of a zero at a zero bound (-0.0 against 0.0); callers pass values that are never -0.0
    (phase times, rates, ``1 - rho``, dB gains, actions) or where both zeros give the same result.
    """
    clipped: NDArray[np.float64] = np.minimum(np.maximum(values, low), high)
    return clipped
