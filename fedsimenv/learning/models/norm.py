"""Normalisation layers chosen by name, so every model can use BatchNorm or a batch-free norm.

DWNP (device-wise federated network pruning) replaces BatchNorm with LayerNorm: batch statistics are
a poor fit for small, label-skewed local batches. For a conv feature map "layer" norm normalises over
(C, H, W) per sample, which is ``GroupNorm(1, C)``.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

NormKind = Literal["batch", "layer", "group", "none"]
NORM_KINDS: tuple[NormKind, ...] = ("batch", "layer", "group", "none")

#: Upper bound on the groups of "group" norm (Wu & He, 2018 use 32 for wide layers; ours are narrow).
MAX_GROUPS = 8


def norm2d(kind: str, channels: int) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps.

    Args:
        kind: "batch" (BatchNorm2d), "layer" (GroupNorm with one group), "group" (GroupNorm with
            ``gcd(channels, 8)`` groups) or "none" (identity).
        channels: Feature maps normalised.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, MAX_GROUPS), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; allowed values: {', '.join(NORM_KINDS)}")
