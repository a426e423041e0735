"""Exact forward FLOPs of a (soft- or hard-) pruned model.

Convention: FLOPs = 2 x multiply-accumulates (MACs) of conv and linear layers, counting only the
weights a mask keeps (a sparse kernel skips the zeros), plus one addition per output element for each
kept bias entry. Norms, activations, pooling, residual adds and flatten are not counted: they are a
few percent at most for the models here and the analytic latency model does not count them either.

:func:`layer_ops` gives the per-layer count in Torch-Pruning's convention (``count_ops_and_params``
counts a conv or linear layer as MACs + bias additions), so the two can be compared layer by layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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


@torch.no_grad()
def layer_costs(
    model: nn.Module, input_shape: tuple[int, ...], masks: Mapping[str, torch.Tensor] | None = None
) -> dict[str, LayerCost]:
    """Per conv/linear layer (by module name), the work of one sample of shape ``input_shape``."""
    masks = masks or {}
    names = {module: name for name, module in model.named_modules()}
    costs: dict[str, LayerCost] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        assert isinstance(module, nn.Conv2d | nn.Linear)
        name = names[module]
        prefix = f"{name}." if name else ""
        # A conv weight is used once per output position; a linear weight once per sample.
        positions = float(output.shape[-1] * output.shape[-2]) if isinstance(module, nn.Conv2d) else 1.0
        bias = 0.0
        if module.bias is not None:
            bias = _kept(masks, f"{prefix}bias", module.bias) * positions
        macs = _kept(masks, f"{prefix}weight", module.weight) * positions
        costs[name] = LayerCost(weight_macs=macs, bias_adds=bias)

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
    return costs


def forward_flops_per_sample(
    model: nn.Module, input_shape: tuple[int, ...], masks: Mapping[str, torch.Tensor] | None = None
) -> float:
    """Forward FLOPs for one sample of shape ``input_shape`` through ``model`` under ``masks``."""
    return sum(cost.flops for cost in layer_costs(model, input_shape, masks).values())
