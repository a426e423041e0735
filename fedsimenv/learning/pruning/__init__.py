"""Pruning methods, each a class registered by name (see :mod:`.base` for the interface).

Unstructured: ``magnitude`` (layer-wise), ``global-magnitude``, ``random``, ``snip``,
``gradual-magnitude`` (Zhu & Gupta), ``lottery-ticket`` (IMP with rewinding), ``movement``, ``grasp``,
``synflow``.
Structured (Torch-Pruning dependency graph): ``l1-filter``, ``taylor``, ``random-filter``, ``width``,
``global-filter`` (global ranking across layers), ``hessian-group`` (OBD / empirical Fisher).
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
from fedsimenv.learning.pruning.group_importance import GlobalFilterPruning, HessianGroupPruning
from fedsimenv.learning.pruning.saliency import GraSPPruning, SynFlowPruning
from fedsimenv.learning.pruning.structured import StructuredPruning, channel_ratio_for_rho
from fedsimenv.learning.pruning.training_based import LotteryTicketPruning, MovementPruning, lottery_ticket
from fedsimenv.learning.pruning.unstructured import (
    GlobalMagnitudePruning,
    MagnitudePruning,
    RandomPruning,
    SNIPPruning,
)

__all__ = [
    "PRUNING_METHODS",
    "Batch",
    "GlobalFilterPruning",
    "GlobalMagnitudePruning",
    "GraSPPruning",
    "GradualMagnitudePruning",
    "HessianGroupPruning",
    "LotteryTicketPruning",
    "MagnitudePruning",
    "Masks",
    "MovementPruning",
    "PruningMethod",
    "RandomPruning",
    "SNIPPruning",
    "StructuredPruning",
    "SynFlowPruning",
    "apply_masks",
    "channel_ratio_for_rho",
    "count_parameters",
    "kept_parameters",
    "lottery_ticket",
    "prunable_weights",
    "zhu_gupta_sparsity",
]
