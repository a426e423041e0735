"""Federated data partitions, registered by name: the one place both trainers split data.

A partition method is a function ``(train, num_devices, partition_config, rng) -> index arrays`` (one
per device, into ``train``) registered in :data:`PARTITIONS`; ``learning.partition.method`` selects it.
:func:`client_partition` is the whole split the torch trainer and the surrogate share (train/test
split, then the partition), so the surrogate's label counts are the torch trainer's exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fedsimenv.config import LearningConfig, PartitionConfig
from fedsimenv.learning.data import (
    ArrayDataset,
    IntArray,
    dirichlet_class_counts,
    dirichlet_partition,
    iid_partition,
    natural_partition,
    shard_partition,
    train_class_sizes,
    train_test_split,
)
from fedsimenv.learning.datasets import DatasetSpec, Split, load_dataset
from fedsimenv.registry import Registry

PartitionMethod = Callable[[ArrayDataset, int, PartitionConfig, np.random.Generator], list[IntArray]]
PARTITIONS: Registry[PartitionMethod] = Registry("partition method")


@PARTITIONS.register("iid")
def _iid(
    data: ArrayDataset, num_devices: int, config: PartitionConfig, rng: np.random.Generator
) -> list[IntArray]:
    return iid_partition(len(data), num_devices, rng)


@PARTITIONS.register("dirichlet")
def _dirichlet(
    data: ArrayDataset, num_devices: int, config: PartitionConfig, rng: np.random.Generator
) -> list[IntArray]:
    return dirichlet_partition(data.y, num_devices, config.alpha, rng, config.min_samples_per_device)


@PARTITIONS.register("shards")
def _shards(
    data: ArrayDataset, num_devices: int, config: PartitionConfig, rng: np.random.Generator
) -> list[IntArray]:
    return shard_partition(data.y, num_devices, config.classes_per_device, rng)


@PARTITIONS.register("natural")
def _natural(
    data: ArrayDataset, num_devices: int, config: PartitionConfig, rng: np.random.Generator
) -> list[IntArray]:
    if data.groups is None:
        raise ValueError("partition 'natural' needs a dataset with natural owners (e.g. femnist)")
    return natural_partition(data.groups, num_devices, rng)


def partition_dataset(
    data: ArrayDataset, num_devices: int, config: PartitionConfig, rng: np.random.Generator
) -> list[IntArray]:
    """Split ``data`` over ``num_devices`` devices with the registered method ``config.method``."""
    return PARTITIONS.get(config.method)(data, num_devices, config, rng)


def dataset_spec(config: LearningConfig) -> DatasetSpec:
    """What the dataset loaders need from the scenario's learning section."""
    synthetic = config.synthetic
    return DatasetSpec(
        data_dir=Path(config.data_dir) if config.data_dir else None,
        num_samples=synthetic.num_samples,
        num_classes=synthetic.num_classes,
        input_shape=synthetic.input_shape,
        noise_std=synthetic.noise_std,
        seed=synthetic.seed,
    )


def load_configured_dataset(config: LearningConfig) -> Split:
    """``(full, official test or None)`` of the registered dataset ``config.dataset``."""
    return load_dataset(config.dataset, dataset_spec(config))


def client_partition(
    data: Split, config: LearningConfig, num_devices: int, rng: np.random.Generator
) -> tuple[ArrayDataset, ArrayDataset, list[IntArray]]:
    """``(train, test, parts)``: a stratified train/test split when the dataset has no official test
    set, then :func:`partition_dataset` of the training set, both drawn from ``rng`` in that order."""
    full, official_test = data
    if official_test is None:
        train, test = train_test_split(full, config.test_fraction, rng)
    else:
        train, test = full, official_test
    return train, test, partition_dataset(train, num_devices, config.partition, rng)


def client_label_counts(
    data: Split, config: LearningConfig, num_devices: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """(num_devices, classes) label histogram of each device's part of :func:`client_partition`
    with the same arguments (the same draws from ``rng``, the same errors).

    For the Dirichlet partition (the common one) the histogram follows from the samples per class
    and the draws alone: :func:`~fedsimenv.learning.data.train_class_sizes` and
    :func:`~fedsimenv.learning.data.dirichlet_class_counts` make those draws without shuffling,
    slicing and sorting sample indices (the surrogate trainer calls this at every reset). Other
    methods run :func:`client_partition` and count."""
    full, official_test = data
    num_classes = full.num_classes
    if config.partition.method != "dirichlet" or PARTITIONS.get("dirichlet") is not _dirichlet:
        train, _, parts = client_partition(data, config, num_devices, rng)
        return np.stack([np.bincount(train.y[p], minlength=num_classes) for p in parts])
    sizes = np.bincount(full.y, minlength=num_classes)
    if official_test is None:
        sizes = train_class_sizes(sizes[:num_classes], config.test_fraction, rng)
    partition = config.partition
    return dirichlet_class_counts(sizes, num_devices, partition.alpha, rng, partition.min_samples_per_device)
