"""Exact forward FLOPs of a (soft-)pruned model.

Convention: FLOPs = 2 x multiply-accumulates of conv and linear layers, counting only the weights a
mask keeps (a sparse kernel skips the zeros), plus one addition per output element for a bias.
Activations, pooling and flatten are not counted (they are < 1% for the models here and are not
counted by the analytic latency model either).
"""

from __future__ import annotations

import torch
from torch import nn

from fedsimenv.learning.pruning import Masks


@torch.no_grad()
def forward_flops_per_sample(
    model: nn.Module, input_shape: tuple[int, int, int], masks: Masks | None = None
) -> float:
    """Forward FLOPs for one sample of shape ``input_shape`` through ``model`` under ``masks``."""
    masks = masks or {}
    names = {module: name for name, module in model.named_modules()}
    flops = 0.0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops
        assert isinstance(module, nn.Conv2d | nn.Linear)
        name = names[module]
        weight_key = f"{name}.weight" if name else "weight"
        kept = float(masks[weight_key].sum()) if weight_key in masks else float(module.weight.numel())
        if isinstance(module, nn.Conv2d):
            # Each kept weight is used once per output position.
            positions = output.shape[-1] * output.shape[-2]
            flops += 2.0 * kept * positions
            if module.bias is not None:
                flops += float(output[0].numel())
        else:
            flops += 2.0 * kept
            if module.bias is not None:
                flops += float(module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        device = next(model.parameters()).device
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return flops
