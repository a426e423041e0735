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
        idx = np.flatnonzero(data.y == label)
        order, n_test = _split_class(len(idx), test_fraction, rng)
        idx = idx[order]
        test_parts.append(idx[:n_test])
        train_parts.append(idx[n_test:])
    train_idx = np.sort(np.concatenate(train_parts))
    test_idx = np.sort(np.concatenate(test_parts))
    _check_split(len(train_idx), len(test_idx), len(data.y), test_fraction)
    return data.subset(train_idx), data.subset(test_idx)


def train_class_sizes(class_sizes: IntArray, test_fraction: float, rng: np.random.Generator) -> IntArray:
    """The training set's samples per class after :func:`train_test_split` of data with these
    samples per class, with the same draws from ``rng`` (which samples stay is not needed)."""
    train = np.array(class_sizes, dtype=np.int64)
    for label, size in enumerate(train.tolist()):
        train[label] -= _split_class(size, test_fraction, rng)[1]
    total = int(np.sum(class_sizes))
    _check_split(int(train.sum()), total - int(train.sum()), total, test_fraction)
    return train


def _split_class(size: int, test_fraction: float, rng: np.random.Generator) -> tuple[IntArray, int]:
    """One class's draws of :func:`train_test_split`: the order of its ``size`` samples and how many
    of them go to the test set. ``rng.permutation(size)`` makes the same draws as the permutation of
    any ``size`` values (they move positions, not values): ``idx[order]`` is ``rng.permutation(idx)``."""
    return rng.permutation(size), round(test_fraction * size)


def _check_split(num_train: int, num_test: int, num_samples: int, test_fraction: float) -> None:
    if num_test == 0 or num_train == 0:
        empty = "test" if num_test == 0 else "training"
        raise ValueError(
            f"learning.test_fraction={test_fraction:g} leaves the {empty} set empty "
            f"({num_samples} samples); choose a fraction that gives both sets samples"
        )


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
    _check_dirichlet_size(len(labels), num_devices, min_samples_per_device)
    classes = np.unique(labels)
    concentration = np.full(num_devices, alpha)
    for _ in range(max_attempts):
        parts: list[list[IntArray]] = [[] for _ in range(num_devices)]
        for label in classes:
            idx = np.flatnonzero(labels == label)
            order, cuts = _deal_class(len(idx), concentration, rng)
            idx = idx[order]
            bounds = [0, *cuts.tolist(), len(idx)]
            # ``np.split(idx, cuts)`` as plain slices (the same views, without its per-chunk overhead).
            for device in range(num_devices):
                parts[device].append(idx[bounds[device] : bounds[device + 1]])
        result = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(p) for p in result) >= min_samples_per_device:
            return result
    raise _dirichlet_failure(alpha, min_samples_per_device, max_attempts)


def dirichlet_class_counts(
    class_sizes: IntArray,
    num_devices: int,
    alpha: float,
    rng: np.random.Generator,
    min_samples_per_device: int = 1,
    max_attempts: int = 100,
) -> IntArray:
    """(num_devices, classes) samples of each class that :func:`dirichlet_partition` gives each
    device, for labels with ``class_sizes[c]`` samples of class c, with the same draws from ``rng``
    (so the same counts as ``bincount(labels[part])``, and the same errors). How many samples of a
    class a device gets follows from the class size and the draws alone, so no sample indices are
    shuffled, sliced or sorted (the surrogate trainer needs only these counts, at every reset)."""
    sizes = np.asarray(class_sizes, dtype=np.int64)
    _check_dirichlet_size(int(sizes.sum()), num_devices, min_samples_per_device)
    concentration = np.full(num_devices, alpha)
    # Row c: the slice bounds of class c's samples, device by device (all 0 for a class without
    # samples: ``np.unique(labels)`` leaves it out, so it draws nothing).
    bounds = np.zeros((len(sizes), num_devices + 1), dtype=np.int64)
    bounds[:, -1] = sizes
    present = sizes.nonzero()[0].tolist()
    for _ in range(max_attempts):
        for label in present:
            bounds[label, 1:-1] = _deal_class(int(sizes[label]), concentration, rng)[1]
        # A slice ``idx[a:b]`` of a class's ``size`` samples holds ``min(b, size) - min(a, size)``
        # (the bounds never decrease: they come from a cumulative sum of shares >= 0).
        clamped = np.minimum(bounds, sizes[:, None])
        counts = (clamped[:, 1:] - clamped[:, :-1]).T
        if counts.sum(axis=1).min() >= min_samples_per_device:
            return np.ascontiguousarray(counts)
    raise _dirichlet_failure(alpha, min_samples_per_device, max_attempts)


def _deal_class(
    size: int, concentration: NDArray[np.float64], rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """One class's draws of :func:`dirichlet_partition`: the order of its ``size`` samples (as in
    :func:`_split_class`) and the cuts between the devices' shares of them (shares ~
    Dirichlet(``concentration``), one entry per device; N - 1 cuts, in device order)."""
    order = rng.permutation(size)
    shares = rng.dirichlet(concentration)
    return order, (np.cumsum(shares)[:-1] * size).astype(np.int64)


def _check_dirichlet_size(num_samples: int, num_devices: int, min_samples_per_device: int) -> None:
    if num_devices * min_samples_per_device > num_samples:
        raise ValueError(
            f"cannot give {num_devices} devices {min_samples_per_device} samples each from "
            f"{num_samples} samples; lower cell.num_devices or learning.partition.min_samples_per_device"
        )


def _dirichlet_failure(alpha: float, min_samples_per_device: int, max_attempts: int) -> ValueError:
    return ValueError(
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
