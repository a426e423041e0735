"""Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", ICLR-W 2018).

The sparsity rises from ``s_i`` to the final ``s_f`` over ``n`` pruning steps ``delta_t`` apart,
starting at step ``t_0``, along the cubic schedule

    s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n delta_t))^3,  t in {t_0, t_0 + delta_t, ..., t_0 + n delta_t},

fast at first (while redundant weights abound) and slowly towards the end. At each step every layer
is pruned to ``s_t`` by magnitude; pruned weights stay masked, so the masks are nested.

In this project one step is one federated round (``delta_t = 1`` round, the trainer reports the end of
each round through :meth:`GradualMagnitudePruning.after_round`), ``s_i = 0``, and the ``rho`` a device
asks for is the *final* rate ``s_f``. Simplified: Zhu & Gupta count sparsity over each layer's weights;
here ``rho`` counts all parameters (the project's convention), spread over the layers at one common
rate as by the ``magnitude`` method, and the mask is recomputed from the current global weights at
each round's rate (nested as long as pruned weights stay zero, which a server that applies the masks,
as GWEP's does, ensures).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fedsimenv.learning.pruning.base import PRUNING_METHODS, Batch, Masks, PruningMethod, check_rate
from fedsimenv.learning.pruning.unstructured import MagnitudePruning


def zhu_gupta_sparsity(
    step: float, final: float, ramp_steps: float, initial: float = 0.0, start_step: float = 0.0
) -> float:
    """The cubic schedule's sparsity at ``step``: ``initial`` before ``start_step``, ``final`` from
    ``start_step + ramp_steps`` on (``ramp_steps`` = n delta_t)."""
    if ramp_steps <= 0:
        raise ValueError(f"ramp_steps must be > 0, got {ramp_steps}")
    progress = min(max((step - start_step) / ramp_steps, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


@PRUNING_METHODS.register("gradual-magnitude")
class GradualMagnitudePruning(PruningMethod):
    """Zhu & Gupta's gradual magnitude pruning: layer-wise magnitude masks at the cubic schedule's
    rate of the current round, towards the requested final rate ``rho``.

    Args:
        ramp_rounds: Rounds ``n delta_t`` over which the rate rises to its final value.
        start_round: Round ``t_0`` of the first pruning step.
    """

    def __init__(self, ramp_rounds: int = 10, start_round: int = 0) -> None:
        self.ramp_rounds = ramp_rounds
        self.start_round = start_round
        self.round = 0

    def reset(self) -> None:
        self.round = 0

    def after_round(self, model: nn.Module) -> None:
        self.round += 1

    def state_dict(self) -> dict[str, Any]:
        return {"round": self.round}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.round = int(state.get("round", 0))

    def rate_at(self, final: float) -> float:
        """This round's scheduled rate towards ``final``."""
        return zhu_gupta_sparsity(self.round, final, self.ramp_rounds, start_step=self.start_round)

    def masks(
        self, model: nn.Module, rho: float, generator: torch.Generator, batch: Batch | None = None
    ) -> Masks:
        check_rate(rho)
        return MagnitudePruning().masks(model, self.rate_at(rho), generator)
