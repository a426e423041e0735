"""The label histogram of a partition without building it (``client_label_counts``, used by the
surrogate at every reset) against counting the labels of the partition itself, draw for draw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from fedsimenv.config import LearningConfig, PartitionConfig
from fedsimenv.learning.data import (
    ArrayDataset,
    dirichlet_class_counts,
    dirichlet_partition,
    load_digits,
    train_class_sizes,
    train_test_split,
)
from fedsimenv.learning.datasets import Split
from fedsimenv.learning.partition import client_label_counts, client_partition

DIGITS = load_digits()


def _counted(data: Split, config: LearningConfig, n: int, seed: int) -> tuple[np.ndarray, Mapping[str, Any]]:
    """The reference: the partition itself, its parts' labels counted; and the generator's state."""
    rng = np.random.default_rng(seed)
    train, _, parts = client_partition(data, config, n, rng)
    counts = np.stack([np.bincount(train.y[p], minlength=train.num_classes) for p in parts])
    return counts, rng.bit_generator.state


def _direct(data: Split, config: LearningConfig, n: int, seed: int) -> tuple[np.ndarray, Mapping[str, Any]]:
    rng = np.random.default_rng(seed)
    return client_label_counts(data, config, n, rng), rng.bit_generator.state


def _config(**partition: object) -> LearningConfig:
    return LearningConfig(partition=PartitionConfig(**partition))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "alpha", "min_samples", "test_fraction"),
    [(20, 0.5, 8, 0.2), (50, 0.5, 8, 0.2), (3, 0.05, 1, 0.5), (10, 100.0, 8, 0.01), (1, 1.0, 1, 0.9)],
)
def test_dirichlet_counts_are_the_partitions_counts_with_the_same_draws(
    n: int, alpha: float, min_samples: int, test_fraction: float
) -> None:
    config = _config(alpha=alpha, min_samples_per_device=min_samples).model_copy(
        update={"test_fraction": test_fraction}
    )
    for seed in range(6):
        expected, expected_state = _counted((DIGITS, None), config, n, seed)
        got, state = _direct((DIGITS, None), config, n, seed)
        assert got.dtype == np.int64 and got.tolist() == expected.tolist()
        assert state == expected_state  # the stream is left where the partition leaves it


def test_redraws_are_counted_like_the_partition_redraws_them() -> None:
    """N = 50 with at least 8 samples each from ~1,440 digits: some seeds need more than one draw."""
    labels = DIGITS.y
    sizes = np.bincount(labels, minlength=10)
    redrawn = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        parts = dirichlet_partition(labels, 50, 0.5, rng, min_samples_per_device=8)
        after_one = np.random.default_rng(seed)
        for label in range(10):  # the draws of a single attempt
            after_one.permutation(sizes[label])
            after_one.dirichlet(np.full(50, 0.5))
        redrawn += rng.bit_generator.state != after_one.bit_generator.state
        counts_rng = np.random.default_rng(seed)
        counts = dirichlet_class_counts(sizes, 50, 0.5, counts_rng, min_samples_per_device=8)
        assert counts.tolist() == [np.bincount(labels[p], minlength=10).tolist() for p in parts]
        assert counts_rng.bit_generator.state == rng.bit_generator.state
    assert redrawn > 0


def test_official_test_set_and_classes_without_samples() -> None:
    """No split draws with an official test set; a class with no samples draws nothing."""
    labels = np.array([0, 0, 2, 2, 2, 3, 3, 3, 3, 5] * 6, dtype=np.int64)
    train = ArrayDataset(np.zeros((len(labels), 1, 1, 1), np.float32), labels, num_classes=7)
    config = _config(alpha=0.7, min_samples_per_device=2)
    for seed in range(5):
        expected, expected_state = _counted((train, train), config, 4, seed)
        got, state = _direct((train, train), config, 4, seed)
        assert got.shape == (4, 7) and got[:, [1, 4, 6]].sum() == 0
        assert got.tolist() == expected.tolist() and state == expected_state


def test_hand_computed_split_sizes() -> None:
    """round(0.25 x size) of each class leaves for the test set (Python's rounding: 2.5 -> 2)."""
    sizes = np.array([10, 4, 1, 0, 7])
    assert train_class_sizes(sizes, 0.25, np.random.default_rng(0)).tolist() == [8, 3, 1, 0, 5]


def test_other_methods_count_their_partition() -> None:
    for method in ("iid", "shards"):
        config = _config(method=method)
        expected, expected_state = _counted((DIGITS, None), config, 12, 3)
        got, state = _direct((DIGITS, None), config, 12, 3)
        assert got.tolist() == expected.tolist() and state == expected_state


def test_errors_are_the_partitions_errors() -> None:
    tiny = ArrayDataset(np.zeros((12, 1, 1, 1), np.float32), np.arange(12) % 3, num_classes=3)
    cases = [
        (_config(min_samples_per_device=8), (tiny, tiny), 4),  # 4 x 8 > 12 samples
        (_config(alpha=1e-3, min_samples_per_device=3), (tiny, tiny), 4),  # no draw gives 3 each
        (LearningConfig(test_fraction=0.01), (tiny, None), 2),  # no test sample
    ]
    for config, data, n in cases:
        with pytest.raises(ValueError) as expected:
            client_partition(data, config, n, np.random.default_rng(0))
        with pytest.raises(ValueError) as got:
            client_label_counts(data, config, n, np.random.default_rng(0))
        assert str(got.value) == str(expected.value)


def test_split_by_order_is_the_permutation_of_the_indices() -> None:
    """``train_test_split`` shuffles by ``idx[rng.permutation(len(idx))]``: the same as
    ``rng.permutation(idx)``, which it did before (and the same draws)."""
    data = load_digits()
    rng = np.random.default_rng(11)
    train, test = train_test_split(data, 0.2, rng)
    reference = np.random.default_rng(11)
    train_parts, test_parts = [], []
    for label in range(10):
        idx = reference.permutation(np.flatnonzero(data.y == label))
        n_test = round(0.2 * len(idx))
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    assert train.y.tolist() == data.y[np.sort(np.concatenate(train_parts))].tolist()
    assert test.y.tolist() == data.y[np.sort(np.concatenate(test_parts))].tolist()
    np.testing.assert_array_equal(train.x, data.x[np.sort(np.concatenate(train_parts))])
    assert rng.bit_generator.state == reference.bit_generator.state
