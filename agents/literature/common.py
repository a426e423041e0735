"""What the literature algorithms share: the train -> prune -> fine-tune schedule on the server, the
agent that runs a server-side strategy, and capability estimates from the system view."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from agents.base import Agent
from channels import shannon_rate_bps
from fedsimenv.actions import encode_decision
from fedsimenv.learning.local_sgd import PeriodicAveraging, State, base_cost, with_extra_bits
from fedsimenv.learning.plan import DeviceJob, ModelCost
from fedsimenv.learning.pruning import Masks, apply_masks, kept_parameters
from fedsimenv.learning.strategy import TrainingStrategy
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.sim.protocols import PROTOCOLS
from fedsimenv.view import SystemView

if TYPE_CHECKING:
    from fedsimenv.env import WirelessFLEnv

#: Smallest rate an agent encodes for a pruned device: rho = 0 means "unpruned" to the trainer.
MIN_ENCODED_RHO = 1e-3


def unpruned_round_time_s(view: SystemView) -> NDArray[np.float64]:
    """(N,) each device's round time with the unpruned model and an equal share B/N of the uplink:
    downlink + compute + upload. The capability measure of HeteroFL's levels, PruneFL's strong device
    and DWNP's wireless-aware budgets."""
    share_hz = view.bandwidth_hz / view.num_devices
    rate = shannon_rate_bps(share_hz, view.tx_power_w, view.channel_gain_linear, view.noise_psd_w_per_hz)
    result: NDArray[np.float64] = view.downlink_time_s + view.compute_latency_s + view.upload_bits / rate
    return result


def schedule_rounds(max_rounds: int | None, train_fraction: float) -> int:
    """Rounds of the training phase before the one pruning step: ``round(train_fraction * R)`` in
    [1, R]; an unknown episode length counts as 20 rounds (the scenarios' default)."""
    total = 20 if max_rounds is None else max_rounds
    return min(max(1, round(train_fraction * total)), total)


@torch.no_grad()
def masked_accuracy(trainer: TorchTrainer, masks: Mapping[str, torch.Tensor], device: int | None) -> float:
    """Accuracy of the global model under ``masks`` on device ``device``'s test split (the global test
    set for ``None`` or when the scenario has no per-device test splits)."""
    model = copy.deepcopy(trainer.model)
    apply_masks(model, masks)
    model.eval()
    x, y = trainer._test_x, trainer._test_y
    if device is not None and trainer.device_tests:
        index = torch.from_numpy(trainer.device_tests[device]).to(x.device)
        x, y = x[index], y[index]
    return float((model(x).argmax(dim=1) == y).float().mean())


class ScheduledStrategy(TrainingStrategy):
    """Train for ``train_rounds`` rounds, prune once on the server, fine-tune for the rest.

    Subclasses choose the server's permanent masks (:meth:`server_prune`) and, optionally, each
    device's masks in either phase (:meth:`device_masks`). Pruning zeroes the global model's pruned
    entries; since every later mask contains the server's, they stay zero (masked aggregation keeps
    the global value of an entry no device kept).

    Attributes:
        base_accuracy: Global test accuracy of the model just before pruning (the "Base Acc" of
            DWNP's tables for methods that train a base model first).
        base_device_accuracy: Per-device test accuracy of that model (when per-device splits exist).
        periodic: When set, local training averages W every ``periodic.r_w`` local iterations inside
            the round with ``periodic.recipe`` (:mod:`fedsimenv.learning.local_sgd`; DWNP's Alg. 1
            for every method of its tables), and the averagings' traffic is added to each device's
            round bits; ``None``: the trainer's ordinary local training.
    """

    periodic: PeriodicAveraging | None = None

    def __init__(self, train_rounds: int) -> None:
        self.train_rounds = train_rounds
        self.rounds_done = 0
        self.server_masks: Masks | None = None
        self.base_accuracy = math.nan
        self.base_device_accuracy: list[float] = []

    def reset(self, trainer: TorchTrainer) -> None:
        self.rounds_done = 0
        self.server_masks = None
        self.base_accuracy = math.nan
        self.base_device_accuracy = []

    @property
    def pruned(self) -> bool:
        return self.server_masks is not None

    def device_masks(self, trainer: TorchTrainer, device: int) -> Masks | None:
        """Device ``device``'s masks this round; by default the server's (None before pruning)."""
        return self.server_masks

    def masks(self, trainer: TorchTrainer, device: int, rho: float) -> Masks | None:
        masks = self.device_masks(trainer, device)
        return dict(masks) if masks else None

    def local_training(
        self, trainer: TorchTrainer, model: torch.nn.Module, jobs: Sequence[DeviceJob]
    ) -> Sequence[State] | None:
        if self.periodic is None:
            return None
        return self.periodic.train(trainer, model, jobs, self.rounds_done)

    def model_cost(self, trainer: TorchTrainer, device: int, masks: Masks) -> ModelCost | None:
        if self.periodic is None:
            return None
        cost = base_cost(trainer, masks, self.sparse_index_overhead)
        up, down = self.periodic.extra_bits(trainer, device, cost)
        return with_extra_bits(cost, up, down, trainer.download_bits())

    def server_prune(self, trainer: TorchTrainer) -> Masks:
        """The server's permanent masks, chosen once at the end of the training phase."""
        raise NotImplementedError

    def train_phase_round(self, trainer: TorchTrainer, arrived: Sequence[int]) -> None:
        """Extra server work after each training-phase round (e.g. hypernetwork updates)."""

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        self.rounds_done += 1
        if self.pruned:
            return
        self.train_phase_round(trainer, arrived)
        if self.rounds_done >= self.train_rounds:
            self.base_accuracy = trainer.evaluate()[0]
            self.base_device_accuracy = [
                masked_accuracy(trainer, {}, n) for n in range(len(trainer.device_tests))
            ]
            self.server_masks = self.server_prune(trainer)
            apply_masks(trainer.model, self.server_masks)

    def achieved_rho(self, trainer: TorchTrainer, device: int) -> float:
        """Fraction of parameters device ``device``'s coming masks remove."""
        masks = self.device_masks(trainer, device)
        if not masks:
            return 0.0
        return 1.0 - kept_parameters(trainer.model, masks) / trainer.total_params


