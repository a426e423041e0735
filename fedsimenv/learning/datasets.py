"""Datasets beyond digits, read from local files (nothing downloads), and a registry to pick one.

Each loader returns ``(train, test)``; ``test`` is None when the dataset has no official split (the
trainer then makes a stratified one). An absent dataset raises :class:`DatasetNotFoundError` saying
which files to put where.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedsimenv.learning.data import ArrayDataset, load_digits
from fedsimenv.registry import Registry

#: Per-channel mean and std of the CIFAR training images (scaled to [0, 1]); the usual constants.
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A dataset's files are not where the scenario says (bad input: the CLI exits 2 with this message)."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a loader needs from the scenario: the local directory and the synthetic task's shape."""

    data_dir: Path | None = None
    num_samples: int = 2000
    num_classes: int = 10
    input_shape: tuple[int, int, int] = (1, 8, 8)
    noise_std: float = 1.0
    seed: int = 0


Split = tuple[ArrayDataset, ArrayDataset | None]
DATASETS: Registry[Callable[[DatasetSpec], Split]] = Registry("dataset")


def _require(directory: Path | None, names: list[str], what: str, origin: str) -> Path:
    if directory is None:
        raise DatasetNotFoundError(
            f"{what} needs learning.data_dir: a directory holding {', '.join(names)} ({origin})"
        )
    missing = [n for n in names if not (directory / n).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{what} not found: put {', '.join(names)} ({origin}) in {directory} "
            f"(missing: {', '.join(missing)})"
        )
    return directory


@DATASETS.register("digits")
def _digits(spec: DatasetSpec) -> Split:
    return load_digits(), None


