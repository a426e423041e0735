"""Top-k accuracy (DWNP reports top-1 and top-5 on TinyImageNet)."""

from __future__ import annotations

import torch
from torch import nn


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(n,) bool: whether each sample's label is among its ``k`` highest logits (of tied logits the
    lower class index ranks first: a stable sort, where ``torch.topk`` promises no order)."""
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be in [1, {logits.shape[1]}] (the number of classes), got {k}")
    top = torch.argsort(logits, dim=1, descending=True, stable=True)[:, :k]
    return (top == labels[:, None]).any(dim=1)


@torch.no_grad()
def topk_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Share of the samples ``x`` whose label ``y`` is among ``model``'s ``k`` highest logits."""
    if len(y) == 0:
        raise ValueError("top-k accuracy needs at least one sample")
    was_training = model.training
    model.eval()
    try:
        return float(topk_correct(model(x), y, k).float().mean())
    finally:
        model.train(was_training)
