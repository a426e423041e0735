"""The channel structure of a model for channel-level algorithms (DWNP's gates, FLOPs-targeted filter
pruning): the prunable channel groups, which layers each group feeds, and the FLOPs as a function of
the kept channels.

Groups come from Torch-Pruning's dependency graph through the learning plane's structured pruning
(``fedsimenv.learning.pruning.structured``), so a "channel" here is what structured pruning removes:
every coupled slice (a conv's filter, its norm entries, the next layer's input slice, and every
layer joined to it by a residual add). One gate vector per group.

FLOPs follow :mod:`fedsimenv.learning.flops` (2 x MACs + bias additions of conv and linear layers):
a dense layer whose input channels are controlled by group i and outputs by group o costs
``2 MACs f_i f_o + bias f_o``, with ``f`` the kept fraction of the group's channels (1 where no group
controls that side); a depthwise conv costs ``f_o`` times its full count. With 0/1 gates this is the
exact count of the soft-masked model; with relaxed gates it is differentiable, which is what DWNP's
regulariser needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from fedsimenv.learning.flops import layer_costs
from fedsimenv.learning.pruning import Masks
from fedsimenv.learning.pruning.structured import L1FilterPruning, _Graph

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class LayerFlops:
    """One conv/linear layer's full cost and the groups that control its channels."""

    name: str
    weight_flops: float  # 2 x MACs of the unpruned layer
    bias_adds: float
    in_group: int | None
    out_group: int | None
    depthwise: bool


class ChannelLayout:
    """Channel groups of ``model`` (structure only: build it once per architecture).

    Args:
        model: The model (left unchanged; a copy is traced).
        example: One input batch (to trace the dependency graph and count FLOPs).

    Attributes:
        sizes: Channels of each group.
        gate_modules: Per group, the modules whose outputs carry the group's channels and get gated:
            the producing conv/linear layers and the group's norm layers. DWNP inserts a gate after
            normalisation and activation (a non-negative gate commutes with ReLU, so after the norm
            is the same); gating the producer as well makes a gated forward pass *equal* to the
            soft-masked model's (a pruned channel enters LayerNorm/GroupNorm statistics as zeros in
            both), so the hypernetwork is trained on exactly the sub-network the weights train as.
        total_flops: Forward FLOPs of the unpruned model per sample.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        batch = (example[:1], torch.zeros(1, dtype=torch.long, device=example.device))
        self.graph = _Graph(L1FilterPruning(), model, torch.Generator(), batch)
        self.sizes = [g.channels for g in self.graph.groups]
        modules = dict(self.graph.model.named_modules())
        names = {module: name for name, module in modules.items()}
        in_group: dict[str, int] = {}
        out_group: dict[str, int] = {}
        self.gate_modules: list[list[str]] = []
        for index, group in enumerate(self.graph.groups):
            norms: list[str] = []
            producers: list[str] = []
            for dep, _ in self.graph._pruning_group(group, list(range(group.channels))):
                module = dep.target.module
                if module not in names:
                    continue
                name = names[module]
                if isinstance(module, _NORMS):
                    norms.append(name)
                elif isinstance(module, nn.Conv2d | nn.Linear):
                    out_fn = self.graph.graph.is_out_channel_pruning_fn(dep.handler)
                    if out_fn:
                        out_group[name] = index
                        producers.append(name)
                    else:
                        in_group[name] = index
            self.gate_modules.append(sorted(set(norms + producers)))
        input_shape = tuple(example.shape[1:])
        self.layers: list[LayerFlops] = []
        for name, cost in layer_costs(model, input_shape).items():
            module = modules[name]
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            self.layers.append(
                LayerFlops(
                    name=name,
                    weight_flops=2.0 * cost.weight_macs,
                    bias_adds=cost.bias_adds,
                    in_group=in_group.get(name),
                    out_group=out_group.get(name),
                    depthwise=depthwise,
                )
            )
        self.total_flops = sum(layer.weight_flops + layer.bias_adds for layer in self.layers)

    @property
    def num_channels(self) -> int:
        return sum(self.sizes)

    def flops(self, gates: Sequence[torch.Tensor]) -> torch.Tensor:
        """Forward FLOPs per sample for per-group gates in [0, 1] (differentiable in the gates)."""
        fractions = [g.float().mean() for g in gates]
        one = torch.ones((), device=fractions[0].device) if fractions else torch.ones(())
        total = torch.zeros((), device=one.device)
        for layer in self.layers:
            f_out = fractions[layer.out_group] if layer.out_group is not None else one
            f_in = fractions[layer.in_group] if layer.in_group is not None else one
            scale = f_out if layer.depthwise else f_in * f_out
            total = total + layer.weight_flops * scale + layer.bias_adds * f_out
        return total

    def flops_of_fractions(self, fractions: Sequence[float]) -> float:
        """Forward FLOPs per sample when group ``g`` keeps the fraction ``fractions[g]`` of its
        channels: :meth:`flops` in plain floats (it depends on the gates only through these
        fractions), for searches over kept-channel counts."""
        total = 0.0
        for layer in self.layers:
            f_out = fractions[layer.out_group] if layer.out_group is not None else 1.0
            f_in = fractions[layer.in_group] if layer.in_group is not None else 1.0
            scale = f_out if layer.depthwise else f_in * f_out
            total += layer.weight_flops * scale + layer.bias_adds * f_out
        return total

    def binarize(
        self, gates: Sequence[torch.Tensor], logits: Sequence[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """0/1 gates with at least one channel kept per group (the highest logit, else the first)."""
        result: list[torch.Tensor] = []
        for i, gate in enumerate(gates):
            hard = (gate.detach() > 0.5).float()
            if hard.sum() == 0:
                best = int(torch.argmax(logits[i]).item()) if logits is not None else 0
                hard[best] = 1.0
            result.append(hard)
        return result

    def masks(self, gates: Sequence[torch.Tensor]) -> Masks:
        """Soft keep-masks of the structured pruning that removes every channel whose gate is 0.

        Only parameters that lose something are included (as the structured pruners return them).
        """
        selection = [[int(i) for i in torch.nonzero(g.detach().cpu() <= 0.5).flatten()] for g in gates]
        for group_selection, size in zip(selection, self.sizes, strict=True):
            if len(group_selection) >= size:
                raise ValueError("every channel group must keep at least one channel (use binarize)")
        full = self.graph.masks(selection)
        return {name: m for name, m in full.items() if not bool(m.all())}

    def uniform_selection_gates(self, importance: Sequence[torch.Tensor], ratio: float) -> list[torch.Tensor]:
        """Gates removing the ``int(ratio * C)`` least important channels of every group (>= 1 kept)."""
        gates: list[torch.Tensor] = []
        for scores, size in zip(importance, self.sizes, strict=True):
            remove = min(int(ratio * size), size - 1)
            gate = torch.ones(size)
            gate[torch.argsort(scores.detach().cpu(), stable=True)[:remove]] = 0.0
            gates.append(gate)
        return gates


def l1_importance(model: nn.Module, example: torch.Tensor) -> list[torch.Tensor]:
    """L1 channel importance of every group at ``model``'s current weights (Li et al., 2017, through
    Torch-Pruning's group magnitude), in the group order of :class:`ChannelLayout`."""
    batch = (example[:1], torch.zeros(1, dtype=torch.long, device=example.device))
    graph = _Graph(L1FilterPruning(), model, torch.Generator(), batch)
    return [g.importance for g in graph.groups]


def l1_gates_for_flops(
    layout: ChannelLayout, importance: Sequence[torch.Tensor], keep_flops_fraction: float, steps: int = 30
) -> list[torch.Tensor]:
    """L1 filter pruning to a FLOPs budget: the smallest uniform channel ratio (bisection) whose
    exact FLOPs are at most ``keep_flops_fraction`` of the unpruned model's, with the same ratio in
    every group (Li et al. prune a fixed fraction per layer; the budget is FLOPs, as in DWNP)."""
    target = keep_flops_fraction * layout.total_flops
    low, high = 0.0, 1.0
    best = layout.uniform_selection_gates(importance, 1.0)
    for _ in range(steps):
        ratio = 0.5 * (low + high)
        gates = layout.uniform_selection_gates(importance, ratio)
        if float(layout.flops(gates)) <= target:
            high, best = ratio, gates
        else:
            low = ratio
    return best


@contextmanager
def gated(model: nn.Module, layout: ChannelLayout, gates: Sequence[torch.Tensor]) -> Iterator[None]:
    """Multiply the outputs of each group's gate modules by the group's gate, channel-wise (dim 1)."""
    modules = dict(model.named_modules())
    handles = []

    def make_hook(
        gate: torch.Tensor,
    ) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            shape = (1, -1, *([1] * (output.dim() - 2)))
            return output * gate.to(output.device, output.dtype).view(shape)

        return hook

    try:
        for names, gate in zip(layout.gate_modules, gates, strict=True):
            for name in names:
                handles.append(modules[name].register_forward_hook(make_hook(gate)))
        yield
    finally:
        for handle in handles:
            handle.remove()
