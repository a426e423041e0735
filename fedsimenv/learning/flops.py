"""Exact forward FLOPs of a (soft- or hard-) pruned model.

Convention: FLOPs = 2 x multiply-accumulates (MACs) of conv and linear layers, counting only the
weights a mask keeps (a sparse kernel skips the zeros), plus one addition per output element for each
kept bias entry. Norms, activations, pooling, residual adds and flatten are not counted: they are a
few percent at most for the models here and the analytic latency model does not count them either.

:func:`layer_ops` gives the per-layer count in Torch-Pruning's convention (``count_ops_and_params``
counts a conv or linear layer as MACs + bias additions), so the two can be compared layer by layer.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LayerCost:
    """One conv/linear layer's work for one sample."""

    weight_macs: float
    bias_adds: float

    @property
    def ops(self) -> float:
        """MACs + bias additions (Torch-Pruning's count for the layer)."""
        return self.weight_macs + self.bias_adds

    @property
    def flops(self) -> float:
        """2 x MACs + bias additions."""
        return 2.0 * self.weight_macs + self.bias_adds


def _kept(masks: Mapping[str, torch.Tensor], key: str, tensor: torch.Tensor) -> float:
    return float(masks[key].sum()) if key in masks else float(tensor.numel())


@dataclass(frozen=True)
class _Layer:
    """Where one conv/linear layer sits in the forward pass: its module and how often it runs."""

    name: str
    module: nn.Conv2d | nn.Linear
    #: Output positions per sample: a conv weight is used once per position, a linear one once.
    positions: float


#: The layers of a model in forward order, per model object and per (input shape, :func:`_signature`):
#: planning a round prices every device's masks on the same global model, and the probe forward pass
#: that finds the output sizes costs 10x the count itself (small CNN: ~0.4 ms vs ~40 us).
_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], list[_Layer]]] = (
    weakref.WeakKeyDictionary()
)


def _signature(model: nn.Module) -> tuple[Any, ...]:
    """What the output sizes depend on besides the input: which conv/linear modules the model holds
    (a replaced layer is a new object, and the cached ones are kept alive, so ids stay unique), their
    weight shapes (Torch-Pruning slims layers in place) and the convolutions' geometry."""
    return tuple(
        (id(m), tuple(m.weight.shape), m.stride, m.padding, m.dilation, m.groups)
        if isinstance(m, nn.Conv2d)
        else (id(m), tuple(m.weight.shape))
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    )


@torch.no_grad()
def _probe(model: nn.Module, input_shape: tuple[int, ...]) -> list[_Layer]:
    """The conv/linear layers in the order a forward pass of one ``input_shape`` sample runs them."""
    names = {module: name for name, module in model.named_modules()}
    found: list[_Layer] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        assert isinstance(module, nn.Conv2d | nn.Linear)
        positions = float(output.shape[-1] * output.shape[-2]) if isinstance(module, nn.Conv2d) else 1.0
        found.append(_Layer(names[module], module, positions))

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    try:
        model.eval()  # no running-stat updates from the probe
        device = next(model.parameters()).device
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return found


def _layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[_Layer]:
    per_model = _LAYERS.setdefault(model, {})
    key = (tuple(input_shape), _signature(model))
    layers = per_model.get(key)
    if layers is None:
        per_model.clear()  # an older shape of this model will not come back
        layers = per_model[key] = _probe(model, input_shape)
    return layers


def layer_costs(
    model: nn.Module, input_shape: tuple[int, ...], masks: Mapping[str, torch.Tensor] | None = None
) -> dict[str, LayerCost]:
    """Per conv/linear layer (by module name, in forward order), the work of one sample of shape
    ``input_shape``."""
    masks = masks or {}
    costs: dict[str, LayerCost] = {}
    for layer in _layers(model, input_shape):
        module = layer.module
        prefix = f"{layer.name}." if layer.name else ""
        bias = 0.0
        if module.bias is not None:
            bias = _kept(masks, f"{prefix}bias", module.bias) * layer.positions
        macs = _kept(masks, f"{prefix}weight", module.weight) * layer.positions
        costs[layer.name] = LayerCost(weight_macs=macs, bias_adds=bias)
    return costs


def forward_flops_per_sample(
    model: nn.Module, input_shape: tuple[int, ...], masks: Mapping[str, torch.Tensor] | None = None
) -> float:
    """Forward FLOPs for one sample of shape ``input_shape`` through ``model`` under ``masks``."""
    return sum(cost.flops for cost in layer_costs(model, input_shape, masks).values())
