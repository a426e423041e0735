"""Datasets and their federated partitions.

Nothing downloads: the walking skeleton ships sklearn's bundled ``digits`` (1797 8x8 grey images,
10 classes). Partitions are pure functions of the labels and an injected numpy Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class ArrayDataset:
    """Features ``x`` (float32, N x C x H x W) and integer labels ``y`` (N,)."""

    x: NDArray[np.float32]
    y: IntArray
    num_classes: int

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: IntArray) -> ArrayDataset:
        return ArrayDataset(self.x[indices], self.y[indices], self.num_classes)


def load_digits() -> ArrayDataset:
    """sklearn's bundled digits, pixels scaled from [0, 16] to [0, 1], shape (1797, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
    return ArrayDataset(x=x, y=np.asarray(bunch.target, dtype=np.int64), num_classes=10)


def train_test_split(
    data: ArrayDataset, test_fraction: float, rng: np.random.Generator
) -> tuple[ArrayDataset, ArrayDataset]:
    """A stratified split: each class contributes ``test_fraction`` of its samples to the test set."""
    test_parts: list[IntArray] = []
    train_parts: list[IntArray] = []
    for label in range(data.num_classes):
        idx = rng.permutation(np.flatnonzero(data.y == label))
        n_test = round(test_fraction * len(idx))
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    train_idx = np.sort(np.concatenate(train_parts))
    test_idx = np.sort(np.concatenate(test_parts))
    return data.subset(train_idx), data.subset(test_idx)


def iid_partition(num_samples: int, num_devices: int, rng: np.random.Generator) -> list[IntArray]:
    """Shuffle and deal the samples into ``num_devices`` near-equal parts."""
    return [np.sort(part) for part in np.array_split(rng.permutation(num_samples), num_devices)]


def dirichlet_partition(
    labels: IntArray,
    num_devices: int,
    alpha: float,
    rng: np.random.Generator,
    min_samples_per_device: int = 1,
    max_attempts: int = 100,
) -> list[IntArray]:
    """Label-skewed split: for each class, device shares ~ Dirichlet(alpha * 1_K).

    The usual non-IID benchmark partition (Hsu et al., 2019). Small ``alpha`` -> each device holds few
    classes. Redraws until every device has at least ``min_samples_per_device`` samples.

    Raises:
        ValueError: no draw met the minimum within ``max_attempts`` (too many devices for the data).
    """
    if num_devices * min_samples_per_device > len(labels):
        raise ValueError(
            f"cannot give {num_devices} devices {min_samples_per_device} samples each from "
            f"{len(labels)} samples; lower cell.num_devices or learning.partition.min_samples_per_device"
        )
    classes = np.unique(labels)
    for _ in range(max_attempts):
        parts: list[list[IntArray]] = [[] for _ in range(num_devices)]
        for label in classes:
            idx = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(num_devices, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
            for device, chunk in enumerate(np.split(idx, cuts)):
                parts[device].append(chunk)
        result = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in result) >= min_samples_per_device:
            return result
    raise ValueError(
        f"Dirichlet(alpha={alpha}) partition gave some device fewer than {min_samples_per_device} "
        f"samples in {max_attempts} attempts; raise learning.partition.alpha or lower the minimum"
    )
