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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from fedsimenv.config import LearningConfig
from fedsimenv.learning.aggregation import masked_fedavg
from fedsimenv.learning.data import (
    ArrayDataset,
    dirichlet_partition,
    iid_partition,
    load_digits,
    train_test_split,
)
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.models import build_model
from fedsimenv.learning.pruning import PRUNING_METHODS, Masks, count_parameters, kept_parameters
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


TRAINERS: Registry[type[Trainer]] = Registry("trainer")


def _resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        warnings.warn("learning.device is 'cuda' but CUDA is not available; using the CPU", stacklevel=3)
        return torch.device("cpu")
    return torch.device(requested)


@TRAINERS.register("torch")
class TorchTrainer(Trainer):
    """Real PyTorch training: local SGD on each device's masked model, masked FedAvg, global test.

    Devices train one after another (sequential path). Pruning masks are computed from the current
    global weights; pruned entries are held at zero during local training.
    """

    def __init__(self, config: LearningConfig, num_devices: int) -> None:
        super().__init__(config, num_devices)
        self.device = _resolve_device(config.device)
        self.pruner = PRUNING_METHODS.get(config.pruning)()
        self._full = load_digits()
        self._model: torch.nn.Module | None = None
        self._pending: dict[int, Masks] = {}

    def reset(self, streams: EpisodeStreams) -> LearningResult:
        cfg = self.config
        split_rng = streams.numpy("partition")
        train, self.test = train_test_split(self._full, cfg.test_fraction, split_rng)
        if cfg.partition.method == "dirichlet":
            parts = dirichlet_partition(
                train.y,
                self.num_devices,
                cfg.partition.alpha,
                split_rng,
                cfg.partition.min_samples_per_device,
            )
        else:
            parts = iid_partition(len(train), self.num_devices, split_rng)
        self.clients: list[ArrayDataset] = [train.subset(p) for p in parts]
        self._num_samples = np.array([len(c) for c in self.clients], dtype=np.int64)
        self._generator = torch.Generator().manual_seed(streams.torch_seed("training"))
        self.input_shape: tuple[int, int, int] = tuple(train.x.shape[1:])
        self._model = build_model(
            cfg.model, self.input_shape, train.num_classes, self._generator, self.device
        )
        self.total_params = count_parameters(self._model)
        self._test_x = torch.from_numpy(self.test.x).to(self.device)
        self._test_y = torch.from_numpy(self.test.y).to(self.device)
        self._pending = {}
        accuracy, loss = self.evaluate()
        return LearningResult(accuracy=accuracy, loss=loss, num_trained=0)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            raise RuntimeError("call reset() before using the trainer")
        return self._model

    @property
    def num_samples(self) -> NDArray[np.int64]:
        return self._num_samples

    def download_bits(self) -> float:
        return float(self.total_params * self.config.bits_per_param)

    def prepare_round(self, pruning_rate: Mapping[int, float]) -> dict[int, ModelCost]:
        self._pending = {}
        costs: dict[int, ModelCost] = {}
        for device, rho in pruning_rate.items():
            masks = self.pruner.masks(self.model, float(rho), self._generator) if rho > 0 else {}
            masks = {k: m.to(self.device) for k, m in masks.items()}
            kept = kept_parameters(self.model, masks)
            # An unstructured mask travels with the weights: one bit per prunable weight.
            overhead = sum(m.numel() for m in masks.values()) if self.pruner.sparse_index_overhead else 0
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
        states, masks, weights = [], [], []
        for device in arrived:
            states.append(self._local_train(device, self._pending[device]))
            masks.append(self._pending[device])
            weights.append(float(self._num_samples[device]))
        if states:
            global_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(masked_fedavg(global_state, states, masks, weights))
        self._pending = {}
        accuracy, loss = self.evaluate()
        return LearningResult(accuracy=accuracy, loss=loss, num_trained=len(states))

    def _local_train(self, device: int, masks: Masks) -> dict[str, torch.Tensor]:
        cfg = self.config
        local = copy.deepcopy(self.model)
        params = dict(local.named_parameters())
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
        optimizer = torch.optim.SGD(local.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)
        data = self.clients[device]
        x_all = torch.from_numpy(data.x).to(self.device)
        y_all = torch.from_numpy(data.y).to(self.device)
        local.train()
        for _ in range(cfg.local_epochs):
            order = torch.randperm(len(data), generator=self._generator).to(self.device)
            for start in range(0, len(data), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(local(x_all[batch]), y_all[batch])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                with torch.no_grad():
                    for name, mask in masks.items():
                        params[name].mul_(mask)
        return {k: v.detach().clone() for k, v in local.state_dict().items()}

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Accuracy and mean cross-entropy of the global model on the global test set."""
        self.model.eval()
        logits = self.model(self._test_x)
        loss = float(F.cross_entropy(logits, self._test_y))
        accuracy = float((logits.argmax(dim=1) == self._test_y).float().mean())
        return accuracy, loss