@DATASETS.register("synthetic")
def load_synthetic(spec: DatasetSpec) -> Split:
    """A Gaussian-prototype classification task: each class has a random prototype image, samples
    are prototype + N(0, noise_std^2) noise. ``noise_std`` sets the difficulty; drawn from ``seed``."""
    rng = np.random.default_rng(spec.seed)
    prototypes = rng.standard_normal((spec.num_classes, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, spec.num_classes, spec.num_samples).astype(np.int64)
    noise = rng.standard_normal((spec.num_samples, *spec.input_shape)).astype(np.float32)
    return ArrayDataset(prototypes[y] + np.float32(spec.noise_std) * noise, y, spec.num_classes), None


class DatasetFormatError(ValueError):
    """A dataset file is not in the expected format (bad input: the CLI exits 2 with this message).

    Messages name the file and what is wrong, never the file's contents.
    """


class _Refused(pickle.UnpicklingError):
    """What :class:`CifarUnpickler` refused (its message holds none of the file's contents)."""


class CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches and nothing else: no code runs while loading.

    A batch is a dict of bytes keys to a ``uint8`` numpy array, lists of ints and bytes; the only
    globals such a pickle refers to (Python 2's ``cPickle``, or Python 3's protocols 2-5) are numpy's
    array and dtype reconstructors and ``_codecs.encode`` (how protocol 2 stores bytes).
    :data:`ALLOWED_GLOBALS` lists them; any other global (``os.system``, ``builtins.eval``, ...) is
    refused before it is looked up, so a payload's callable is never reached.
    """

    ALLOWED_GLOBALS = frozenset(
        {
            ("_codecs", "encode"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED_GLOBALS:
            raise _Refused("a reference to a callable that is not part of a CIFAR batch (nothing was run)")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id (not part of a CIFAR batch)")


def _cifar_arrays(path: Path, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` of one CIFAR batch file, checked.

    Raises:
        DatasetFormatError: the file is not a CIFAR batch (nothing in it was executed).
    """
    try:
        with path.open("rb") as handle:
            batch = CifarUnpickler(handle, encoding="bytes").load()
    except _Refused as err:
        raise DatasetFormatError(f"{path}: not a CIFAR python batch; refused: it holds {err}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
    ):
        raise DatasetFormatError(f"{path}: not a CIFAR python batch (unreadable pickle)") from None
    if not isinstance(batch, dict) or not isinstance(batch.get(b"data"), np.ndarray):
        raise DatasetFormatError(f"{path}: not a CIFAR python batch (no {b'data'!r} array)")
    data, labels = batch[b"data"], batch.get(label_key)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(
            f"{path}: {b'data'!r} must be a uint8 array of shape (n, 3072), got {data.dtype} {data.shape}"
        )
    if not isinstance(labels, list | np.ndarray) or len(labels) != data.shape[0]:
        raise DatasetFormatError(f"{path}: {label_key!r} must be a list of {data.shape[0]} labels")
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DatasetFormatError(f"{path}: {label_key!r} must hold integer labels") from None
    if label_array.ndim != 1 or np.any(label_array < 0) or np.any(label_array >= classes):
        raise DatasetFormatError(f"{path}: {label_key!r} holds labels outside the dataset's classes")
    return data.reshape(-1, 3, 32, 32), label_array


def _cifar(directory: Path, train_files: list[str], test_file: str, label_key: bytes, classes: int) -> Split:
    def to_dataset(files: list[str]) -> ArrayDataset:
        arrays = [_cifar_arrays(directory / f, label_key, classes) for f in files]
        x = np.concatenate([a[0] for a in arrays]).astype(np.float32) / 255.0
        x = (x - CIFAR_MEAN[:, None, None]) / CIFAR_STD[:, None, None]
        return ArrayDataset(x.astype(np.float32), np.concatenate([a[1] for a in arrays]), classes)

    return to_dataset(train_files), to_dataset([test_file])


@DATASETS.register("cifar10")
def load_cifar10(spec: DatasetSpec) -> Split:
    """CIFAR-10 from the python batches (``cifar-10-python.tar.gz`` extracted: cifar-10-batches-py/)."""
    train = [f"data_batch_{i}" for i in range(1, 6)]
    directory = _require(spec.data_dir, [*train, "test_batch"], "CIFAR-10", "the python version's batches")
    return _cifar(directory, train, "test_batch", b"labels", 10)


@DATASETS.register("cifar100")
def load_cifar100(spec: DatasetSpec) -> Split:
    """CIFAR-100 (fine labels) from the python files (``cifar-100-python.tar.gz`` extracted)."""
    directory = _require(spec.data_dir, ["train", "test"], "CIFAR-100", "the python version's files")
    return _cifar(directory, ["train"], "test", b"fine_labels", 100)


def _leaf_json(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    writers: list[str] = []
    for path in sorted(directory.glob("*.json")):
        with path.open() as handle:
            blob = json.load(handle)
        for user in blob["users"]:
            data = blob["user_data"][user]
            xs.append(np.asarray(data["x"], dtype=np.float32).reshape(-1, 1, 28, 28))
            ys.append(np.asarray(data["y"], dtype=np.int64))
            writers += [user] * len(data["y"])
    ids = {w: i for i, w in enumerate(sorted(set(writers)))}
    return np.concatenate(xs), np.concatenate(ys), np.asarray([ids[w] for w in writers], dtype=np.int64)


@DATASETS.register("femnist")
def load_femnist(spec: DatasetSpec) -> Split:
    """FEMNIST from LEAF's JSON files: ``train/*.json`` and ``test/*.json`` under ``data_dir`` (LEAF's
    ``data/femnist/data/{train,test}`` after its preprocessing script), 62 classes, 28x28 grey.

    The writer of each sample is kept in ``ArrayDataset.groups`` for the ``natural`` partition.
    """
    directory = spec.data_dir
    origin = "LEAF's femnist data/train and data/test folders of *.json"
    base = _require(directory, ["train", "test"], "FEMNIST", origin)
    if not any((base / "train").glob("*.json")) or not any((base / "test").glob("*.json")):
        raise DatasetNotFoundError(
            f"FEMNIST not found: put *.json files ({origin}) in {base}/train and {base}/test"
        )
    x, y, groups = _leaf_json(base / "train")
    tx, ty, tgroups = _leaf_json(base / "test")
    return ArrayDataset(x, y, 62, groups), ArrayDataset(tx, ty, 62, tgroups)


def load_dataset(name: str, spec: DatasetSpec) -> Split:
    """Load registered dataset ``name`` as ``(train, test or None)``."""
    return DATASETS.get(name)(spec)


#: Per-channel mean and std of TinyImageNet's training images (scaled to [0, 1]); the usual constants.
TINY_IMAGENET_MEAN = np.array([0.4802, 0.4481, 0.3975], dtype=np.float32)
TINY_IMAGENET_STD = np.array([0.2302, 0.2265, 0.2262], dtype=np.float32)
TINY_IMAGENET_NPZ = "tiny-imagenet-200.npz"
_TINY_ORIGIN = (
    "the extracted tiny-imagenet-200 folder: train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
    f"val/val_annotations.txt; or {TINY_IMAGENET_NPZ} with uint8 x_train, x_val (n, 64, 64, 3) and "
    "int y_train, y_val"
)


@DATASETS.register("tinyimagenet")
def load_tiny_imagenet(spec: DatasetSpec) -> Split:
    """TinyImageNet (200 classes, 64x64 RGB) from local files; its validation set is the test set.

    Two layouts in ``data_dir``: the standard ``tiny-imagenet-200`` folder (``train/<wnid>/images/
    *.JPEG``; ``val/images/*.JPEG`` with ``val/val_annotations.txt``, tab-separated file name and
    wnid; classes from ``wnids.txt`` when present, else the sorted ``train`` folders), decoded with
    PIL (installed with matplotlib); or, used first when present, ``tiny-imagenet-200.npz`` with
    ``x_train``, ``x_val`` (uint8, ``(n, 64, 64, 3)``) and ``y_train``, ``y_val`` (class indices),
    which saves decoding 110 000 JPEGs every run. Pixels are scaled to [0, 1] and normalised per
    channel (:data:`TINY_IMAGENET_MEAN`, :data:`TINY_IMAGENET_STD`).
    """
    directory = spec.data_dir
    if directory is None:
        raise DatasetNotFoundError(
            f"TinyImageNet needs learning.data_dir: a directory holding {_TINY_ORIGIN}"
        )
    if (directory / TINY_IMAGENET_NPZ).exists():
        return _tiny_imagenet_npz(directory / TINY_IMAGENET_NPZ)
    _require(directory, ["train", "val/val_annotations.txt", "val/images"], "TinyImageNet", _TINY_ORIGIN)
    wnids_file = directory / "wnids.txt"
    if wnids_file.exists():
        wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    else:
        wnids = sorted(p.name for p in (directory / "train").iterdir() if p.is_dir())
    classes = {w: i for i, w in enumerate(wnids)}
    if not classes:
        raise DatasetNotFoundError(f"TinyImageNet not found: no class folders in {directory / 'train'}")
    train_files: list[Path] = []
    train_labels: list[int] = []
    for wnid, label in classes.items():
        files = sorted((directory / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise DatasetNotFoundError(
                f"TinyImageNet not found: no *.JPEG in {directory / 'train' / wnid / 'images'}"
            )
        train_files += files
        train_labels += [label] * len(files)
    val_files: list[Path] = []
    val_labels: list[int] = []
    annotations = directory / "val" / "val_annotations.txt"
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in classes:
            raise DatasetFormatError(
                f"{annotations}:{number}: expected '<file>\\t<wnid>\\t...' with a wnid of the train folders"
            )
        val_files.append(directory / "val" / "images" / fields[0])
        val_labels.append(classes[fields[1]])
    num_classes = len(classes)
    train = ArrayDataset(_tiny_images(train_files), np.asarray(train_labels, dtype=np.int64), num_classes)
    test = ArrayDataset(_tiny_images(val_files), np.asarray(val_labels, dtype=np.int64), num_classes)
    return train, test


def _tiny_normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 ``(n, H, W, 3)`` -> normalised float32 ``(n, 3, H, W)``."""
    x = pixels.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    x = (x - TINY_IMAGENET_MEAN[:, None, None]) / TINY_IMAGENET_STD[:, None, None]
    return x.astype(np.float32)


def _tiny_images(files: list[Path]) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        raise DatasetNotFoundError(
            f"decoding TinyImageNet's JPEGs needs PIL (pillow); "
            f"or provide {TINY_IMAGENET_NPZ} ({_TINY_ORIGIN})"
        ) from None
    images = []
    for path in files:
        if not path.exists():
            raise DatasetNotFoundError(f"TinyImageNet image not found: {path}")
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError):
            raise DatasetFormatError(f"{path}: not a readable image") from None
        if pixels.shape != (64, 64, 3):
            raise DatasetFormatError(
                f"{path}: expected a 64x64 image, got {pixels.shape[1]}x{pixels.shape[0]}"
            )
        images.append(pixels)
    return _tiny_normalise(np.stack(images))


def _tiny_imagenet_npz(path: Path) -> Split:
    try:
        with np.load(path, allow_pickle=False) as blob:
            arrays = {k: blob[k] for k in ("x_train", "y_train", "x_val", "y_val")}
    except KeyError as err:
        raise DatasetFormatError(
            f"{path}: missing array {err}; needs x_train, y_train, x_val, y_val"
        ) from None
    except (OSError, ValueError):
        raise DatasetFormatError(f"{path}: not a readable .npz file") from None
    for split in ("train", "val"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or y.shape != (x.shape[0],):
            raise DatasetFormatError(
                f"{path}: x_{split} must be uint8 (n, H, W, 3) with y_{split} of shape (n,), "
                f"got {x.dtype} {x.shape} and {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DatasetFormatError(f"{path}: y_{split} must hold class indices >= 0")
    num_classes = int(max(arrays["y_train"].max(initial=0), arrays["y_val"].max(initial=0))) + 1
    train = ArrayDataset(_tiny_normalise(arrays["x_train"]), arrays["y_train"].astype(np.int64), num_classes)
    test = ArrayDataset(_tiny_normalise(arrays["x_val"]), arrays["y_val"].astype(np.int64), num_classes)
    return train, test
