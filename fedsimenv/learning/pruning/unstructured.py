"""Unstructured pruning: individual weights of conv and linear layers are zeroed.

Only conv/linear weights are candidates; biases and norm parameters are kept. ``rho`` still counts
all parameters, so ``round(rho * total)`` weights are removed (capped at the prunable weights).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fedsimenv.learning.pruning.base import (
    PRUNING_METHODS,
    Batch,
    Masks,
    PruningMethod,
    check_rate,
    count_parameters,
    prunable_weights,
)


def _removal_per_layer(weights: dict[str, torch.Tensor], total_params: int, rho: float) -> dict[str, int]:
    """Spread ``round(rho * total_params)`` removals over layers at one common rate (layer-wise)."""
    check_rate(rho)
    prunable = sum(w.numel() for w in weights.values())
    target = round(rho * total_params)
    rate = min(1.0, target / prunable) if prunable else 0.0
    return {name: round(rate * w.numel()) for name, w in weights.items()}


def _layerwise_masks(
    model: nn.Module, rho: float, order: Callable[[str, torch.Tensor], torch.Tensor]
) -> Masks:
    """In every layer remove the first ``removals[layer]`` weights of ``order(name, weight)`` (flat indices,
    first = removed first), at one common rate over layers (:func:`_removal_per_layer`)."""
    weights = prunable_weights(model)
    removals = _removal_per_layer(weights, count_parameters(model), rho)
    result: Masks = {}
    for name, weight in weights.items():
        keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
        # Called for every layer, even one losing nothing, so a random order draws the same numbers.
        keep[order(name, weight)[: removals[name]]] = False
        result[name] = keep.view_as(weight)
    return result


def global_masks(weights: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], remove: int) -> Masks:
    """Remove the ``remove`` lowest-scoring weights over all layers (ties broken by position)."""
    flat = torch.cat([scores[name].flatten() for name in weights])
    keep = torch.ones_like(flat, dtype=torch.bool)
    if remove > 0:
        keep[torch.argsort(flat, stable=True)[: min(remove, flat.numel())]] = False
    result: Masks = {}
    start = 0
    for name, weight in weights.items():
        result[name] = keep[start : start + weight.numel()].view_as(weight).clone()
        start += weight.numel()
    return result


@PRUNING_METHODS.register("magnitude")
class MagnitudePruning(PruningMethod):
    """Layer-wise magnitude pruning: in every conv/linear layer, zero the same fraction of weights,
    those with the smallest |w| (Han et al., 2015). Ties are broken by index (deterministic).

    A round prunes the same global model once per device at different rates, so each layer's order
    is sorted once and kept with a copy of the weights it was sorted for: the next call reuses it
    while the values are equal (a comparison is ~30x cheaper than the stable sort), and sorts again
    once training has changed them.
    """

    def __init__(self) -> None:
        #: Per layer name, the weights last sorted and their order.
        self._sorted: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        return _layerwise_masks(model, rho, self._order)

    def _order(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        values = weight.detach()
        known = self._sorted.get(name)
        if known is not None:
            sorted_values, order = known
            same_place = sorted_values.shape == values.shape and sorted_values.device == values.device
            if same_place and torch.equal(sorted_values, values):
                return order
        order = torch.argsort(values.abs().flatten(), stable=True)
        self._sorted[name] = (values.clone(), order)
        return order


@PRUNING_METHODS.register("global-magnitude")
class GlobalMagnitudePruning(PruningMethod):
    """Global magnitude pruning: the smallest |w| over all conv/linear layers together, so layers
    with many small weights lose more (PruneFL-style)."""

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        check_rate(rho)
        weights = prunable_weights(model)
        scores = {name: w.detach().abs() for name, w in weights.items()}
        return global_masks(weights, scores, round(rho * count_parameters(model)))


@PRUNING_METHODS.register("random")
class RandomPruning(PruningMethod):
    """Unstructured random pruning at one common rate per layer (a sanity baseline)."""

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        return _layerwise_masks(
            model,
            rho,
            lambda _, weight: torch.randperm(weight.numel(), generator=generator).to(weight.device),
        )


@PRUNING_METHODS.register("snip")
class SNIPPruning(PruningMethod):
    """SNIP (Lee et al., ICLR 2019): connection sensitivity |dL/dw * w| on one batch, ranked globally.

    The gradient is taken on a copy of the model, so the model's own ``.grad`` stays untouched.
    """

    needs_batch = True

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        check_rate(rho)
        if batch is None:
            raise ValueError("SNIP needs a calibration batch (inputs, labels)")
        probe = _copy_for_gradients(model)
        weights = prunable_weights(probe)
        loss = F.cross_entropy(probe(batch[0]), batch[1])
        grads = torch.autograd.grad(loss, list(weights.values()))
        scores = {name: (g * w).detach().abs() for (name, w), g in zip(weights.items(), grads, strict=True)}
        return global_masks(weights, scores, round(rho * count_parameters(model)))


def _copy_for_gradients(model: nn.Module) -> nn.Module:
    """A copy in train mode whose BatchNorm running statistics do not matter (the copy is dropped)."""
    probe = copy.deepcopy(model)
    probe.train()
    return probe
