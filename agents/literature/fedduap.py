"""FedDUAP (Zhang et al., "FedDUAP: Federated Learning with Dynamic Update and Adaptive Pruning Using
Shared Data on the Server", IJCAI 2022).

The server holds a **small shared dataset** (non-sensitive data, e.g. from users who consent) and
uses it twice:

1. **Dynamic server update** every round: after the devices' updates are aggregated into ``w'``, the
   server trains a copy on its data (``server_epochs`` of SGD, under the current mask) into ``w_s``
   and the new global model is ``w' + lambda_t (w_s - w')``. The weight ``lambda_t`` follows the
   paper's three dependencies: it grows with the share of the server's data in the round's data
   (``n_0 / (n_0 + n')``), shrinks as the model gets accurate (``1 - acc_t``, the aggregated model's
   accuracy on the server data) and shrinks as the server's label distribution departs from the
   round's devices' (``1 - TV(P_0, P')``, total variation; FedDUAP's devices share their label
   statistics):

       lambda_t = clip(C * n_0 / (n_0 + n') * (1 - acc_t) * (1 - TV(P_0, P')), 0, 1)

   (:func:`duap_server_weight`; ``C = 1``). The exact functional form of the paper's weighting is
   not reproduced here (only its monotone dependencies, from the survey's summary): this product is
   our choice.
2. **Adaptive pruning** once, at the end of ``train_fraction`` of the rounds: structured filter
   pruning by **feature-map rank** (HRank, Lin et al. 2020: a filter whose output maps have a low
   average rank on the server data carries little information) at a **layer-adaptive rate**: layer
   l with normalised mean rank ``q_l`` (rank / min(H, W), averaged over channels and samples) is
   pruned at ``r_l = clip(target * u_l / mean(u), 0, 0.9)`` with ``u_l = 1 - q_l`` (layers whose maps
   are more redundant lose more channels; the paper derives its per-layer rates from the loss's
   Hessian via inertial-manifold theory, which is not reproduced). Only convolution-produced groups
   are pruned.

The **server's compute time** is counted in the round: the FLOPs of its training (3 x forward FLOPs
of the masked model per sample and epoch) and of the rank pass, at ``server_flops_per_s``
(default 1e11 FLOP/s, an edge server; the scenario has no server model), are returned by
:meth:`FedDUAPStrategy.server_time_s` and the env moves the simulated clock on by that much.

Left open / chosen here (agent class attributes): server data = ``server_fraction`` (5%) of the
devices' training data drawn uniformly from their union (so it overlaps device data, like data
volunteered by users); ``server_epochs = 1``; pruning ``target = 0.3`` of the conv channels on
average; ``rank_samples = 32`` server samples for the ranks; ``train_fraction = 1/2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from agents.base import AGENTS
from agents.literature.channel_layout import ChannelLayout
from agents.literature.common import ScheduledStrategy, StrategyAgent, schedule_rounds
from agents.literature.conv_groups import conv_producers, full_gates, remove_lowest
from fedsimenv.learning.cohort import LocalJob, SGDConfig, draw_orders, train_sequential
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.pruning import Masks
from fedsimenv.learning.trainer import TorchTrainer

#: Largest share of one layer's channels the layer-adaptive rate removes.
MAX_LAYER_RATE = 0.9


def total_variation(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    """``0.5 * sum |p - q|`` of two distributions (normalised here)."""
    p = np.asarray(p, dtype=float) / np.sum(p)
    q = np.asarray(q, dtype=float) / np.sum(q)
    return float(0.5 * np.abs(p - q).sum())


def duap_server_weight(
    server_samples: int,
    device_samples: int,
    accuracy: float,
    server_labels: NDArray[np.float64],
    device_labels: NDArray[np.float64],
    scale: float = 1.0,
) -> float:
    """FedDUAP's dynamic weight of the server update (see the module docstring)."""
    share = server_samples / (server_samples + device_samples)
    similarity = 1.0 - total_variation(server_labels, device_labels)
    return float(np.clip(scale * share * (1.0 - accuracy) * similarity, 0.0, 1.0))


def layer_adaptive_rates(mean_rank: Sequence[float], target: float) -> list[float]:
    """``r_l = clip(target * u_l / mean(u), 0, MAX_LAYER_RATE)``, ``u_l = 1 - mean_rank[l]`` (ranks
    normalised to [0, 1]); the uniform ``target`` when no layer is redundant."""
    redundancy = 1.0 - np.asarray(mean_rank, dtype=float)
    if redundancy.mean() <= 0:
        return [min(target, MAX_LAYER_RATE)] * len(redundancy)
    return [float(r) for r in np.clip(target * redundancy / redundancy.mean(), 0.0, MAX_LAYER_RATE)]


