"""PruneFL (Jiang et al., "Model Pruning Enables Efficient Federated Learning on Edge Devices", TNNLS
2022): two-stage adaptive unstructured pruning.

1. **Initial pruning** on one strong device before federated training: it trains the full model on
   its own data and prunes it by global magnitude; the pruned model is the starting global model.
2. **Adaptive pruning** during FL: every ``K`` rounds the server re-chooses the kept set of weights
   (pruned weights may come back) to maximise the empirical loss decrease per unit of round time,

       max over M  of  sum_{j in M} g_j^2 / (c + sum_{j in M} t_j),

   with ``g_j`` the gradient of weight j (accumulated squared over the interval), ``t_j`` the time one
   more kept weight adds to a round and ``c`` the time that does not depend on the kept set. For a
   ratio objective the optimum is a prefix of the weights sorted by ``g_j^2 / t_j`` (Dinkelbach: j is
   in the optimum iff ``g_j^2 > F* t_j``), so the paper's greedy, which scans that order and keeps the
   best prefix, is exact; :func:`greedy_kept_set`.

Time costs from the simulator's model (SystemView of the coming round), for the reference device:
``t_j = tau * 3 E D * 2 * uses_j + bits_per_param / r`` (compute: the weight's FLOPs per sample,
``2 * uses_j`` with ``uses_j`` the output positions of its layer, at the device's measured time per
FLOP ``tau = A / F``, A the unpruned compute latency, F the unpruned FLOPs per sample; upload: its
bits at the device's rate with an equal bandwidth share) and ``c`` = downlink time + the compute and
upload time of everything that is never pruned (biases, norms, the one-bit-per-weight mask).

Left open by the paper and chosen here: the reference device is the slowest one at the unpruned
model (a synchronous round waits for it; PruneFL's devices were identical); ``g_j`` is the gradient
of the global model on one minibatch of each arrived device, squared and summed over the rounds since
the last reconfiguration (PruneFL's devices send their accumulated gradients); the initial stage
trains ``initial_epochs`` local epochs on the strong device (the fastest at the unpruned model) and
prunes to ``initial_rho`` at once, and its time is not simulated; the kept set never falls below
``1 - rho_max`` of the parameters (what the action can encode); ``K = 5`` rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from agents.base import AGENTS
from agents.literature.common import ScheduledStrategy, StrategyAgent, unpruned_round_time_s
from channels import shannon_rate_bps
from fedsimenv.learning.cohort import LocalJob, SGDConfig, draw_orders, train_sequential
from fedsimenv.learning.flops import forward_flops_per_sample, layer_costs
from fedsimenv.learning.pruning import GlobalMagnitudePruning, Masks, apply_masks, prunable_weights
from fedsimenv.learning.trainer import TorchTrainer


def greedy_kept_set(
    importance: NDArray[np.float64], time_s: NDArray[np.float64], fixed_time_s: float, min_kept: int = 1
) -> NDArray[np.bool_]:
    """PruneFL's kept set: maximise ``sum(importance[M]) / (fixed_time_s + sum(time_s[M]))``.

    Scans the weights by ``importance / time_s`` (descending; ties by index) and keeps the best
    prefix of at least ``min_kept`` weights, which is the exact optimum for positive times.
    """
    ratio = importance / time_s
    order = np.lexsort((np.arange(len(ratio)), -ratio))
    gain = np.cumsum(importance[order])
    cost = fixed_time_s + np.cumsum(time_s[order])
    value = gain / cost
    best = min_kept - 1 + int(np.argmax(value[min_kept - 1 :]))
    kept = np.zeros(len(ratio), dtype=bool)
    kept[order[: best + 1]] = True
    return kept


class PruneFLStrategy(ScheduledStrategy):
    """Server side of PruneFL: initial pruning, accumulated squared gradients, reconfiguration.

    Args:
        interval_rounds: K, rounds between reconfigurations.
        initial_rho: Rate of the initial pruning on the strong device.
        initial_epochs: Local epochs of the strong device before it prunes.
        min_density: Smallest kept share of the prunable weights.
    """

    sparse_index_overhead = True

    def __init__(self, interval_rounds: int, initial_rho: float, initial_epochs: int, min_density: float):
        super().__init__(train_rounds=0)
        self.interval_rounds = interval_rounds
        self.initial_rho = initial_rho
        self.initial_epochs = initial_epochs
        self.min_density = min_density
        self.strong_device: int | None = None
        self.time_model: tuple[float, float, float] | None = None  # (A s, s per bit, downlink s)

    def reset(self, trainer: TorchTrainer) -> None:
        super().reset(trainer)
        self.server_masks = None
        self.initialised = False
        self.squared_grads: dict[str, torch.Tensor] = {}

    def initialise(self, trainer: TorchTrainer, strong_device: int) -> None:
        """Stage 1: the strong device trains the full model and prunes it by global magnitude."""
        cfg = trainer.config
        x, y = trainer.client_data(strong_device)
        job = LocalJob(x, y, {}, draw_orders(len(y), self.initial_epochs, trainer.generator))
        state = train_sequential(
            trainer.model, [job], SGDConfig(cfg.learning_rate, cfg.momentum, cfg.batch_size)
        )[0]
        trainer.model.load_state_dict(state)
        self.server_masks = GlobalMagnitudePruning().masks(trainer.model, self.initial_rho, trainer.generator)
        apply_masks(trainer.model, self.server_masks)
        self.initialised = True

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        self.rounds_done += 1
        self._accumulate(trainer, arrived)
        if (
            self.rounds_done % self.interval_rounds == 0
            and self.time_model is not None
            and self.squared_grads
        ):
            self.server_masks = self.reconfigure(trainer)
            apply_masks(trainer.model, self.server_masks)
            self.squared_grads = {}

    def _accumulate(self, trainer: TorchTrainer, arrived: Sequence[int]) -> None:
        model = trainer.model
        weights = prunable_weights(model)
        for k in arrived:
            x, y = trainer.client_data(k)
            pick = torch.randperm(len(y), generator=trainer.generator)[: trainer.config.batch_size]
            pick = pick.to(x.device)
            loss = F.cross_entropy(model(x[pick]), y[pick])
            grads = torch.autograd.grad(loss, list(weights.values()))
            for name, g in zip(weights, grads, strict=True):
                sq = g.detach() ** 2
                self.squared_grads[name] = self.squared_grads.get(name, torch.zeros_like(sq)) + sq

    def per_weight_time_s(self, trainer: TorchTrainer) -> tuple[dict[str, float], float]:
        """``t_j`` of each prunable layer's weights and the fixed time ``c``, from the time model."""
        assert self.time_model is not None
        compute_s, s_per_bit, downlink_s = self.time_model
        model = trainer.model
        full_flops = forward_flops_per_sample(model, trainer.input_shape)
        s_per_flop = compute_s / full_flops  # the device's measured time per forward FLOP of a round
        bits = trainer.config.bits_per_param
        weights = prunable_weights(model)
        costs = layer_costs(model, trainer.input_shape)
        per_weight: dict[str, float] = {}
        weight_flops = 0.0
        for name, w in weights.items():
            layer = costs[name.removesuffix(".weight")]
            per_weight[name] = s_per_flop * 2.0 * layer.weight_macs / w.numel() + bits * s_per_bit
            weight_flops += 2.0 * layer.weight_macs
        prunable = sum(w.numel() for w in weights.values())
        fixed_params = trainer.total_params - prunable
        fixed = (
            downlink_s
            + s_per_flop * (full_flops - weight_flops)
            + (fixed_params * bits + prunable) * s_per_bit
        )
        return per_weight, fixed

    def reconfigure(self, trainer: TorchTrainer) -> Masks:
        """Stage 2: the kept set maximising squared-gradient gain per unit of round time."""
        per_weight, fixed = self.per_weight_time_s(trainer)
        names = list(self.squared_grads)
        importance = torch.cat([self.squared_grads[n].flatten() for n in names]).double().cpu().numpy()
        time_s = np.concatenate([np.full(self.squared_grads[n].numel(), per_weight[n]) for n in names])
        min_kept = max(1, int(np.ceil(self.min_density * len(importance))))
        kept = torch.from_numpy(greedy_kept_set(importance, time_s, fixed, min_kept))
        masks: Masks = {}
        start = 0
        for n in names:
            size = self.squared_grads[n].numel()
            masks[n] = (
                kept[start : start + size].view_as(self.squared_grads[n]).to(self.squared_grads[n].device)
            )
            start += size
        return masks