def check_synchronous(protocol: str, agent: str) -> None:
    """Refuse a protocol whose jobs span rounds (``async``) for a server-side strategy.

    A :class:`ScheduledStrategy` acts between synchronous rounds: its schedule and pruning step run
    after each aggregation, and DWNP's Alg. 1 averages W every ``r_W`` and the hypernetwork every
    ``r_HN`` local iterations among devices that train in lockstep from one download. Under ``async``
    devices train from different, stale downloads and the trainer's buffered update bypasses these
    hooks, so the algorithm would silently not run: refused instead.

    Raises:
        ValueError: ``protocol`` keeps jobs across rounds (one line naming the field and the allowed
            values).
    """
    if PROTOCOLS.get(protocol).jobs_span_rounds:
        allowed = [name for name in PROTOCOLS.names() if not PROTOCOLS.get(name).jobs_span_rounds]
        raise ValueError(
            f"protocol.name: {protocol!r} is not supported by {agent} (its server-side strategy, e.g. "
            f"DWNP's in-round r_W / r_HN averaging, needs synchronous rounds); allowed values: "
            f"{', '.join(allowed)}"
        )


class StrategyAgent(Agent):
    """An agent whose algorithm runs on the server as a :class:`TrainingStrategy`: every device takes
    part with an equal bandwidth share, and its encoded pruning rate is what the strategy's mask
    removes (so the env's metrics report the achieved rate).

    Subclasses build the strategy in :meth:`make_strategy`.
    """

    def bind(self, env: WirelessFLEnv) -> None:
        trainer = env.trainer
        if not isinstance(trainer, TorchTrainer):
            raise TypeError(f"{type(self).__name__} needs the torch trainer, not {type(trainer).__name__}")
        check_synchronous(env.config.protocol.name, type(self).__name__)
        self.trainer = trainer
        self.strategy = self.make_strategy()
        trainer.use_strategy(self.strategy)

    def make_strategy(self) -> ScheduledStrategy:
        raise NotImplementedError

    def _require_bound(self) -> None:
        if not hasattr(self, "strategy"):
            raise RuntimeError(
                f"{type(self).__name__} runs on the server: call agent.bind(env) before env.reset() "
                "(fedsimenv.experiments.session.run_episode does)"
            )

    def rates(self) -> NDArray[np.float64]:
        """(N,) the pruning rate to encode for each device."""
        rho = np.array([self.strategy.achieved_rho(self.trainer, n) for n in range(self.context.num_devices)])
        return np.where(rho > 0, np.maximum(rho, MIN_ENCODED_RHO), 0.0)

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        self._require_bound()
        n = self.context.num_devices
        return encode_decision(np.ones(n, bool), self.rates(), np.ones(n), self.context.action)
