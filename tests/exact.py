"""Exact, type-aware equality of nested results for the determinism tests (no repr, no tolerance).

Arrays and tensors compare element by element with their dtype and shape, floats with ``==`` (a NaN
equals only a NaN: a run that reproduces a NaN reproduces), dataclasses field by field, mappings key
by key, sequences item by item. The first difference is reported with its path.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def assert_identical(a: Any, b: Any, path: str = "") -> None:
    where = path or "<root>"
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        nan = a.dtype.kind in "fc"
        assert np.array_equal(a, b, equal_nan=nan), f"{where}: arrays differ"
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.is_floating_point():
            same = torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
        else:
            same = torch.equal(a, b)
        assert same, f"{where}: tensors differ"
    elif isinstance(a, float | np.floating):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        for field in dataclasses.fields(a):
            assert_identical(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
    elif isinstance(a, Mapping):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def state_dicts_identical(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    """Every tensor of two state dicts, by ``torch.equal`` (dtype and shape included)."""
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name
