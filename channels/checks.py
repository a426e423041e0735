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
    array = np.asarray(value, dtype=np.float64)
    if not (array >= 0).all():  # also catches NaN (the method: no dispatch wrapper in the hot path)
        raise ValueError(f"{name} must be >= 0 (allowed range [0, inf)), got min {np.nanmin(array)!r}")
    return array


class WorkLimitError(RuntimeError):
    """A simulation step would need more work than its validated cap allows (e.g. more coherence
    blocks in one round than ``channel.max_blocks_per_round``, or more mobility sub-steps in one
    advance than :data:`MAX_STEPS_PER_ADVANCE`): the run stops with this message instead of stalling."""


#: Most sub-steps (mobility legs or discrete updates) one ``advance(dt_s)`` of a channel process may take.
MAX_STEPS_PER_ADVANCE = 1_000_000
