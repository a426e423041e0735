"""Training strategies: server-side algorithm hooks of the torch trainer.

Some federated pruning algorithms are more than "a pruning rate per device and round": the *server*
decides each device's mask from state of its own (PruneFL's adaptive kept set, DWNP's hypernetwork,
a one-shot mask fixed after training) and may do work of its own after aggregation (train a
hypernetwork, prune the global model permanently). A :class:`TrainingStrategy` is that server logic.
An agent that needs one builds it and installs it with :meth:`TorchTrainer.use_strategy`; the trainer
then calls its hooks at fixed points of every round:

* :meth:`TrainingStrategy.reset` at the end of ``trainer.reset`` (data split and model exist);
* :meth:`TrainingStrategy.masks` in ``plan_round`` for each device starting a job with ``rho > 0``, in
  place of the scenario's pruning method (return ``None`` to fall back to it). ``rho = 0`` always
  means the unpruned model, so an agent whose strategy prunes sends the achieved rate (> 0);
* :meth:`TrainingStrategy.model_cost` in ``plan_round`` for every job (``None``: the trainer's own
  count), so a strategy that compresses its transfers (GWEP's quantisation) reports their exact bits;
* :meth:`TrainingStrategy.broadcast_state` in ``train_round`` before local training: the weights the
  devices downloaded and start from (``None``: the global model as it is);
* :meth:`TrainingStrategy.local_training` in ``train_round``: the round's local training itself
  (``None``: the trainer's cohort training), for algorithms that communicate inside the round
  (DWNP's W averaging every r_W local iterations and its interleaved hypernetwork steps);
* :meth:`TrainingStrategy.uploaded_states` in ``train_round`` after local training, before
  aggregation: what the server receives from each device (e.g. quantised updates);
* :meth:`TrainingStrategy.after_round` in ``train_round`` after aggregation, before evaluation;
* :meth:`TrainingStrategy.server_time_s` and :meth:`TrainingStrategy.metrics` when the round's
  :class:`~fedsimenv.learning.plan.LearningResult` is built (server compute time, extra metrics).

The strategy lives in the learning plane's terms (a model, masks, the clients' data); it never sees
the wireless simulation. What it needs from the timing plane (e.g. PruneFL's per-parameter times) the
agent passes in from its :class:`~fedsimenv.view.SystemView`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from fedsimenv.learning.pruning import Masks

if TYPE_CHECKING:
    from torch import nn

    from fedsimenv.learning.plan import DeviceJob, ModelCost
    from fedsimenv.learning.trainer import TorchTrainer

State = dict[str, torch.Tensor]


class TrainingStrategy:
    """Base class of server-side strategies; every hook is a no-op by default.

    Attributes:
        sparse_index_overhead: Whether the masks this strategy returns are unstructured (an upload
            then carries one mask bit per prunable weight, as for unstructured pruning methods).
    """

    sparse_index_overhead: bool = False
    #: Whether :meth:`uploaded_states` quantises the uploads itself (at ``value_bits`` where the round
    #: decided a width); otherwise the trainer quantises the decided widths after it.
    quantises_uploads: bool = False

    def reset(self, trainer: TorchTrainer) -> None:
        """A new episode started: the trainer's data split and fresh global model are in place."""

    def masks(self, trainer: TorchTrainer, device: int, rho: float) -> Masks | None:
        """Device ``device``'s keep-masks for this round, or ``None`` for the scenario's pruner."""
        return None

    def model_cost(self, trainer: TorchTrainer, device: int, masks: Masks) -> ModelCost | None:
        """Device ``device``'s exact cost under ``masks``, or ``None`` for the trainer's count."""
        return None

    def broadcast_state(self, trainer: TorchTrainer) -> State | None:
        """The weights every device of this round downloads (``None``: the global model itself)."""
        return None

    def local_training(
        self, trainer: TorchTrainer, model: nn.Module, jobs: Sequence[DeviceJob]
    ) -> Sequence[State] | None:
        """Train ``jobs`` from ``model`` (the downloaded weights; not to be modified) and return each
        job's final state, or ``None`` for the trainer's own cohort training."""
        return None

    def uploaded_states(
        self,
        trainer: TorchTrainer,
        devices: Sequence[int],
        start: Mapping[str, torch.Tensor],
        states: Sequence[State],
        masks: Sequence[Masks],
        value_bits: Sequence[int | None] | None = None,
    ) -> Sequence[State]:
        """What the server receives from ``devices`` (trained ``states`` from the downloaded ``start``);
        by default the trained states themselves. ``value_bits``: each upload's decided bit width
        (None: not decided), for strategies that quantise (:attr:`quantises_uploads`)."""
        return states

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        """Called after aggregation; ``previous`` is the global state before it (a copy)."""

    def server_time_s(self) -> float:
        """Seconds the server computed for the round just aggregated (its own training or pruning);
        the env adds them to the round (0 by default)."""
        return 0.0

    def metrics(self, trainer: TorchTrainer) -> dict[str, float]:
        """Extra per-round metrics of the algorithm (finite floats), logged beside the standard ones
        (e.g. Sub-FedAvg's personalised accuracy). Called after each round's evaluation."""
        return {}
