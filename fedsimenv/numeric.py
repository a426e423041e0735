"""Small helpers shared by the per-step code of the env, the timing plane and the learning plane."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

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


T = TypeVar("T")
#: Field names (in declaration order) and their set, per class built by :func:`make_frozen`.
_FROZEN_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def make_frozen(cls: type[T], **values: Any) -> T:
    """``cls(**values)`` for a frozen dataclass without ``__post_init__``, every field given,
    without the frozen ``__init__``'s one ``object.__setattr__`` per field (~0.2 us each, and a
    step builds several such records: the report's 31 fields took ~5 us). The instance dict is
    filled in declaration order, as ``__init__`` fills it, so the object (its fields, equality,
    pickle) is the same. A field with a default factory must be given a fresh value, as the
    factory would make one.

    Raises:
        TypeError: a field is missing or unknown, or ``cls`` has a ``__post_init__``.
    """
    known = _FROZEN_FIELDS.get(cls)
    if known is None:
        if hasattr(cls, "__post_init__"):
            raise TypeError(f"make_frozen cannot skip {cls.__name__}.__post_init__")
        names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        known = _FROZEN_FIELDS[cls] = (names, frozenset(names))
    names, name_set = known
    if tuple(values) != names:  # not every field in declaration order (the callers' usual order)
        if values.keys() != name_set:
            raise TypeError(f"make_frozen({cls.__name__}) needs exactly the fields {', '.join(names)}")
        values = {name: values[name] for name in names}
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance
