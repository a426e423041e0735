"""Structured (channel/filter) pruning through Torch-Pruning's dependency graph.

Torch-Pruning groups every set of coupled channels (a conv's filters, the next layer's input
channels, the norm parameters between them, and every layer joined by a residual add) so that
removing a channel keeps the network consistent. A method here only ranks the channels of each group.

Soft and hard forms come from one plan: for each group, which root channels go. The soft form zeroes
the coupled slices of every parameter (out-channel rows, in-channel columns, norm entries, biases);
the hard form removes them with Torch-Pruning. Both give the same outputs on the kept structure when
the model's norms are per-channel (BatchNorm, or none). With LayerNorm/GroupNorm the soft form's
zeroed channels still enter the normalisation statistics, so the two differ slightly.

**rho -> channel-ratio mapping.** Pruning a fraction p of the channels of every group removes
roughly p of each layer's outputs and p of its inputs, so ~``1 - (1 - p)^2`` of its weights; the
inverse ``p ~ 1 - sqrt(1 - rho)`` is only a starting point because the output layer keeps its
outputs, the input layer its inputs, and channels are whole numbers. :func:`channel_ratio_for_rho`
bisects the uniform per-group ratio p on the *exact* parameter count of the resulting masks and
returns the p whose removed fraction is closest to rho; for models whose channels are many (ResNets,
VGG, MobileNetV2) it is within 1% of rho; for tiny models the granularity of one channel
(e.g. ~3% of the small CNN) limits it, and the trainer reports the achieved rate.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from fedsimenv.learning.models import classifier_of
from fedsimenv.learning.pruning.base import (
    PRUNING_METHODS,
    Batch,
    Masks,
    PruningMethod,
    check_rate,
    count_parameters,
)

#: Evaluations of the channel-ratio search, and the removed-fraction error at which it stops.
SEARCH_STEPS = 16
RHO_TOLERANCE = 0.002


@dataclass
class _Group:
    root_name: str
    channels: int
    importance: torch.Tensor  # higher = more important, one per root channel


class _Graph:
    """A model copy, its dependency graph and its channel groups with their importance."""

    def __init__(self, method: StructuredPruning, model: nn.Module, generator: torch.Generator, batch: Batch):
        self.method = method
        self.model = copy.deepcopy(model)
        self.model.eval()  # tracing must not update BatchNorm running statistics
        example = batch[0][:1]
        self.graph = tp.DependencyGraph().build_dependency(self.model, example_inputs=example)
        self.names = {module: name for name, module in self.model.named_modules()}
        self.params = dict(self.model.named_parameters())
        method.prepare(self.model, batch)
        ignored = [classifier_of(self.model)]
        self.groups: list[_Group] = []
        for group in self.graph.get_all_groups(
            ignored_layers=ignored, root_module_types=(nn.Conv2d, nn.Linear)
        ):
            root = group[0].dep.target.module
            score = method.importance(group, generator).detach().to(torch.float64).cpu()
            self.groups.append(_Group(self.names[root], len(score), score))
        self.model.zero_grad(set_to_none=True)

    def selection(self, ratio: float) -> list[list[int]]:
        """Root channels to remove from each group at the channel ratio ``ratio`` (the method's rule)."""
        return self.method.select([g.importance for g in self.groups], ratio)

    def _pruning_group(self, group: _Group, idxs: Sequence[int]) -> Any:
        root = dict(self.model.named_modules())[group.root_name]
        handler = self.graph.get_pruner_of_module(root).prune_out_channels
        return self.graph.get_pruning_group(root, handler, list(idxs))

    def masks(self, selection: list[list[int]]) -> Masks:
        """Soft masks over every parameter for ``selection`` (the coupled slices set to False)."""
        masks: Masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in self.params.items()}
        for group, idxs in zip(self.groups, selection, strict=True):
            if not idxs:
                continue
            for dep, dep_idxs in self._pruning_group(group, idxs):
                module = dep.target.module
                if module not in self.names or not isinstance(module, nn.Module):
                    continue
                prefix = self.names[module]
                index = torch.as_tensor([int(i) for i in dep_idxs], dtype=torch.long)
                # Input-channel pruning slices dim 1 of a dense conv/linear weight; everything else
                # (outputs, depthwise convs, norm entries, biases) is indexed by channel on dim 0.
                in_dim = self.graph.is_in_channel_pruning_fn(
                    dep.handler
                ) and not self.graph.is_out_channel_pruning_fn(dep.handler)
                for pname, _param in module.named_parameters(recurse=False):
                    key = f"{prefix}.{pname}" if prefix else pname
                    dense = isinstance(module, nn.Linear) or (
                        isinstance(module, nn.Conv2d) and module.groups == 1
                    )
                    if in_dim and dense and pname == "weight":
                        masks[key][:, index] = False
                    elif not in_dim or not dense:
                        if in_dim and pname == "bias":
                            continue  # a bias belongs to the outputs
                        masks[key][index] = False
        return masks

    def kept(self, masks: Masks) -> int:
        return sum(int(m.sum()) for m in masks.values())

    def prune(self, selection: list[list[int]]) -> nn.Module:
        """Physically remove ``selection`` from the copy and return it."""
        for group, idxs in zip(self.groups, selection, strict=True):
            if idxs:
                self._pruning_group(group, idxs).prune()
        return self.model


