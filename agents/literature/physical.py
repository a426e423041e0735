"""The physically pruned (slimmed) model behind a structured soft mask.

A structured mask (whole channels of every coupled layer set to False) has a dense form with the
channels removed. The two compute the same function only without normalisation layers whose
statistics see the channel count: a soft-masked channel enters LayerNorm/GroupNorm statistics as
zeros, a removed one not at all. DWNP's tables report the deployed (physically pruned) model, so
its accuracy is worth reporting beside the soft-masked one.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fedsimenv.learning.pruning.structured import L1FilterPruning, _Graph


def physically_pruned(
    model: nn.Module, masks: Mapping[str, torch.Tensor], example: torch.Tensor
) -> nn.Module:
    """A slimmed copy of ``model`` without the channels ``masks`` removes whole.

    A channel counts as removed when its producing layer's weight row (the group root's output
    channel) is masked out entirely; every coupled slice then goes with it (Torch-Pruning).
    """
    batch = (example[:1], torch.zeros(1, dtype=torch.long, device=example.device))
    graph = _Graph(L1FilterPruning(), model, torch.Generator(), batch)
    selection: list[list[int]] = []
    for group in graph.groups:
        mask = masks.get(f"{group.root_name}.weight")
        if mask is None:
            selection.append([])
            continue
        rows = mask.flatten(1).any(dim=1).cpu()
        removed = [int(i) for i in torch.nonzero(~rows).flatten()]
        selection.append(removed[: group.channels - 1])
    return graph.prune(selection)
