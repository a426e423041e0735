"""DWNP's differentiable architecture vector: straight-through Gumbel-sigmoid gates and the FLOPs
regulariser (Gao et al., "Device-Wise Federated Network Pruning", Eqs. 2-3 and 6)."""

from __future__ import annotations

import torch


def gumbel_sigmoid_st(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Straight-Through Gumbel-Sigmoid (Jang et al., 2016; DWNP Sec. 3.3).

    Forward: the 0/1 gate ``[sigmoid((logits + g) / temperature) > 0.5]`` with logistic noise
    ``g = log u - log(1 - u)``, ``u ~ U(0, 1)`` drawn from ``generator``; backward: the gradient of the
    relaxed ``sigmoid((logits + g) / temperature)``. Without a generator there is no noise (the
    deterministic architecture ``logits > 0`` used to prune).
    """
    if generator is not None:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
        u = u.clamp(1e-6, 1.0 - 1e-6)
        logits = logits + torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid(logits / temperature)
    hard = (soft > 0.5).to(soft.dtype)
    return hard + soft - soft.detach()


def flops_regulariser(flops: torch.Tensor, budget: float | torch.Tensor) -> torch.Tensor:
    """``R(x, y) = log(max(x, y) / y)`` (DWNP Eq. 6): zero at or below the budget ``y``, the log of the
    overshoot above it (a regression loss "pushed to near zero values", unlike MAE/MSE)."""
    budget_t = torch.as_tensor(budget, dtype=flops.dtype, device=flops.device)
    return torch.log(torch.maximum(flops, budget_t) / budget_t)
