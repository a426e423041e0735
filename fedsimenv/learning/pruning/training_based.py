"""Criteria that look at how weights train: the lottery ticket with rewinding, and movement pruning.

``lottery-ticket`` -- iterative magnitude pruning with weight rewinding (Frankle & Carbin, ICLR 2019;
rewinding to iteration ``k``: Frankle et al., ICML 2020). From the model's weights ``theta_0`` train
``k`` steps to ``theta_k`` (the rewind point) and on to ``theta_T``; then ``iterations`` times: remove
the smallest-magnitude surviving weights of ``theta_T`` over all layers (the kept fraction shrinks
geometrically to its target), rewind the survivors to ``theta_k`` and train again to ``T`` under the
mask. Simplified for a per-round criterion: the "training" is ``train_steps`` full-batch SGD steps on
the device's calibration batch (the paper trains to convergence on the whole training set), and the
trainer uses only the mask (:func:`lottery_ticket` also returns the rewound weights for a caller that
restarts from them). With ``train_steps = 0`` it is global magnitude pruning.

``movement`` -- movement pruning (Sanh, Wolf & Rush, NeurIPS 2020): the score of a weight is
``S = -sum_t (dL/dW)_t W_t``, large for weights moving away from zero, and the lowest-scoring weights
of every layer go (Sanh et al.'s per-matrix top-v). In the co-simulation the weights train between
rounds: with SGD, ``-(dL/dW) ~ (W_{t+1} - W_t) / lr``, so each round adds ``W_t (W_{t+1} - W_t)``
(the global model before and after aggregation; the constant 1/lr does not change the ranking)
through :meth:`PruningMethod.after_round`, and the coming round adds ``-W g`` of the calibration batch.
Simplified: the movement is the aggregated global model's, once per round, not every local step's;
the scores restart with each episode (:meth:`PruningMethod.reset`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

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

State = dict[str, torch.Tensor]


def _sgd_steps(model: nn.Module, batch: Batch, steps: int, lr: float, masks: Masks) -> None:
    """``steps`` full-batch SGD steps on ``batch`` in place, pruned weights held at zero."""
    params = dict(model.named_parameters())
    for _ in range(steps):
        loss = F.cross_entropy(model(batch[0]), batch[1])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        with torch.no_grad():
            for (name, p), g in zip(params.items(), grads, strict=True):
                if g is not None:
                    p.sub_(lr * g)
                if name in masks:
                    p.mul_(masks[name])


def lottery_ticket(
    model: nn.Module,
    rho: float,
    batch: Batch,
    iterations: int,
    rewind_step: int,
    train_steps: int,
    learning_rate: float,
) -> tuple[Masks, State]:
    """IMP with rewinding: the final masks and the rewound weights ``theta_k`` under them."""
    check_rate(rho)
    if iterations < 1 or not 0 <= rewind_step <= train_steps:
        raise ValueError(
            f"need iterations >= 1 and 0 <= rewind_step <= train_steps, got {iterations}, "
            f"{rewind_step}, {train_steps}"
        )
    probe = copy.deepcopy(model)
    probe.train()
    weights = prunable_weights(probe)
    prunable = sum(w.numel() for w in weights.values())
    remove = min(round(rho * count_parameters(model)), prunable)
    masks: Masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
    _sgd_steps(probe, batch, rewind_step, learning_rate, {})
    rewind = {k: v.detach().clone() for k, v in probe.state_dict().items()}
    _sgd_steps(probe, batch, train_steps - rewind_step, learning_rate, {})
    for i in range(1, iterations + 1):
        kept_target = round(prunable * (1.0 - remove / prunable) ** (i / iterations)) if prunable else 0
        scores = {
            k: torch.where(masks[k], w.detach().abs(), torch.full_like(w, -1.0)) for k, w in weights.items()
        }
        masks = global_masks(weights, scores, prunable - kept_target)
        probe.load_state_dict(rewind)
        with torch.no_grad():
            for name, mask in masks.items():
                weights[name].mul_(mask)
        if i < iterations:  # the last mask is final: no need to retrain
            _sgd_steps(probe, batch, train_steps - rewind_step, learning_rate, masks)
    rewound = {k: v.detach().clone() for k, v in probe.state_dict().items()}
    return masks, rewound


@PRUNING_METHODS.register("lottery-ticket")
class LotteryTicketPruning(PruningMethod):
    """Iterative magnitude pruning with rewinding to step ``rewind_step`` (see the module docstring).

    Args:
        iterations: Prune-rewind-retrain cycles.
        rewind_step: k, the SGD step whose weights the survivors are rewound to.
        train_steps: T, SGD steps of each training run on the calibration batch.
        learning_rate: SGD step size of those runs.
    """

    needs_batch = True

    def __init__(
        self, iterations: int = 3, rewind_step: int = 1, train_steps: int = 5, learning_rate: float = 0.05
    ) -> None:
        self.iterations = iterations
        self.rewind_step = rewind_step
        self.train_steps = train_steps
        self.learning_rate = learning_rate

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        if batch is None:
            raise ValueError("lottery-ticket needs a calibration batch (inputs, labels) to train on")
        masks, _ = lottery_ticket(
            model, rho, batch, self.iterations, self.rewind_step, self.train_steps, self.learning_rate
        )
        return masks


@PRUNING_METHODS.register("movement")
class MovementPruning(PruningMethod):
    """Movement pruning: per layer, the weights with the lowest accumulated ``W dW`` go."""

    needs_batch = True

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.scores: dict[str, torch.Tensor] = {}
        self._previous: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "scores": {k: v.detach().cpu().clone() for k, v in self.scores.items()},
            "previous": None
            if self._previous is None
            else {k: v.detach().cpu().clone() for k, v in self._previous.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scores = {k: v.clone() for k, v in state.get("scores", {}).items()}
        previous = state.get("previous")
        self._previous = None if previous is None else {k: v.clone() for k, v in previous.items()}

    def _observe(self, model: nn.Module) -> None:
        if self._previous is None:
            self._previous = {k: w.detach().clone() for k, w in prunable_weights(model).items()}

    def after_round(self, model: nn.Module) -> None:
        current = {k: w.detach().clone() for k, w in prunable_weights(model).items()}
        if self._previous is not None:
            for k, w in current.items():
                step = self._previous[k] * (w - self._previous[k])
                self.scores[k] = self.scores.get(k, torch.zeros_like(w)) + step
        self._previous = current

    def movement_scores(self, model: nn.Module, batch: Batch | None) -> dict[str, torch.Tensor]:
        """Accumulated movement plus ``-W g`` of ``batch`` (when given)."""
        weights = prunable_weights(model)
        scores = {k: self.scores.get(k, torch.zeros_like(w)).clone() for k, w in weights.items()}
        if batch is not None:
            probe = copy.deepcopy(model)
            probe.train()
            probe_weights = prunable_weights(probe)
            loss = F.cross_entropy(probe(batch[0]), batch[1])
            grads = torch.autograd.grad(loss, list(probe_weights.values()))
            for (k, w), g in zip(probe_weights.items(), grads, strict=True):
                scores[k] = scores[k] - (w * g).detach()
        return scores

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        check_rate(rho)
        self._observe(model)
        weights = prunable_weights(model)
        scores = self.movement_scores(model, batch)
        prunable = sum(w.numel() for w in weights.values())
        rate = min(1.0, round(rho * count_parameters(model)) / prunable) if prunable else 0.0
        masks: Masks = {}
        for name, w in weights.items():
            keep = torch.ones(w.numel(), dtype=torch.bool, device=w.device)
            keep[torch.argsort(scores[name].flatten(), stable=True)[: round(rate * w.numel())]] = False
            masks[name] = keep.view_as(w)
        return masks
