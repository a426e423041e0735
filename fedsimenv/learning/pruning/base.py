"""The pruning-method interface, its registry and parameter counting.

The pruning rate ``rho`` is the fraction of *all* model parameters removed (weights, biases and norm
parameters counted). Every method returns soft masks (True = keep): shapes stay unchanged, pruned
entries are held at zero, so differently pruned devices can be trained together and aggregated entry
by entry. Structured methods can also return the physically slimmed (hard) model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fedsimenv.registry import Registry

Masks = dict[str, torch.Tensor]
#: A calibration batch ``(inputs, labels)`` for data-driven criteria (SNIP, Taylor) and for tracing.
Batch = tuple[torch.Tensor, torch.Tensor]


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight tensors of conv and linear layers (what unstructured methods prune)."""
    result: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            result[f"{module_name}.weight" if module_name else "weight"] = module.weight
    return result


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def kept_parameters(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> int:
    """Parameters that survive ``masks`` (unmasked parameters count in full)."""
    total = 0
    for name, param in model.named_parameters():
        total += int(masks[name].sum().item()) if name in masks else param.numel()
    return total


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned entries of ``model``'s parameters in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device))


def check_rate(rho: float) -> None:
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"pruning rate rho must be in [0, 1), got {rho}")


class PruningMethod(ABC):
    """A pruning criterion: ``masks(model, rho, ...)`` -> boolean keep-masks for some parameters.

    Attributes:
        sparse_index_overhead: Whether an upload of the pruned model needs its mask as well
            (one bit per prunable weight for an unstructured mask; structured methods need none).
        structured: Whether whole channels are removed (then :meth:`hard` gives a slimmed model).
        needs_batch: Whether the criterion reads a calibration batch.
    """

    sparse_index_overhead: bool = True
    structured: bool = False
    needs_batch: bool = False

    @abstractmethod
    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        """Boolean masks (True = keep) removing a fraction ``rho`` of the model's parameters.

        Args:
            model: The model to prune (left unchanged).
            rho: Fraction of all parameters to remove, in [0, 1).
            generator: Randomness for random criteria and tie-breaking.
            batch: Calibration data; required by methods with ``needs_batch`` and by structured ones
                (to trace the model's dependency graph).
        """

    def reset(self) -> None:  # noqa: B027 - optional hook, default no-op
        """A new episode starts (criteria with state across rounds forget it here)."""

    def after_round(self, model: nn.Module) -> None:  # noqa: B027 - optional hook, default no-op
        """The global model after a round's aggregation (criteria that track training, e.g. movement
        pruning or a gradual schedule, update their state here)."""

    def state_dict(self) -> dict[str, Any]:
        """State carried across rounds, for checkpoints (none by default)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Inverse of :meth:`state_dict`."""

    def hard(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> nn.Module:
        """A physically slimmed copy of ``model`` (structured methods only)."""
        raise NotImplementedError(
            f"{type(self).__name__} is unstructured: its sparsity has no dense slimmed (hard) form"
        )


PRUNING_METHODS: Registry[type[PruningMethod]] = Registry("pruning method")