def channel_ratio_for_rho(graph: _Graph, rho: float, total_params: int) -> tuple[float, Masks]:
    """The uniform channel ratio whose exact removed-parameter fraction is closest to ``rho``.

    A bracketing search (regula falsi, falling back to bisection) on ``removed(ratio)``, which is a
    non-decreasing step function: it starts from ``1 - sqrt(1 - rho)`` and stops once within
    :data:`RHO_TOLERANCE` or after :data:`SEARCH_STEPS` evaluations (each builds the masks once).
    """
    if rho == 0.0:
        return 0.0, graph.masks(graph.selection(0.0))

    def removed(ratio: float) -> tuple[float, Masks]:
        masks = graph.masks(graph.selection(ratio))
        return 1.0 - graph.kept(masks) / total_params, masks

    low, f_low = 0.0, -rho
    high, f_high = 1.0, 1.0 - rho  # an upper bound on removed(1) - rho, never evaluated
    ratio = 1.0 - (1.0 - rho) ** 0.5
    best: tuple[float, float, Masks] | None = None
    for step in range(SEARCH_STEPS):
        achieved, masks = removed(ratio)
        if best is None or abs(achieved - rho) < abs(best[1] - rho):
            best = (ratio, achieved, masks)
        if abs(achieved - rho) <= RHO_TOLERANCE:
            break
        if achieved < rho:
            low, f_low = ratio, achieved - rho
        else:
            high, f_high = ratio, achieved - rho
        # Interpolate on even steps, bisect on odd ones: robust on a step function.
        interpolated = low - f_low * (high - low) / (f_high - f_low)
        ratio = interpolated if step % 2 == 0 and low < interpolated < high else 0.5 * (low + high)
    assert best is not None
    return best[0], best[2]


class StructuredPruning(PruningMethod):
    """Base of the channel-pruning methods: subclasses define the per-channel importance."""

    sparse_index_overhead = False
    structured = True

    def prepare(self, model: nn.Module, batch: Batch) -> None:
        """Hook before importances are computed (Taylor computes gradients here)."""

    @abstractmethod
    def importance(self, group: Any, generator: torch.Generator) -> torch.Tensor:
        """One score per root channel of the Torch-Pruning ``group``; the lowest go first."""

    def select(self, importances: Sequence[torch.Tensor], ratio: float) -> list[list[int]]:
        """Root channels to remove from each group: the ``int(ratio x channels)`` least important of
        every group (one uniform ratio), at least one channel kept per group."""
        result: list[list[int]] = []
        for importance in importances:
            channels = len(importance)
            remove = min(int(ratio * channels), channels - 1)
            order = torch.argsort(importance, stable=True)
            result.append(sorted(int(i) for i in order[:remove]))
        return result

    def _plan(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None
    ) -> tuple[_Graph, float, Masks]:
        check_rate(rho)
        if batch is None:
            raise ValueError(f"{type(self).__name__} needs a batch (inputs, labels) to trace the model")
        graph = _Graph(self, model, generator, batch)
        ratio, masks = channel_ratio_for_rho(graph, rho, count_parameters(model))
        return graph, ratio, masks

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        _, _, masks = self._plan(model, rho, generator, batch)
        # Only masks that remove something are returned: smaller uploads, faster masking.
        return {
            name: m.to(p.device) for (name, p) in model.named_parameters() if not (m := masks[name]).all()
        }

    def hard(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> nn.Module:
        graph, ratio, _ = self._plan(model, rho, generator, batch)
        return graph.prune(graph.selection(ratio))


@PRUNING_METHODS.register("l1-filter")
class L1FilterPruning(StructuredPruning):
    """L1-norm filter pruning (Li et al., ICLR 2017): channels with the smallest L1 norm go.

    Through Torch-Pruning's ``GroupMagnitudeImportance(p=1)`` the norm is taken over every parameter
    coupled to the channel (filter, norm scale, next layer's input slice), averaged over the group;
    Li et al. score the filter alone.
    """

    def __init__(self) -> None:
        self._importance = tp.importance.GroupMagnitudeImportance(p=1)

    def importance(self, group: Any, generator: torch.Generator) -> torch.Tensor:
        score: torch.Tensor = self._importance(group)
        return score


@PRUNING_METHODS.register("taylor")
class TaylorPruning(StructuredPruning):
    """First-order Taylor importance (Molchanov et al., CVPR 2019): |sum over a channel's parameters
    of w * dL/dw| on one calibration batch, through Torch-Pruning's ``GroupTaylorImportance``."""

    needs_batch = True

    def __init__(self) -> None:
        self._importance = tp.importance.GroupTaylorImportance()

    def prepare(self, model: nn.Module, batch: Batch) -> None:
        # Train-mode forward (as in training) but the running statistics are put back afterwards:
        # the hard model must carry the same statistics as the soft one.
        saved = {name: b.clone() for name, b in model.named_buffers()}
        model.zero_grad()
        model.train()
        F.cross_entropy(model(batch[0]), batch[1]).backward()  # type: ignore[no-untyped-call]
        model.eval()
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])

    def importance(self, group: Any, generator: torch.Generator) -> torch.Tensor:
        score: torch.Tensor = self._importance(group)
        return score


@PRUNING_METHODS.register("random-filter")
class RandomFilterPruning(StructuredPruning):
    """Random channels (a baseline), drawn from the injected generator (Torch-Pruning's own random
    importance would use the global RNG)."""

    def importance(self, group: Any, generator: torch.Generator) -> torch.Tensor:
        channels = len(group[0].idxs)
        return torch.rand(channels, generator=generator, dtype=torch.float64)


@PRUNING_METHODS.register("width")
class WidthPruning(StructuredPruning):
    """HeteroFL-style width slicing (Diao et al., ICLR 2021): every group keeps its *leading*
    channels, so a device's model is the top-left slice of the global tensors (see
    :func:`fedsimenv.learning.aggregation.heterofl_aggregate`)."""

    def importance(self, group: Any, generator: torch.Generator) -> torch.Tensor:
        channels = len(group[0].idxs)
        return -torch.arange(channels, dtype=torch.float64)
