"""Sub-FedAvg (Vahidian, Morafah, Lin, "Personalized Federated Learning by Structured and Unstructured
Pruning under Data Heterogeneity", ICDCS Workshops 2021; code github.com/MMorafah/Sub-FedAvg).

Every device keeps a **persistent personal mask** that only ever shrinks: hybrid pruning removes whole
channels of the convolutional layers (structured) and individual weights of the fully connected
layers (unstructured). In each round a device trains the global model under its own mask; the server
averages each parameter over the devices that kept it (**aggregation over the intersection of the
kept parameters**: the learning plane's ``masked-fedavg``; a parameter nobody kept keeps its global
value). A device's personalised model is the global model under its mask, and it is evaluated on its
own test split (**personalised accuracy**, logged per round as ``personal_accuracy`` beside the
global model's ``accuracy``; ``learning.partition.per_device_test`` is switched on).

Pruning schedule (the paper's): after each round in which a device took part, if its personalised
model's accuracy on its local data reaches ``acc_threshold`` and it has not reached its targets, it
prunes a further ``step`` of its still-kept conv channels (per layer, smallest filter L1 norm;
Sub-FedAvg ranks channels by BatchNorm scales, network slimming, and falls back to the filter norm
here because the project's models use no or other norms) and ``step`` of its still-kept FC weights
(per layer, smallest magnitude), until ``conv_target`` of the channels and ``fc_target`` of the FC
weights are gone.

Left open / chosen here (class attributes of the agent): ``step = 0.1``, ``conv_target = 0.5``,
``fc_target = 0.5``, ``acc_threshold = 0.5``; the magnitudes are read from the device's personalised
model after aggregation (global model under its mask) rather than from its pre-aggregation local
model, which the trainer does not hand to strategies; the paper's second condition (prune only
when the new mask differs enough from the old, ``dist_thresh``) is not implemented; the local
accuracy is measured on the device's training data (the paper holds out a local validation split).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from agents.base import AGENTS
from agents.literature.channel_layout import ChannelLayout
from agents.literature.common import ScheduledStrategy, StrategyAgent, masked_accuracy
from agents.literature.conv_groups import and_masks, conv_producers, filter_l1, full_gates, remove_lowest
from fedsimenv.learning.pruning import Masks, apply_masks
from fedsimenv.learning.trainer import TorchTrainer


def prune_fc_step(weight: torch.Tensor, keep: torch.Tensor, fraction: float, min_keep: int) -> torch.Tensor:
    """``keep`` with ``fraction`` of its kept entries (smallest ``|weight|``) removed, keeping at least
    ``min_keep`` entries (unstructured magnitude pruning of one FC layer, one Sub-FedAvg step)."""
    kept = int(keep.sum())
    remove = min(math.ceil(fraction * kept), max(kept - min_keep, 0))
    if remove <= 0:
        return keep.clone()
    scores = torch.where(keep, weight.detach().abs(), torch.full_like(weight, math.inf))
    order = torch.argsort(scores.flatten(), stable=True)[:remove]
    out = keep.clone().flatten()
    out[order] = False
    return out.view_as(keep)


class SubFedAvgStrategy(ScheduledStrategy):
    """Per-device persistent hybrid masks; personalised evaluation.

    Args:
        step: Share of the still-kept channels/FC weights removed at each pruning step.
        conv_target: Share of each conv layer's channels removed at the end.
        fc_target: Share of each FC layer's weights removed at the end.
        acc_threshold: Local accuracy a device's personalised model needs before it prunes further.
    """

    sparse_index_overhead = True  # the FC masks are unstructured

    def __init__(self, step: float, conv_target: float, fc_target: float, acc_threshold: float) -> None:
        super().__init__(train_rounds=0)
        for name, value in (("step", step), ("conv_target", conv_target), ("fc_target", fc_target)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"Sub-FedAvg {name} must be in [0, 1), got {value}")
        self.step = step
        self.conv_target = conv_target
        self.fc_target = fc_target
        self.acc_threshold = acc_threshold

    def reset(self, trainer: TorchTrainer) -> None:
        super().reset(trainer)
        model = trainer.model
        self.layout = ChannelLayout(model, trainer.client_data(0)[0][:1])
        self.conv_groups = conv_producers(self.layout, model)
        self.fc_names = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        n = trainer.num_devices
        self.gates: list[list[torch.Tensor]] = [full_gates(self.layout) for _ in range(n)]
        params = dict(model.named_parameters())
        self.fc_masks: list[dict[str, torch.Tensor]] = [
            {k: torch.ones_like(params[k], dtype=torch.bool) for k in self.fc_names} for _ in range(n)
        ]
        self._masks: list[Masks | None] = [None] * n
        self.personal_accuracy: list[float] = []

    def device_masks(self, trainer: TorchTrainer, device: int) -> Masks | None:
        return self._masks[device]

    def _build_masks(self, device: int) -> Masks | None:
        channel = self.layout.masks(self.gates[device])
        fc = {k: m for k, m in self.fc_masks[device].items() if not bool(m.all())}
        masks = and_masks(channel, fc)
        return masks or None

    def conv_pruned_fraction(self, device: int, group: int) -> float:
        gate = self.gates[device][group]
        return 1.0 - float(gate.sum()) / len(gate)

    def fc_pruned_fraction(self, device: int, name: str) -> float:
        mask = self.fc_masks[device][name]
        return 1.0 - float(mask.sum()) / mask.numel()

    @torch.no_grad()
    def personal_model(self, trainer: TorchTrainer, device: int) -> nn.Module:
        """The global model under device ``device``'s mask (its personalised sub-model)."""
        model = copy.deepcopy(trainer.model)
        apply_masks(model, self._masks[device] or {})
        return model

    @torch.no_grad()
    def local_accuracy(self, trainer: TorchTrainer, device: int) -> float:
        model = self.personal_model(trainer, device)
        model.eval()
        x, y = trainer.client_data(device)
        return float((model(x).argmax(dim=1) == y).float().mean())

    def prune_device(self, trainer: TorchTrainer, device: int) -> None:
        """One Sub-FedAvg pruning step of device ``device`` (channels and FC weights)."""
        model = self.personal_model(trainer, device)
        for group, producers in self.conv_groups.items():
            if self.conv_pruned_fraction(device, group) >= self.conv_target - 1e-9:
                continue
            gate = self.gates[device][group]
            size = len(gate)
            allowed = math.floor(self.conv_target * size) - int(size - gate.sum())
            count = min(math.ceil(self.step * float(gate.sum())), allowed)
            self.gates[device][group] = remove_lowest(gate, filter_l1(model, producers), count)
        params = dict(model.named_parameters())
        for name in self.fc_names:
            if self.fc_pruned_fraction(device, name) >= self.fc_target - 1e-9:
                continue
            keep = self.fc_masks[device][name]
            min_keep = keep.numel() - math.floor(self.fc_target * keep.numel())
            self.fc_masks[device][name] = prune_fc_step(params[name].cpu(), keep.cpu(), self.step, min_keep)
        self._masks[device] = self._build_masks(device)

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        self.rounds_done += 1
        for device in arrived:
            if self.local_accuracy(trainer, device) >= self.acc_threshold:
                self.prune_device(trainer, device)

    def metrics(self, trainer: TorchTrainer) -> dict[str, float]:
        """``personal_accuracy``: the mean over devices of each personalised sub-model's accuracy on
        the device's own test split."""
        self.personal_accuracy = [
            masked_accuracy(trainer, self._masks[k] or {}, k) for k in range(trainer.num_devices)
        ]
        return {"personal_accuracy": sum(self.personal_accuracy) / len(self.personal_accuracy)}


@AGENTS.register("sub-fedavg")
class SubFedAvgAgent(StrategyAgent):
    """Sub-FedAvg: persistent per-device hybrid (conv channels + FC weights) masks, intersection
    aggregation, personalised evaluation. All devices every round, equal bandwidth shares."""

    step: ClassVar[float] = 0.1
    conv_target: ClassVar[float] = 0.5
    fc_target: ClassVar[float] = 0.5
    acc_threshold: ClassVar[float] = 0.5
    learning_overrides: ClassVar[Mapping[str, Any]] = {
        "learning.aggregation": "masked-fedavg",
        "learning.partition.per_device_test": True,
    }

    def make_strategy(self) -> ScheduledStrategy:
        return SubFedAvgStrategy(self.step, self.conv_target, self.fc_target, self.acc_threshold)
