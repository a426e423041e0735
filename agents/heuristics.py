"""Heuristic baseline agents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agents.base import AGENTS, Agent
from fedsimenv.actions import encode_decision


@AGENTS.register("equal")
class EqualAgent(Agent):
    """Every device, no pruning (rho = 0), equal bandwidth shares: plain FedAvg."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        n = self.context.num_devices
        return encode_decision(np.ones(n, bool), np.zeros(n), np.ones(n), self.context.action)


@AGENTS.register("random")
class RandomAgent(Agent):
    """Uniform random actions in the canonical Box, from the agent's own seeded stream."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        return self.rng.uniform(-1.0, 1.0, size=self.context.action_space.shape).astype(np.float32)
