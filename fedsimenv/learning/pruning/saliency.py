"""Pruning-at-initialisation saliencies that look at gradient flow: GraSP and SynFlow (unstructured,
ranked over all conv/linear weights together).

``grasp`` -- GraSP (Wang, Zhang & Grosse, ICLR 2020) keeps the gradient flow ``g^T g`` after pruning:
removing weight ``theta_q`` changes it by about ``S(theta_q) = -theta_q (H g)_q``, with ``g`` the loss
gradient and ``H`` the Hessian on a batch, so the weights with the *highest* ``S`` go (their removal
reduces gradient flow least, or raises it). ``H g`` is a Hessian-vector product by double
backpropagation. Simplified: one calibration batch and logits at temperature 1 (the paper uses
several batches and a temperature of 200 on the logits).

``synflow`` -- SynFlow (Tanaka et al., NeurIPS 2020), data-free: on a copy whose parameters are
replaced by their absolute values (in float64), ``R = 1^T f(1)`` for an all-ones input, and the
saliency is ``|dR/dtheta * theta|`` (the synaptic flow through each weight). Pruning is iterative: over
``iterations`` rounds the kept fraction shrinks exponentially to its target, with the scores
recomputed on the masked network each round; this conservation of flow avoids layer collapse (no
layer is pruned away while others keep weights). It reads the calibration batch's input shape only.
Simplified: the network is put in eval mode (BatchNorm with its running statistics, made positive).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fedsimenv.learning.pruning.base import (
    PRUNING_METHODS,
    Batch,
    Masks,
    PruningMethod,
    check_rate,
    count_parameters,
    prunable_weights,
)
from fedsimenv.learning.pruning.unstructured import global_masks


def grasp_scores(model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """``S = -theta * (H g)`` of every conv/linear weight on ``batch`` (the model is left unchanged)."""
    probe = copy.deepcopy(model)
    probe.train()
    weights = prunable_weights(probe)
    params = list(weights.values())
    loss = F.cross_entropy(probe(batch[0]), batch[1])
    grads = torch.autograd.grad(loss, params, create_graph=True)
    z = torch.stack([(g * g.detach()).sum() for g in grads]).sum()
    hg = torch.autograd.grad(z, params)
    return {name: (-w * h).detach() for (name, w), h in zip(weights.items(), hg, strict=True)}


@PRUNING_METHODS.register("grasp")
class GraSPPruning(PruningMethod):
    """GraSP: remove the weights with the highest ``-theta (H g)`` over all layers."""

    needs_batch = True

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        check_rate(rho)
        if batch is None:
            raise ValueError("GraSP needs a calibration batch (inputs, labels)")
        scores = grasp_scores(model, batch)
        weights = prunable_weights(model)
        # global_masks removes the lowest scores: negate so the highest S go first.
        return global_masks(weights, {k: -v for k, v in scores.items()}, round(rho * count_parameters(model)))


class _SynFlowProbe:
    """A float64 copy of the model with every parameter and buffer replaced by its absolute value."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).double()
        self.model.eval()
        with torch.no_grad():
            for value in self.model.state_dict().values():
                if value.is_floating_point():
                    value.abs_()
        self.weights = prunable_weights(self.model)
        self.original = {name: w.detach().clone() for name, w in self.weights.items()}

    def scores(self, input_shape: tuple[int, ...], masks: Masks | None) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            for name, w in self.weights.items():
                mask = (masks or {}).get(name)
                w.copy_(self.original[name] if mask is None else self.original[name] * mask.to(w.device))
        device = self.original[next(iter(self.original))].device
        output = self.model(torch.ones((1, *input_shape), dtype=torch.float64, device=device))
        grads = torch.autograd.grad(output.sum(), list(self.weights.values()))
        return {
            name: (g * w).detach().abs() for (name, w), g in zip(self.weights.items(), grads, strict=True)
        }


def synflow_scores(
    model: nn.Module, input_shape: tuple[int, ...], masks: Masks | None = None
) -> dict[str, torch.Tensor]:
    """``|dR/dtheta * theta|`` of every conv/linear weight of ``|model|`` masked by ``masks``."""
    return _SynFlowProbe(model).scores(input_shape, masks)


@PRUNING_METHODS.register("synflow")
class SynFlowPruning(PruningMethod):
    """SynFlow, iterative and data-free (``iterations`` rounds of exponentially shrinking kept sets).

    Args:
        iterations: Scoring rounds (the paper uses 100).
    """

    def __init__(self, iterations: int = 100) -> None:
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.iterations = iterations

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        check_rate(rho)
        if batch is None:
            raise ValueError("SynFlow needs a batch for the input shape (its values are not read)")
        weights = prunable_weights(model)
        prunable = sum(w.numel() for w in weights.values())
        remove = min(round(rho * count_parameters(model)), prunable)
        keep_fraction = 1.0 - remove / prunable if prunable else 1.0
        masks: Masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
        probe = _SynFlowProbe(model)
        for i in range(1, self.iterations + 1):
            kept_target = round(prunable * keep_fraction ** (i / self.iterations))
            scores = probe.scores(tuple(batch[0].shape[1:]), masks)
            # Pruned weights score -1: they stay pruned (masks are nested).
            scores = {k: torch.where(masks[k], s, torch.full_like(s, -1.0)) for k, s in scores.items()}
            masks = global_masks(weights, scores, prunable - kept_target)
        return masks
