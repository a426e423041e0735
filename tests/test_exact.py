"""The determinism tests' comparison (tests/exact.py) sees a one-ulp difference anywhere."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from exact import assert_identical, state_dicts_identical


@dataclasses.dataclass
class _Row:
    x: np.ndarray
    y: float


def test_identical_nested_values_pass_and_nan_equals_nan() -> None:
    value = {
        "a": [np.array([1.0, np.nan]), (torch.tensor([2.0, float("nan")]), 3.0)],
        "b": _Row(np.ones(2), 0.5),
    }
    twin = {
        "a": [np.array([1.0, np.nan]), (torch.tensor([2.0, float("nan")]), 3.0)],
        "b": _Row(np.ones(2), 0.5),
    }
    assert_identical(value, twin)
    state_dicts_identical({"w": torch.ones(3)}, {"w": torch.ones(3)})


def test_one_ulp_dtype_type_or_key_differences_fail() -> None:
    one = np.float64(1.0)
    bumped = np.nextafter(one, 2.0)
    cases = [
        (np.array([1.0, 2.0]), np.array([1.0, np.nextafter(2.0, 3.0)])),
        (np.array([1.0]), np.array([1.0], dtype=np.float32)),
        (torch.tensor([1.0]), torch.tensor([1.0 + 2**-23])),
        (float(one), float(bumped)),
        (1.0, 1),
        ({"a": 1}, {"b": 1}),
        ([1.0, 2.0], [1.0]),
        (_Row(np.zeros(2), 0.5), _Row(np.zeros(2), float(np.nextafter(0.5, 1.0)))),
        (np.array([np.nan]), np.array([0.0])),
    ]
    for a, b in cases:
        with pytest.raises(AssertionError):
            assert_identical(a, b)
    with pytest.raises(AssertionError):
        state_dicts_identical({"w": torch.ones(3)}, {"w": torch.tensor([1.0, 1.0, 1.0 + 2**-23])})