@AGENTS.register("prunefl")
class PruneFLAgent(StrategyAgent):
    """PruneFL: initial pruning on the strongest device, then adaptive unstructured pruning every
    ``interval_rounds`` rounds with time costs from the system view. All devices, equal shares."""

    interval_rounds: ClassVar[int] = 5
    initial_rho: ClassVar[float] = 0.5
    initial_epochs: ClassVar[int] = 1

    def make_strategy(self) -> ScheduledStrategy:
        # Prunable weights may not fall below what the action can encode.
        min_density = 1.0 - 0.95 * self.context.action.rho_max
        return PruneFLStrategy(self.interval_rounds, self.initial_rho, self.initial_epochs, min_density)

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        self._require_bound()
        strategy = self.strategy
        assert isinstance(strategy, PruneFLStrategy)
        view = self.context.view()
        times = unpruned_round_time_s(view)
        reference = int(np.argmax(times))
        share_hz = view.bandwidth_hz / view.num_devices
        rate = shannon_rate_bps(
            share_hz, view.tx_power_w[reference], view.channel_gain_linear[reference], view.noise_psd_w_per_hz
        )
        strategy.time_model = (
            float(view.compute_latency_s[reference]),
            1.0 / float(rate),
            float(view.downlink_time_s[reference]),
        )
        if not strategy.initialised:
            strategy.initialise(self.trainer, int(np.argmin(times)))
        return super().act(observation, info)
