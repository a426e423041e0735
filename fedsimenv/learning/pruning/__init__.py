"""Pruning methods, each a class registered by name (see :mod:`.base` for the interface).

Unstructured: ``magnitude`` (layer-wise), ``global-magnitude``, ``random``, ``snip``.
Structured (Torch-Pruning dependency graph): ``l1-filter``, ``taylor``, ``random-filter``, ``width``.
"""

from __future__ import annotations

from fedsimenv.learning.pruning.base import (
    PRUNING_METHODS,
    Batch,
    Masks,
    PruningMethod,
    apply_masks,
    count_parameters,
    kept_parameters,
    prunable_weights,
)
from fedsimenv.learning.pruning.gradual import GradualMagnitudePruning, zhu_gupta_sparsity
from fedsimenv.learning.pruning.structured import StructuredPruning, channel_ratio_for_rho
from fedsimenv.learning.pruning.unstructured import (
    GlobalMagnitudePruning,
    MagnitudePruning,
    RandomPruning,
    SNIPPruning,
)

__all__ = [
    "PRUNING_METHODS",
    "Batch",
    "GlobalMagnitudePruning",
    "GradualMagnitudePruning",
    "MagnitudePruning",
    "Masks",
    "PruningMethod",
    "RandomPruning",
    "SNIPPruning",
    "StructuredPruning",
    "apply_masks",
    "channel_ratio_for_rho",
    "count_parameters",
    "kept_parameters",
    "prunable_weights",
    "zhu_gupta_sparsity",
]
