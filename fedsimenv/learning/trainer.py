"""Trainers: the seam between the simulation and real learning.

A trainer owns the global model and the clients' data. Per round the env asks it for the cost of each
selected device's pruned model (:meth:`Trainer.prepare_round`: exact FLOPs and upload bits, fed to the
timing plane), then trains and aggregates only the devices that arrived in time
(:meth:`Trainer.train_round`). A real torch trainer and (later) a fast surrogate share this interface.
"""

from __future__ import annotations

import copy
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from fedsimenv.config import LearningConfig
from fedsimenv.learning.aggregation import AGGREGATORS, buffered_async_update
from fedsimenv.learning.cohort import (
    LocalJob,
    SGDConfig,
    draw_orders,
    prefer_batched,
    train_batched,
    train_sequential,
)
from fedsimenv.learning.data import (
    ArrayDataset,
    IntArray,
    device_test_split,
    train_test_split,
)
from fedsimenv.learning.datasets import DatasetSpec, load_dataset
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.models import build_model
from fedsimenv.learning.pruning import PRUNING_METHODS, Masks, count_parameters, kept_parameters
from fedsimenv.learning.strategy import TrainingStrategy
from fedsimenv.registry import Registry
from fedsimenv.seeding import EpisodeStreams


@dataclass(frozen=True)
class ModelCost:
    """What the timing plane needs to know about one device's pruned model."""

    forward_flops_per_sample: float
    upload_bits: float
    kept_params: int
    total_params: int

    @property
    def achieved_rho(self) -> float:
        """Fraction of parameters actually removed."""
        return 1.0 - self.kept_params / self.total_params


@dataclass(frozen=True)
class LearningResult:
    """Global-model metrics after a round's aggregation."""

    accuracy: float
    loss: float
    num_trained: int
    #: Per-device accuracy on test data following each device's label mix (when configured).
    device_accuracy: tuple[float, ...] = field(default=())


class Trainer(ABC):
    """Interface shared by every trainer (real or surrogate).

    Args:
        config: The scenario's learning section.
        num_devices: Devices in the cell.
    """

    def __init__(self, config: LearningConfig, num_devices: int) -> None:
        self.config = config
        self.num_devices = num_devices

    @abstractmethod
    def reset(self, streams: EpisodeStreams) -> LearningResult:
        """Start an episode: data split, fresh global model. Returns the initial global metrics."""

    @property
    @abstractmethod
    def num_samples(self) -> NDArray[np.int64]:
        """Local training samples per device."""

    @abstractmethod
    def download_bits(self) -> float:
        """Size in bits of the global model broadcast to the devices."""

    @abstractmethod
    def prepare_round(self, pruning_rate: Mapping[int, float]) -> dict[int, ModelCost]:
        """Prune the global model for each selected device (``{device: rho}``) and return its cost."""

    @abstractmethod
    def train_round(self, arrived: Sequence[int]) -> LearningResult:
        """Train the arrived devices' prepared sub-models, aggregate them, evaluate the global model."""

    def prepare_async(self, pruning_rate: Mapping[int, float]) -> dict[int, ModelCost]:
        """Async protocol: like :meth:`prepare_round` for jobs starting now, keeping jobs in flight.

        Raises:
            NotImplementedError: the trainer does not support the async protocol.
        """
        raise NotImplementedError(f"trainer {type(self).__name__} does not support protocol 'async'")

    def train_async(self, arrived: Sequence[int], staleness: Sequence[int]) -> LearningResult:
        """Async protocol: train the arrived jobs from the model each one downloaded and apply their
        staleness-weighted updates to the current global model."""
        raise NotImplementedError(f"trainer {type(self).__name__} does not support protocol 'async'")

    def state_dict(self) -> dict[str, Any]:
        """The learning state carried from round to round, as plain tensors (for checkpoints).

        Raises:
            NotImplementedError: the trainer cannot be checkpointed.
        """
        raise NotImplementedError(f"trainer {type(self).__name__} cannot be checkpointed")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        raise NotImplementedError(f"trainer {type(self).__name__} cannot be checkpointed")


TRAINERS: Registry[type[Trainer]] = Registry("trainer")


def _resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        warnings.warn("learning.device is 'cuda' but CUDA is not available; using the CPU", stacklevel=3)
        return torch.device("cpu")
    return torch.device(requested)


def partition(
    data: ArrayDataset, num_devices: int, config: LearningConfig, rng: np.random.Generator
) -> list[IntArray]:
    """Split ``data`` over the devices as ``config.partition`` says (kept for callers of this name:
    :func:`fedsimenv.learning.partition.partition_dataset` is the one implementation)."""
    from fedsimenv.learning.partition import partition_dataset

    return partition_dataset(data, num_devices, config.partition, rng)


