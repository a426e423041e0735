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
    """Features ``x`` (float32, N x C x H x W), integer labels ``y`` (N,) and, where the data has
    natural owners (FEMNIST writers), their ids ``groups`` (N,)."""

    x: NDArray[np.float32]
    y: IntArray
    num_classes: int
    groups: IntArray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: IntArray) -> ArrayDataset:
        groups = None if self.groups is None else self.groups[indices]
        return ArrayDataset(self.x[indices], self.y[indices], self.num_classes, groups)


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
    if len(test_idx) == 0 or len(train_idx) == 0:
        empty = "test" if len(test_idx) == 0 else "training"
        raise ValueError(
            f"learning.test_fraction={test_fraction:g} leaves the {empty} set empty "
            f"({len(data.y)} samples); choose a fraction that gives both sets samples"
        )
    return data.subset(train_idx), data.subset(test_idx)


def natural_partition(groups: IntArray, num_devices: int, rng: np.random.Generator) -> list[IntArray]:
    """Devices take whole natural owners (e.g. FEMNIST writers), shuffled and dealt round-robin."""
    owners = rng.permutation(np.unique(groups))
    if len(owners) < num_devices:
        raise ValueError(f"{len(owners)} natural owners cannot fill {num_devices} devices")
    return [
        np.flatnonzero(np.isin(groups, owners[d::num_devices])).astype(np.int64) for d in range(num_devices)
    ]


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
            # ``np.split(idx, cuts)`` as plain slices (the same views, without its per-chunk overhead).
            bounds = [0, *cuts.tolist(), len(idx)]
            for device in range(num_devices):
                parts[device].append(idx[bounds[device] : bounds[device + 1]])
        result = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in result) >= min_samples_per_device:
            return result
    raise ValueError(
        f"Dirichlet(alpha={alpha}) partition gave some device fewer than {min_samples_per_device} "
        f"samples in {max_attempts} attempts; raise learning.partition.alpha or lower the minimum"
    )


def shard_partition(
    labels: IntArray, num_devices: int, classes_per_device: int, rng: np.random.Generator
) -> list[IntArray]:
    """Pathological non-IID split (McMahan et al., 2017): sort by label, cut into
    ``num_devices * classes_per_device`` equal shards, deal each device ``classes_per_device`` shards.

    A device thus sees at most ``classes_per_device`` classes (fewer if two of its shards share one).
    """
    num_shards = num_devices * classes_per_device
    if num_shards > len(labels):
        raise ValueError(f"{num_shards} shards need at least as many samples, got {len(labels)}")
    # Shuffle first so the order within a class is random, then a stable sort groups the classes.
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards)
    return [
        np.sort(
            np.concatenate([shards[s] for s in order[d * classes_per_device : (d + 1) * classes_per_device]])
        ).astype(np.int64)
        for d in range(num_devices)
    ]


def device_test_split(
    test_labels: IntArray,
    train_labels: IntArray,
    num_test: int,
    num_classes: int,
    rng: np.random.Generator,
) -> IntArray:
    """Indices into the global test set whose label mix follows one device's training labels.

    As in DWNP, each device is evaluated on test data distributed like its own data. Class counts are
    the device's label proportions times ``num_test`` (largest remainder); a class with fewer test
    samples than needed is drawn with replacement.
    """
    proportions = np.bincount(train_labels, minlength=num_classes) / max(len(train_labels), 1)
    raw = proportions * num_test
    counts = np.floor(raw).astype(np.int64)
    for label in np.argsort(-(raw - counts), kind="stable")[: num_test - int(counts.sum())]:
        counts[label] += 1
    parts: list[IntArray] = []
    for label in range(num_classes):
        pool = np.flatnonzero(test_labels == label)
        if counts[label] == 0 or len(pool) == 0:
            continue
        parts.append(rng.choice(pool, size=int(counts[label]), replace=counts[label] > len(pool)))
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
