"""Helpers shared by the channel-level algorithms of the seeds (Sub-FedAvg, FedSparse/NISP, FedDUAP,
class-discriminative unlearning): which channel groups of a :class:`ChannelLayout` are produced by
convolutions, and gates that switch off chosen channels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from agents.literature.channel_layout import ChannelLayout
from fedsimenv.learning.pruning import Masks


def conv_producers(layout: ChannelLayout, model: nn.Module) -> dict[int, list[str]]:
    """Channel group -> the Conv2d layers producing its channels (groups with none are left out)."""
    modules = dict(model.named_modules())
    result: dict[int, list[str]] = {}
    for layer in layout.layers:
        if layer.out_group is not None and isinstance(modules[layer.name], nn.Conv2d):
            result.setdefault(layer.out_group, []).append(layer.name)
    return result


def linear_producers(layout: ChannelLayout, model: nn.Module) -> dict[int, list[str]]:
    """Channel group -> the Linear layers producing its features (hidden units of an MLP)."""
    modules = dict(model.named_modules())
    result: dict[int, list[str]] = {}
    for layer in layout.layers:
        if layer.out_group is not None and isinstance(modules[layer.name], nn.Linear):
            result.setdefault(layer.out_group, []).append(layer.name)
    return result


@torch.no_grad()
def filter_l1(model: nn.Module, producers: Sequence[str]) -> torch.Tensor:
    """Per output channel, the summed L1 norm of the producing layers' filters (and biases)."""
    modules = dict(model.named_modules())
    total: torch.Tensor | None = None
    for name in producers:
        module = modules[name]
        assert isinstance(module, nn.Conv2d | nn.Linear)
        norm = module.weight.detach().abs().flatten(1).sum(dim=1)
        if module.bias is not None:
            norm = norm + module.bias.detach().abs()
        total = norm if total is None else total + norm
    assert total is not None
    return total.cpu()


def full_gates(layout: ChannelLayout) -> list[torch.Tensor]:
    """Gates keeping every channel."""
    return [torch.ones(size) for size in layout.sizes]


def and_masks(first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor]) -> Masks:
    """Entry-wise AND of two keep-mask dicts (a key in only one keeps that one's mask)."""
    out: Masks = {k: v.clone() for k, v in first.items()}
    for key, mask in second.items():
        out[key] = out[key] & mask.to(out[key].device) if key in out else mask.clone()
    return out


def remove_lowest(gate: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """``gate`` with its ``count`` lowest-scoring kept channels switched off (at least one stays)."""
    kept = torch.nonzero(gate > 0.5).flatten()
    count = min(count, len(kept) - 1)
    out = gate.clone()
    if count <= 0:
        return out
    order = torch.argsort(scores[kept], stable=True)
    out[kept[order[:count]]] = 0.0
    return out