@TRAINERS.register("torch")
class TorchTrainer(Trainer):
    """Real PyTorch training: local SGD on each device's masked model, aggregation, global test.

    Dataset, partition, model (and its norm), pruning method, aggregation rule and the local-training
    path all come from the scenario's ``learning`` section. Pruning masks are computed from the
    current global weights (data-driven criteria use the device's first local batch); pruned entries
    are held at zero during local training. The arrived devices train together in one batched
    computation when ``cohort`` allows (``auto``: :func:`~fedsimenv.learning.cohort.prefer_batched`),
    else one after another; both paths give the same weights up to float rounding.
    """

    def __init__(self, config: LearningConfig, num_devices: int) -> None:
        super().__init__(config, num_devices)
        self.device = _resolve_device(config.device)
        self.pruner = PRUNING_METHODS.get(config.pruning)()
        self.aggregate = AGGREGATORS.get(config.aggregation)
        synthetic = config.synthetic
        spec = DatasetSpec(
            data_dir=Path(config.data_dir) if config.data_dir else None,
            num_samples=synthetic.num_samples,
            num_classes=synthetic.num_classes,
            input_shape=synthetic.input_shape,
            noise_std=synthetic.noise_std,
            seed=synthetic.seed,
        )
        self._full, self._official_test = load_dataset(config.dataset, spec)
        self._model: torch.nn.Module | None = None
        self._pending: dict[int, Masks] = {}
        self.strategy: TrainingStrategy | None = None

    def use_strategy(self, strategy: TrainingStrategy | None) -> None:
        """Install a server-side :class:`~fedsimenv.learning.strategy.TrainingStrategy` (literature
        algorithms that choose masks themselves); it takes effect from the next ``reset``."""
        self.strategy = strategy

    def reset(self, streams: EpisodeStreams) -> LearningResult:
        cfg = self.config
        split_rng = streams.numpy("partition")
        if self._official_test is None:
            train, self.test = train_test_split(self._full, cfg.test_fraction, split_rng)
        else:
            train, self.test = self._full, self._official_test
        parts = partition(train, self.num_devices, cfg, split_rng)
        self.clients: list[ArrayDataset] = [train.subset(p) for p in parts]
        self._num_samples = np.array([len(c) for c in self.clients], dtype=np.int64)
        self._client_x = [torch.from_numpy(c.x).to(self.device) for c in self.clients]
        self._client_y = [torch.from_numpy(c.y).to(self.device) for c in self.clients]
        self.device_tests: list[IntArray] = []
        if cfg.partition.per_device_test:
            ratio = cfg.test_fraction / (1.0 - cfg.test_fraction)
            self.device_tests = [
                device_test_split(
                    self.test.y, c.y, max(1, round(ratio * len(c))), train.num_classes, split_rng
                )
                for c in self.clients
            ]
        self._generator = torch.Generator().manual_seed(streams.torch_seed("training"))
        self.input_shape: tuple[int, int, int] = tuple(train.x.shape[1:])
        self._model = build_model(
            cfg.model, self.input_shape, train.num_classes, self._generator, self.device, norm=cfg.norm
        )
        self.total_params = count_parameters(self._model)
        self._test_x = torch.from_numpy(self.test.x).to(self.device)
        self._test_y = torch.from_numpy(self.test.y).to(self.device)
        self._pending = {}
        self._job_start: dict[int, dict[str, torch.Tensor]] = {}
        if self.strategy is not None:
            self.strategy.reset(self)
        return self._result(0)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            raise RuntimeError("call reset() before using the trainer")
        return self._model

    @property
    def num_samples(self) -> NDArray[np.int64]:
        return self._num_samples

    @property
    def generator(self) -> torch.Generator:
        """The episode's torch stream (strategies draw from it, never from a global RNG)."""
        return self._generator

    def client_data(self, device: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Device ``device``'s local training inputs and labels (on the model's device)."""
        return self._client_x[device], self._client_y[device]

    def download_bits(self) -> float:
        return float(self.total_params * self.config.bits_per_param)

    def prepare_round(self, pruning_rate: Mapping[int, float]) -> dict[int, ModelCost]:
        self._pending = {}
        costs: dict[int, ModelCost] = {}
        strategy = self.strategy
        for device, rho in pruning_rate.items():
            masks: Masks = {}
            # rho = 0 always means the unpruned model (the env's system view asks for it).
            chosen = strategy.masks(self, device, float(rho)) if strategy is not None and rho > 0 else None
            if chosen is not None:
                masks = chosen
            elif rho > 0:
                size = self.config.batch_size
                batch = (self._client_x[device][:size], self._client_y[device][:size])
                masks = self.pruner.masks(self.model, float(rho), self._generator, batch)
            masks = {k: m.to(self.device) for k, m in masks.items()}
            kept = kept_parameters(self.model, masks)
            # An unstructured mask travels with the weights: one bit per prunable weight.
            sparse = strategy.sparse_index_overhead if chosen is not None and strategy else None
            sparse = self.pruner.sparse_index_overhead if sparse is None else sparse
            overhead = sum(m.numel() for m in masks.values()) if sparse else 0
            costs[device] = ModelCost(
                forward_flops_per_sample=forward_flops_per_sample(self.model, self.input_shape, masks),
                upload_bits=float(kept * self.config.bits_per_param + overhead),
                kept_params=kept,
                total_params=self.total_params,
            )
            self._pending[device] = masks
        return costs

    def train_round(self, arrived: Sequence[int]) -> LearningResult:
        missing = [k for k in arrived if k not in self._pending]
        if missing:
            raise ValueError(f"devices {missing} arrived but were not prepared this round")
        jobs = self._local_jobs(arrived)
        previous = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()} if self.strategy else {}
        )
        if jobs:
            states = self._train(self.model, jobs)
            global_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            weights = [float(self._num_samples[k]) for k in arrived]
            self.model.load_state_dict(self.aggregate(global_state, states, [j.masks for j in jobs], weights))
        self._pending = {}
        if self.strategy is not None:
            self.strategy.after_round(self, list(arrived), previous)
        return self._result(len(jobs))

    def prepare_async(self, pruning_rate: Mapping[int, float]) -> dict[int, ModelCost]:
        in_flight = self._pending
        costs = self.prepare_round(pruning_rate)
        # One snapshot of the global model, shared by every job that starts from it.
        snapshot = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        for device in pruning_rate:
            self._job_start[device] = snapshot
        self._pending = {**in_flight, **self._pending}
        return costs

    def train_async(self, arrived: Sequence[int], staleness: Sequence[int]) -> LearningResult:
        missing = [k for k in arrived if k not in self._pending or k not in self._job_start]
        if missing:
            raise ValueError(f"devices {missing} arrived but no job was started for them")
        # Jobs that downloaded the same global model train together from it.
        groups: dict[int, list[int]] = {}
        for k in arrived:
            groups.setdefault(id(self._job_start[k]), []).append(k)
        order: list[int] = []
        states: list[dict[str, torch.Tensor]] = []
        for devices in groups.values():
            local = copy.deepcopy(self.model)
            local.load_state_dict(self._job_start[devices[0]])
            states.extend(self._train(local, self._local_jobs(devices)))
            order.extend(devices)
        if order:
            tau = dict(zip(arrived, staleness, strict=True))
            global_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(
                buffered_async_update(
                    global_state,
                    [self._job_start[k] for k in order],
                    states,
                    [self._pending[k] for k in order],
                    [float(self._num_samples[k]) for k in order],
                    [int(tau[k]) for k in order],
                )
            )
        for k in arrived:
            self._pending.pop(k, None)
            self._job_start.pop(k, None)
        return self._result(len(order))

    def state_dict(self) -> dict[str, Any]:
        # A fresh optimiser is built for each local training, so the weights and the generator that
        # drives pruning and batch order are the whole state carried between synchronous rounds.
        # (Async jobs in flight are not captured: checkpoints are off under the async protocol.)
        return {
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self._generator.set_state(state["generator"])

    def _local_jobs(self, devices: Sequence[int]) -> list[LocalJob]:
        """The prepared local-training jobs of ``devices`` (their data, masks and batch orders)."""
        epochs = self.config.local_epochs
        return [
            LocalJob(
                x=self._client_x[k],
                y=self._client_y[k],
                masks=self._pending[k],
                orders=draw_orders(int(self._num_samples[k]), epochs, self._generator),
            )
            for k in devices
        ]

    def _train(self, model: torch.nn.Module, jobs: Sequence[LocalJob]) -> Sequence[dict[str, torch.Tensor]]:
        """Run ``jobs`` from ``model``'s weights, batched when the cohort allows it."""
        cfg = self.config
        sgd = SGDConfig(cfg.learning_rate, cfg.momentum, cfg.batch_size)
        batched = cfg.cohort == "batched" or (
            cfg.cohort == "auto" and prefer_batched(model, self.input_shape, cfg.batch_size, self.device)
        )
        return (train_batched if batched else train_sequential)(model, jobs, sgd)

    def _result(self, num_trained: int) -> LearningResult:
        accuracy, loss = self.evaluate()
        device_accuracy = tuple(self.evaluate_device(k) for k in range(len(self.device_tests)))
        return LearningResult(accuracy, loss, num_trained, device_accuracy)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Accuracy and mean cross-entropy of the global model on the global test set."""
        self.model.eval()
        logits = self.model(self._test_x)
        loss = float(F.cross_entropy(logits, self._test_y))
        accuracy = float((logits.argmax(dim=1) == self._test_y).float().mean())
        return accuracy, loss

    @torch.no_grad()
    def evaluate_device(self, device: int) -> float:
        """Global-model accuracy on ``device``'s own test split (``partition.per_device_test``)."""
        index = torch.from_numpy(self.device_tests[device]).to(self.device)
        self.model.eval()
        logits = self.model(self._test_x[index])
        return float((logits.argmax(dim=1) == self._test_y[index]).float().mean())
