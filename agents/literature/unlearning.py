"""Federated unlearning via class-discriminative pruning (Wang, Guo, Xie, Qi, WWW 2022).

To make a trained federated model forget one class, the server prunes the channels most specific to
that class and the devices fine-tune the pruned model:

1. **Activations**: every device runs its local data through the global model and uploads, per class
   and per channel of each convolution, the sum of the channel's mean (post-ReLU) activation and the
   sample count; the server forms the class x channel table ``A[j, c]`` of mean activations.
2. **TF-IDF relevance** (classes are documents, channels are words): ``TF[j, c] = A[j, c] / sum_c'
   A[j, c']``; channel c "occurs" in class j when ``A[j, c]`` is at least its mean over the classes,
   ``df_c`` counts those classes and ``IDF_c = log((1 + J) / (1 + df_c)) + 1``; the relevance is
   ``TF * IDF`` (:func:`tfidf_relevance`). A channel firing strongly for the forget class and for few
   others scores high.
3. **Pruning**: in every convolution, the ``prune_ratio`` channels with the highest relevance to the
   forget class are removed from the global model for good (structured masks). A model without
   convolutions (the MLP) has its hidden units pruned the same way.
4. **Fine-tuning**: FedAvg of the pruned model on the devices' remaining data (the forget class's
   samples are removed from every device, :meth:`TorchTrainer.exclude_labels`).

Schedule in the co-simulation: ordinary FedAvg for ``train_fraction`` of the rounds (the model to
unlearn from), then steps 1-3 on the server, then fine-tuning for the rest. Each round logs
``forget_accuracy`` and ``retained_accuracy`` (global test set, the forget class / the others).
The activation pass is not a training round; its cost (broadcast, forward pass over the local data,
upload of the table) is :func:`activation_pass_cost`, from the simulator's system view, and
``scenarios/unlearning.py`` reports it with the simulated fine-tuning time and energy.

Left open / chosen here (agent class attributes): ``forget_class = 0``, ``prune_ratio = 0.1`` of
each conv layer's channels (the paper tunes the number of pruned channels per model), the smoothed
IDF (scikit-learn's form) and the "at least the mean" occurrence rule, activations taken after the
ReLU of each convolution's output (the conv output clipped at 0: the norms here sit between, so for
models with norms this is the pre-norm response).
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
from agents.literature.conv_groups import conv_producers, full_gates, linear_producers
from channels import shannon_rate_bps
from fedsimenv.learning.pruning import Masks
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.view import SystemView


def tfidf_relevance(activations: NDArray[np.float64]) -> NDArray[np.float64]:
    """TF-IDF relevance (classes x channels) of a table of mean channel activations per class."""
    table = np.asarray(activations, dtype=float)
    if table.ndim != 2 or (table < 0).any():
        raise ValueError("activations must be a non-negative (classes, channels) table")
    classes = table.shape[0]
    totals = table.sum(axis=1, keepdims=True)
    tf = np.divide(table, totals, out=np.zeros_like(table), where=totals > 0)
    occurs = table >= table.mean(axis=0, keepdims=True)
    df = occurs.sum(axis=0)
    idf = np.log((1.0 + classes) / (1.0 + df)) + 1.0
    result: NDArray[np.float64] = tf * idf
    return result


@torch.no_grad()
def class_activation_sums(
    model: nn.Module, layers: Sequence[str], x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One device's upload: per layer the (classes, channels) sums of each sample's mean ReLU
    activation per channel, and the per-class sample counts."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        relu = output.detach().clamp_min(0)
        captured[name] = relu.flatten(2).mean(dim=2) if relu.dim() > 2 else relu

    handles = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: keep(name, o)) for name in layers
    ]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    onehot = torch.nn.functional.one_hot(y, num_classes).to(torch.float64).cpu()  # (B, J)
    sums = [onehot.T @ captured[name].to(torch.float64).cpu() for name in layers]
    return sums, onehot.sum(dim=0)


def activation_pass_cost(view: SystemView, local_epochs: int, table_bits: float) -> tuple[float, float]:
    """``(time_s, energy_j)`` of the activation pass: every device receives the model, runs one
    forward pass over its data (a third of one epoch of training's FLOPs) and uploads ``table_bits``
    on an equal share of the uplink; the time is the slowest device's, the energy the sum."""
    forward = 1.0 / (3.0 * local_epochs)
    compute_s = view.compute_latency_s * forward
    compute_j = view.kappa * view.compute_cycles * forward * view.cpu_freq_hz**2
    share_hz = view.bandwidth_hz / view.num_devices
    rate = shannon_rate_bps(share_hz, view.tx_power_w, view.channel_gain_linear, view.noise_psd_w_per_hz)
    upload_s = table_bits / rate
    time_s = float(np.max(view.downlink_time_s + compute_s + upload_s))
    energy_j = float(np.sum(compute_j + view.tx_power_w * upload_s))
    return time_s, energy_j


class UnlearningStrategy(ScheduledStrategy):
    """FedAvg, then TF-IDF class-discriminative channel pruning of ``forget_class``, fine-tuning."""

    def __init__(self, train_rounds: int, forget_class: int, prune_ratio: float) -> None:
        super().__init__(train_rounds)
        if not 0.0 < prune_ratio < 1.0:
            raise ValueError(f"unlearning prune_ratio must be in (0, 1), got {prune_ratio}")
        self.forget_class = forget_class
        self.prune_ratio = prune_ratio
        self.table_values = 0
        self.pruned_accuracy: tuple[float, float] = (math.nan, math.nan)
        self.base_class_accuracy: tuple[float, float] = (math.nan, math.nan)

    def reset(self, trainer: TorchTrainer) -> None:
        super().reset(trainer)
        classes = int(trainer.test.num_classes)
        if not 0 <= self.forget_class < classes:
            raise ValueError(f"forget_class must be in [0, {classes - 1}], got {self.forget_class}")
        if not 0.0 < self.prune_ratio < 1.0:
            raise ValueError(f"unlearning prune_ratio must be in (0, 1), got {self.prune_ratio}")
        self.table_values = 0
        self.pruned_accuracy = (math.nan, math.nan)
        self.base_class_accuracy = (math.nan, math.nan)

    @torch.no_grad()
    def class_accuracy(self, trainer: TorchTrainer) -> tuple[float, float]:
        """Global-test accuracy on the forget class and on the other classes."""
        model = trainer.model
        model.eval()
        pred = model(trainer._test_x).argmax(dim=1)
        correct = pred == trainer._test_y
        forget = trainer._test_y == self.forget_class
        return float(correct[forget].float().mean()), float(correct[~forget].float().mean())

    def server_prune(self, trainer: TorchTrainer) -> Masks:
        model = trainer.model
        self.base_class_accuracy = self.class_accuracy(trainer)
        layout = ChannelLayout(model, trainer.client_data(0)[0][:1])
        groups = conv_producers(layout, model) or linear_producers(layout, model)
        layers = [producers[0] for producers in groups.values()]
        classes = int(trainer.test.num_classes)
        sums = [torch.zeros(classes, layout.sizes[g], dtype=torch.float64) for g in groups]
        counts = torch.zeros(classes, dtype=torch.float64)
        for k in range(trainer.num_devices):
            x, y = trainer.client_data(k)
            if len(y) == 0:
                continue
            device_sums, device_counts = class_activation_sums(model, layers, x, y, classes)
            sums = [a + b for a, b in zip(sums, device_sums, strict=True)]
            counts += device_counts
        self.table_values = sum(s.numel() for s in sums) + classes
        gates = full_gates(layout)
        for group, total in zip(groups, sums, strict=True):
            means = (total / counts.clamp_min(1.0).view(-1, 1)).numpy()
            relevance = torch.from_numpy(tfidf_relevance(means)[self.forget_class])
            remove = min(max(1, round(self.prune_ratio * layout.sizes[group])), layout.sizes[group] - 1)
            gates[group][torch.argsort(relevance, descending=True, stable=True)[:remove]] = 0.0
        masks = layout.masks(gates)
        trainer.exclude_labels([self.forget_class])
        return masks

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        was_pruned = self.pruned
        super().after_round(trainer, arrived, previous)
        if self.pruned and not was_pruned:
            self.pruned_accuracy = self.class_accuracy(trainer)

    def metrics(self, trainer: TorchTrainer) -> dict[str, float]:
        forget, retained = self.class_accuracy(trainer)
        return {"forget_accuracy": forget, "retained_accuracy": retained}


@AGENTS.register("unlearning")
class UnlearningAgent(StrategyAgent):
    """Federated unlearning of ``forget_class`` by TF-IDF class-discriminative channel pruning, after
    ``train_fraction`` of the rounds of FedAvg. All devices, equal bandwidth shares."""

    forget_class: ClassVar[int] = 0
    prune_ratio: ClassVar[float] = 0.1
    train_fraction: ClassVar[float] = 0.5

    def make_strategy(self) -> ScheduledStrategy:
        rounds = schedule_rounds(self.context.max_rounds, self.train_fraction)
        return UnlearningStrategy(rounds, self.forget_class, self.prune_ratio)
