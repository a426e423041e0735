"""Structured criteria beyond one uniform ratio per layer: global filter ranking and second-order
(Hessian/Fisher) group importance, both through Torch-Pruning's dependency graph.

``global-filter`` -- global structured ranking across layers (as Torch-Pruning's ``global_pruning``
and, e.g., Liu et al.'s network slimming rank channels of all layers together): every channel gets its
group's L1 magnitude importance normalised by the group's mean (Torch-Pruning's default normaliser,
which makes groups of different size and scale comparable), and the channels of lowest normalised
importance over *all* groups go first, so redundant layers lose more channels than others. One
channel per group is always kept (no layer collapses). Simplified: network slimming ranks the BN
scales after sparsity-regularised training; here the group magnitude of the current weights is ranked.

``hessian-group`` -- Optimal Brain Damage's saliency ``0.5 h_ii w_i^2`` summed over a channel's
coupled parameters (LeCun et al., NeurIPS 1989; grouped as Torch-Pruning's ``GroupHessianImportance``),
with the Hessian diagonal approximated by the empirical Fisher, the mean over the calibration batch of
each sample's squared gradient (as Torch-Pruning does). Torch-Pruning 1.6.1's ``accumulate_grad``
overwrites instead of adding (it tests ``name not in`` a dict keyed by parameter), so it keeps only the
last sample; here the per-sample squared gradients are averaged before Torch-Pruning's importance
reads them. Simplified: the Fisher is a diagonal, one-batch estimate; no OBS-style weight update.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from fedsimenv.learning.pruning.base import PRUNING_METHODS, Batch
from fedsimenv.learning.pruning.structured import L1FilterPruning, StructuredPruning


def global_selection(importances: Sequence[torch.Tensor], ratio: float) -> list[list[int]]:
    """Remove the ``int(ratio x all channels)`` channels of lowest importance over all groups together
    (ties by group, then channel index), keeping at least one channel in every group."""
    total = sum(len(imp) for imp in importances)
    budget = int(ratio * total)
    pooled = [(float(score), g, c) for g, imp in enumerate(importances) for c, score in enumerate(imp)]
    pooled.sort()
    removed: list[list[int]] = [[] for _ in importances]
    left = [len(imp) for imp in importances]
    for _, g, c in pooled:
        if budget <= 0:
            break
        if left[g] > 1:
            removed[g].append(c)
            left[g] -= 1
            budget -= 1
    return [sorted(r) for r in removed]


@PRUNING_METHODS.register("global-filter")
class GlobalFilterPruning(L1FilterPruning):
    """Global filter pruning: group L1 importance (normalised by each group's mean) ranked across all
    layers; the rate ``rho`` is met on the exact parameter count by the usual ratio search."""

    def select(self, importances: Sequence[torch.Tensor], ratio: float) -> list[list[int]]:
        return global_selection(importances, ratio)


def empirical_fisher_diagonal(model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """Mean over the batch's samples of each parameter's squared per-sample gradient of the
    cross-entropy (model in eval mode: BatchNorm uses its running statistics)."""
    probe = copy.deepcopy(model)
    probe.eval()
    params = dict(probe.named_parameters())
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    x, y = batch
    for i in range(len(y)):
        loss = F.cross_entropy(probe(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for name, g in zip(params, grads, strict=True):
            if g is not None:
                fisher[name] += g.detach() ** 2
    return {name: f / len(y) for name, f in fisher.items()}


@PRUNING_METHODS.register("hessian-group")
class HessianGroupPruning(StructuredPruning):
    """OBD group saliency with the empirical-Fisher Hessian diagonal, through Torch-Pruning's
    ``GroupHessianImportance`` (the lowest ``sum w^2 F`` channels go first)."""

    needs_batch = True

    def __init__(self) -> None:
        self._importance = tp.importance.GroupHessianImportance()

    def prepare(self, model: nn.Module, batch: Batch) -> None:
        fisher = empirical_fisher_diagonal(model, batch)
        for name, p in model.named_parameters():
            p.grad = fisher[name].clone()

    def importance(self, group: Any, generator: torch.Generator) -> torch.Tensor:
        score: torch.Tensor = self._importance(group)
        return score
