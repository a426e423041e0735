"""Pruning methods: each a class registered by name that turns a model and a rate into masks.

The pruning rate ``rho`` is the fraction of *all* model parameters removed (weights and biases
counted). Masks are soft: shapes stay unchanged, pruned entries are held at zero, so differently
pruned devices can still be aggregated entry by entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from fedsimenv.registry import Registry

Masks = dict[str, torch.Tensor]


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight tensors of conv and linear layers (biases and norm parameters are never pruned)."""
    result: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            result[f"{module_name}.weight" if module_name else "weight"] = module.weight
    return result


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def kept_parameters(model: nn.Module, masks: Masks) -> int:
    """Parameters that survive ``masks`` (unmasked parameters count in full)."""
    total = 0
    for name, param in model.named_parameters():
        total += int(masks[name].sum().item()) if name in masks else param.numel()
    return total


class PruningMethod(ABC):
    """A pruning criterion: ``masks(model, rho)`` -> boolean keep-masks for some parameters.

    Attributes:
        sparse_index_overhead: Whether an upload of the pruned model needs its mask as well
            (one bit per prunable weight for an unstructured mask; structured methods need none).
    """

    sparse_index_overhead: bool = True

    @abstractmethod
    def masks(self, model: nn.Module, rho: float, generator: torch.Generator) -> Masks:
        """Boolean masks (True = keep) removing a fraction ``rho`` of the model's parameters."""


def _removal_per_layer(weights: dict[str, torch.Tensor], total_params: int, rho: float) -> dict[str, int]:
    """Spread ``round(rho * total_params)`` removals over layers at one common rate (layer-wise)."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"pruning rate rho must be in [0, 1), got {rho}")
    prunable = sum(w.numel() for w in weights.values())
    target = round(rho * total_params)
    rate = min(1.0, target / prunable) if prunable else 0.0
    return {name: round(rate * w.numel()) for name, w in weights.items()}


PRUNING_METHODS: Registry[type[PruningMethod]] = Registry("pruning method")


@PRUNING_METHODS.register("magnitude")
class MagnitudePruning(PruningMethod):
    """Unstructured layer-wise magnitude pruning: in every conv/linear layer, zero the same fraction of
    weights, those with the smallest |w| (Han et al., 2015). Ties are broken by index, so the masks are
    deterministic."""

    def masks(self, model: nn.Module, rho: float, generator: torch.Generator) -> Masks:
        weights = prunable_weights(model)
        removals = _removal_per_layer(weights, count_parameters(model), rho)
        result: Masks = {}
        for name, weight in weights.items():
            flat = weight.detach().abs().flatten()
            keep = torch.ones_like(flat, dtype=torch.bool)
            if removals[name] > 0:
                order = torch.argsort(flat, stable=True)
                keep[order[: removals[name]]] = False
            result[name] = keep.view_as(weight)
        return result


@PRUNING_METHODS.register("random")
class RandomPruning(PruningMethod):
    """Unstructured random pruning at one common rate per layer (a sanity baseline)."""

    def masks(self, model: nn.Module, rho: float, generator: torch.Generator) -> Masks:
        weights = prunable_weights(model)
        removals = _removal_per_layer(weights, count_parameters(model), rho)
        result: Masks = {}
        for name, weight in weights.items():
            keep = torch.ones(weight.numel(), dtype=torch.bool)
            order = torch.randperm(weight.numel(), generator=generator)
            keep[order[: removals[name]]] = False
            result[name] = keep.view_as(weight)
        return result
