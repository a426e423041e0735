"""The building blocks of the per-device (permutation-equivariant) networks of the PPO policy
(:mod:`agents.rl_policy`) and the SAC policy (:mod:`agents.rl_sac_policy`): flat features split into
per-device rows, shared-weight encoders with mean/max pooled context, and the canonical action order.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from agents.rl_features import DEVICE_FEATURES, GLOBAL_FEATURES


def mlp(sizes: list[int], final_activation: bool, activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


def split_devices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat features (B, N * F + G) -> per-device ``[device, global]`` rows (B, N, F + G) and the
    global features (B, G); N is read from the width, so one network serves any N."""
    f, g = len(DEVICE_FEATURES), len(GLOBAL_FEATURES)
    n = (x.shape[1] - g) // f
    if n < 1 or n * f + g != x.shape[1]:
        raise ValueError(f"observation of size {x.shape[1]} is not N * {f} + {g} features")
    devices = x[:, : n * f].reshape(x.shape[0], n, f)
    globals_ = x[:, n * f :]
    return torch.cat([devices, globals_.unsqueeze(1).expand(-1, n, -1)], dim=2), globals_


def equivariant_outputs(encoder: nn.Module, head: nn.Module, per_device: torch.Tensor) -> torch.Tensor:
    """``head([row_i, h_i, mean_j h_j, max_j h_j])`` per device with ``h_i = encoder(row_i)``: (B, N, K).

    Shared weights and symmetric pooling: permuting the rows permutes the outputs the same way.
    """
    h = encoder(per_device)
    context = torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=1)
    z = torch.cat([per_device, h, context.unsqueeze(1).expand(-1, h.shape[1], -1)], dim=2)
    out: torch.Tensor = head(z)
    return out


def to_canonical(per_device: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) per-device (select, rho, bandwidth) -> the canonical (B, 3N) [select | rho | bandwidth]."""
    return per_device.transpose(1, 2).reshape(per_device.shape[0], -1)