@torch.no_grad()
def feature_map_ranks(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """Per output channel of conv ``layer``, the rank of its (H, W) output map averaged over ``x``,
    normalised by ``min(H, W)`` (HRank's criterion)."""
    captured: list[torch.Tensor] = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        handle.remove()
        model.train(was_training)
    maps = captured[0].float().cpu()  # (B, C, H, W)
    ranks = torch.linalg.matrix_rank(maps).float()  # (B, C)
    result: torch.Tensor = ranks.mean(dim=0) / min(maps.shape[-2:])
    return result


class FedDUAPStrategy(ScheduledStrategy):
    """Server data, dynamic server update every round, one rank-based adaptive pruning."""

    def __init__(
        self,
        train_rounds: int,
        server_fraction: float,
        server_epochs: int,
        target: float,
        rank_samples: int,
        server_flops_per_s: float,
    ) -> None:
        super().__init__(train_rounds)
        if not 0.0 < server_fraction < 1.0:
            raise ValueError(f"FedDUAP server_fraction must be in (0, 1), got {server_fraction}")
        if not 0.0 <= target < MAX_LAYER_RATE:
            raise ValueError(f"FedDUAP target must be in [0, {MAX_LAYER_RATE}), got {target}")
        self.server_fraction = server_fraction
        self.server_epochs = server_epochs
        self.target = target
        self.rank_samples = rank_samples
        self.server_flops_per_s = server_flops_per_s
        self._server_flops = 0.0
        self.weights: list[float] = []
        self.layer_rates: list[float] = []

    def reset(self, trainer: TorchTrainer) -> None:
        super().reset(trainer)
        xs = [trainer.client_data(k)[0] for k in range(trainer.num_devices)]
        ys = [trainer.client_data(k)[1] for k in range(trainer.num_devices)]
        x_all, y_all = torch.cat(xs), torch.cat(ys)
        size = max(1, round(self.server_fraction * len(y_all)))
        pick = torch.randperm(len(y_all), generator=trainer.generator)[:size].to(x_all.device)
        self.server_x, self.server_y = x_all[pick], y_all[pick]
        self.num_classes = int(trainer.test.num_classes)
        self.server_labels = self._histogram(self.server_y)
        self.device_labels = [self._histogram(y) for y in ys]
        self._server_flops = 0.0
        self.weights = []
        self.layer_rates = []

    def _histogram(self, y: torch.Tensor) -> NDArray[np.float64]:
        return np.bincount(y.cpu().numpy(), minlength=self.num_classes).astype(float)

    @torch.no_grad()
    def server_accuracy(self, model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        accuracy = float((model(self.server_x).argmax(dim=1) == self.server_y).float().mean())
        model.train(was_training)
        return accuracy

    def server_update(self, trainer: TorchTrainer, arrived: Sequence[int]) -> None:
        """``w <- w + lambda_t (w_s - w)``, ``w_s`` the server's training of the aggregated model."""
        if not arrived:
            return
        device_samples = int(sum(trainer.num_samples[k] for k in arrived))
        device_labels = np.sum([self.device_labels[k] for k in arrived], axis=0)
        weight = duap_server_weight(
            len(self.server_y),
            device_samples,
            self.server_accuracy(trainer.model),
            self.server_labels,
            device_labels,
        )
        self.weights.append(weight)
        cfg = trainer.config
        masks = dict(self.server_masks or {})
        job = LocalJob(
            self.server_x,
            self.server_y,
            masks,
            draw_orders(len(self.server_y), self.server_epochs, trainer.generator),
        )
        server_state = train_sequential(
            trainer.model, [job], SGDConfig(cfg.learning_rate, cfg.momentum, cfg.batch_size)
        )[0]
        flops = forward_flops_per_sample(trainer.model, trainer.input_shape, masks)
        self._server_flops += 3.0 * flops * len(self.server_y) * self.server_epochs
        if weight <= 0:
            return
        state = trainer.model.state_dict()
        trainer.model.load_state_dict(
            {
                key: (value + weight * (server_state[key] - value)).to(value.dtype)
                if value.is_floating_point()
                else value
                for key, value in state.items()
            }
        )

    def server_prune(self, trainer: TorchTrainer) -> Masks:
        model = trainer.model
        layout = ChannelLayout(model, self.server_x[:1])
        groups = conv_producers(layout, model)
        x = self.server_x[: self.rank_samples]
        self._server_flops += forward_flops_per_sample(model, trainer.input_shape) * len(x)
        ranks = {g: feature_map_ranks(model, producers[0], x) for g, producers in groups.items()}
        order = sorted(ranks)
        self.layer_rates = layer_adaptive_rates([float(ranks[g].mean()) for g in order], self.target)
        gates = full_gates(layout)
        for group, rate in zip(order, self.layer_rates, strict=True):
            gates[group] = remove_lowest(gates[group], ranks[group], math.floor(rate * layout.sizes[group]))
        return layout.masks(gates)

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        self._server_flops = 0.0
        self.server_update(trainer, arrived)
        super().after_round(trainer, arrived, previous)

    def server_time_s(self) -> float:
        return self._server_flops / self.server_flops_per_s

    def metrics(self, trainer: TorchTrainer) -> dict[str, float]:
        return {"server_weight": self.weights[-1] if self.weights else 0.0}


@AGENTS.register("fedduap")
class FedDUAPAgent(StrategyAgent):
    """FedDUAP: server data, dynamic server update, feature-map-rank adaptive pruning once; the
    server's compute time is part of each round. All devices, equal bandwidth shares."""

    server_fraction: ClassVar[float] = 0.05
    server_epochs: ClassVar[int] = 1
    target: ClassVar[float] = 0.3
    rank_samples: ClassVar[int] = 32
    server_flops_per_s: ClassVar[float] = 1e11
    train_fraction: ClassVar[float] = 0.5

    def make_strategy(self) -> ScheduledStrategy:
        return FedDUAPStrategy(
            schedule_rounds(self.context.max_rounds, self.train_fraction),
            self.server_fraction,
            self.server_epochs,
            self.target,
            self.rank_samples,
            self.server_flops_per_s,
        )
