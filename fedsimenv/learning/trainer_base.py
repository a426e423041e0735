"""The trainer interface: the seam between the simulation and learning (real or surrogate).

Per round the env asks a trainer to plan the selected devices' jobs (:meth:`Trainer.plan_round`: a
:class:`~fedsimenv.learning.plan.RoundPlan` with each pruned model's exact FLOPs and upload bits, fed
to the timing plane, and its masks), then hands the plan back with the devices that arrived in time
(:meth:`Trainer.train_round`), which are trained and aggregated. Trainers are registered by name in
:data:`TRAINERS` (``torch``: :mod:`fedsimenv.learning.trainer`; ``surrogate``:
:mod:`fedsimenv.learning.surrogate`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedsimenv.config import LearningConfig
from fedsimenv.learning.plan import DeviceJob, LearningResult, ModelCost, RoundPlan
from fedsimenv.registry import Registry
from fedsimenv.seeding import EpisodeStreams


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
    def cost_at(self, rho: float) -> ModelCost:
        """The cost of the current model pruned to ``rho`` by the scenario's method (a query: no
        random stream is consumed and nothing is kept). ``cost_at(0.0)`` is the unpruned model."""

    @abstractmethod
    def plan_round(
        self,
        pruning_rate: Mapping[int, float],
        *,
        spans_rounds: bool = False,
        upload_value_bits: Mapping[int, int] | None = None,
    ) -> RoundPlan:
        """Prune the global model for each device starting a job (``{device: rho}``).

        Args:
            pruning_rate: The devices starting a job and their pruning rates.
            spans_rounds: The jobs may be trained in a later round (async protocol): each job then
                carries the global weights it downloaded.
            upload_value_bits: Bits per uploaded value of some devices (``RoundDecision.
                upload_value_bits``): their uploads are quantised to that width and priced exactly.
        """

    @abstractmethod
    def train_round(self, plan: RoundPlan, arrived: Sequence[int]) -> LearningResult:
        """Train the arrived devices' jobs of ``plan``, aggregate them, evaluate the global model.

        Raises:
            ValueError: an arrived device has no job in ``plan``.
        """

    #: Whether :meth:`train_async` is implemented (the env refuses protocol ``async`` otherwise).
    supports_async: bool = False

    def train_async(self, jobs: Sequence[DeviceJob], staleness: Sequence[int]) -> LearningResult:
        """Async protocol: train ``jobs`` (planned with ``spans_rounds=True``), each from the model
        it downloaded, and apply their staleness-weighted updates to the current global model."""
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
