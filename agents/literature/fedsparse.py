"""FedSparse (neuron-specific pruning for communication-efficient FL, CIKM 2022) with NISP scores (Yu
et al., "NISP: Pruning Networks using Neuron Importance Score Propagation", CVPR 2018).

NISP scores a neuron (a channel, for a convolution) by how much the network's final response depends
on it, propagated backwards through the absolute weights,

    s_k = |W_{k+1}|^T s_{k+1},

with non-linearities, norms and pooling treated as the identity (NISP's bound). FedSparse applies it
in FL with **one mask shared by all devices** and starts the propagation at the **penultimate layer**
(the final layer's outputs, the classes, are never pruned; the server has no final-response feature
ranking, NISP's Inf-FS step, so every class output counts 1): ``s_{L-1} = |W_L|^T 1``. Devices then
train and **upload only the kept (sparse) model**: the pruning is structured, so the upload carries
the kept parameters and no index (the learning plane's ``model_cost``).

Reduction of a layer to a neuron-to-neuron matrix: a convolution's ``|W|`` summed over its kernel
(``M[o, i] = sum |W[o, i, :, :]|``); a linear layer after a flatten of C channels of S positions
sums its input columns by channel (``M[o, c] = sum_s |W[o, c S + s]|``). The propagation needs a
chain (each conv/linear layer reads the previous one's channels: MLP, small CNN, VGG); models with
residual joins or depthwise convolutions are refused with a clear error.

Left open / chosen here (agent class attributes): the schedule (dense FedAvg for ``train_fraction``
= 1/2 of the rounds, NISP pruning once on the server from the global model, fine-tuning with the
shared mask for the rest), the per-layer pruning ratio (``prune_ratio = 0.5`` of each hidden
layer's neurons, at least one kept), the all-ones final response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from agents.base import AGENTS
from agents.literature.channel_layout import ChannelLayout
from agents.literature.common import ScheduledStrategy, StrategyAgent, schedule_rounds
from agents.literature.conv_groups import full_gates, remove_lowest
from fedsimenv.learning.pruning import Masks
from fedsimenv.learning.trainer import TorchTrainer


def nisp_scores(
    matrices: Sequence[torch.Tensor], final_scores: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """NISP scores of the hidden neurons of a chain of layers.

    Args:
        matrices: ``W_1 .. W_L`` in forward order, ``W_k`` of shape (n_k, n_{k-1}) (signs ignored).
        final_scores: Importance of the L-th layer's outputs (default all ones).

    Returns:
        ``[s_1, ..., s_{L-1}]``: ``s_{L-1} = |W_L|^T s_L``, then ``s_k = |W_{k+1}|^T s_{k+1}``.
    """
    if not matrices:
        raise ValueError("nisp_scores needs at least one layer")
    for k in range(1, len(matrices)):
        if matrices[k].shape[1] != matrices[k - 1].shape[0]:
            raise ValueError(
                f"layer {k + 1} reads {matrices[k].shape[1]} inputs but layer {k} has "
                f"{matrices[k - 1].shape[0]} outputs"
            )
    last = matrices[-1]
    score = torch.ones(last.shape[0], dtype=last.dtype) if final_scores is None else final_scores
    scores: list[torch.Tensor] = []
    for matrix in reversed(matrices[1:]):
        score = matrix.abs().T @ score
        scores.append(score)
    return scores[::-1]


def _neuron_matrix(module: nn.Module, in_channels: int) -> torch.Tensor:
    """``module``'s weight reduced to (out neurons, in channels) of absolute values."""
    if not isinstance(module, nn.Conv2d | nn.Linear):
        raise ValueError(f"NISP reads conv and linear layers, not {type(module).__name__}")
    weight = module.weight.detach().abs().cpu()
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ValueError("NISP here needs ordinary convolutions (no grouped/depthwise ones)")
        return weight.sum(dim=(2, 3))
    if weight.shape[1] % in_channels:
        raise ValueError(f"a linear layer of {weight.shape[1]} inputs cannot read {in_channels} channels")
    positions = weight.shape[1] // in_channels
    return weight.view(weight.shape[0], in_channels, positions).sum(dim=2)


def model_nisp_scores(model: nn.Module, layout: ChannelLayout) -> dict[int, torch.Tensor]:
    """NISP score of every channel group of ``model`` (a chain of conv/linear layers), by group.

    Raises:
        ValueError: the model is not a chain of conv/linear layers (residual joins, depthwise convs).
    """
    modules = dict(model.named_modules())
    layers = layout.layers
    matrices: list[torch.Tensor] = []
    for k, layer in enumerate(layers):
        module = modules[layer.name]
        assert isinstance(module, nn.Conv2d | nn.Linear)
        if k == 0:
            # The input's channels (a conv) or features (a linear layer on the flattened input).
            in_channels = module.in_channels if isinstance(module, nn.Conv2d) else module.in_features
        else:
            previous = layers[k - 1].out_group
            if previous is None or layer.in_group != previous:
                raise ValueError(
                    f"NISP propagation needs a chain of layers; {layer.name!r} does not read the "
                    "previous layer's channels alone (residual join?)"
                )
            in_channels = layout.sizes[previous]
        matrices.append(_neuron_matrix(module, in_channels))
    if layers[-1].out_group is not None:
        raise ValueError("the last layer's outputs must be the classes (not a prunable group)")
    scores = nisp_scores(matrices)
    result: dict[int, torch.Tensor] = {}
    for layer, score in zip(layers[:-1], scores, strict=True):
        if layer.out_group in result:
            raise ValueError("NISP propagation needs one producing layer per channel group")
        assert layer.out_group is not None
        result[layer.out_group] = score
    return result


def nisp_masks(model: nn.Module, example: torch.Tensor, prune_ratio: float) -> Masks:
    """One shared mask: the ``prune_ratio`` lowest-NISP neurons of every hidden layer removed."""
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"prune_ratio must be in [0, 1), got {prune_ratio}")
    layout = ChannelLayout(model, example)
    scores = model_nisp_scores(model, layout)
    gates = full_gates(layout)
    for group, score in scores.items():
        gates[group] = remove_lowest(gates[group], score, int(prune_ratio * layout.sizes[group]))
    return layout.masks(gates)


class FedSparseStrategy(ScheduledStrategy):
    """Dense FedAvg, one NISP pruning on the server, fine-tuning with the shared mask."""

    def __init__(self, train_rounds: int, prune_ratio: float) -> None:
        super().__init__(train_rounds)
        self.prune_ratio = prune_ratio

    def server_prune(self, trainer: TorchTrainer) -> Masks:
        return nisp_masks(trainer.model, trainer.client_data(0)[0][:1], self.prune_ratio)


@AGENTS.register("fedsparse")
class FedSparseAgent(StrategyAgent):
    """FedSparse: NISP neuron pruning from the penultimate layer, one mask for every device, sparse
    uploads. All devices every round, equal bandwidth shares."""

    prune_ratio: ClassVar[float] = 0.5
    train_fraction: ClassVar[float] = 0.5

    def make_strategy(self) -> ScheduledStrategy:
        rounds = schedule_rounds(self.context.max_rounds, self.train_fraction)
        return FedSparseStrategy(rounds, self.prune_ratio)
