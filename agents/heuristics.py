"""Heuristic baseline agents."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

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


def _top_k(scores: NDArray[np.float64], k: int) -> NDArray[np.bool_]:
    """Mask of the k largest scores (ties by lower index)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[:k]] = True
    return mask


class _SubsetAgent(Agent):
    """Selects ``ceil(selection_fraction * N)`` devices, no pruning, equal shares."""

    selection_fraction: ClassVar[float] = 0.5

    @property
    def num_selected(self) -> int:
        return max(1, math.ceil(self.selection_fraction * self.context.num_devices))

    def _encode(self, selected: NDArray[np.bool_]) -> NDArray[np.float32]:
        n = self.context.num_devices
        return encode_decision(selected, np.zeros(n), np.ones(n), self.context.action)


@AGENTS.register("uniform-pruning")
class UniformPruningAgent(Agent):
    """Every device, one pruning rate for all (``pruning_rate``, clipped to rho_max), equal shares."""

    pruning_rate: ClassVar[float] = 0.5

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        n = self.context.num_devices
        rho = min(self.pruning_rate, self.context.action.rho_max)
        return encode_decision(np.ones(n, bool), np.full(n, rho), np.ones(n), self.context.action)


@AGENTS.register("greedy-channel")
class GreedyChannelAgent(_SubsetAgent):
    """The K devices with the best channel gain this round (K = ceil(N / 2)), rho = 0, equal shares."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        gain_db = np.asarray(observation["channel_gain_db"], dtype=np.float64)
        return self._encode(_top_k(gain_db, self.num_selected))


@AGENTS.register("round-robin")
class RoundRobinAgent(_SubsetAgent):
    """K = ceil(N / 2) devices per round in cyclic order, rho = 0, equal shares."""

    def reset(self, info: Mapping[str, Any]) -> None:
        self._next = 0

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        n, k = self.context.num_devices, self.num_selected
        start = getattr(self, "_next", 0)
        selected = np.zeros(n, dtype=bool)
        selected[(start + np.arange(k)) % n] = True
        self._next = (start + k) % n
        return self._encode(selected)


@AGENTS.register("proportional-fair")
class ProportionalFairAgent(_SubsetAgent):
    """Proportional fair scheduling: the K = ceil(N / 2) devices with the largest ratio of
    instantaneous rate to their average served rate (EWMA, ``averaging`` per round).

    The rate proxy is the spectral efficiency ``log2(1 + g_k / median g)`` from the observation's
    gains, so the agent needs no system view; the ratio, not the scale, is what PF ranks by.
    """

    averaging: ClassVar[float] = 0.1

    def reset(self, info: Mapping[str, Any]) -> None:
        self._average = np.full(self.context.num_devices, 1e-6)

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        if not hasattr(self, "_average"):
            self.reset(info)
        gain_db = np.asarray(observation["channel_gain_db"], dtype=np.float64)
        rate = np.log2(1.0 + 10 ** ((gain_db - np.median(gain_db)) / 10))
        selected = _top_k(rate / self._average, self.num_selected)
        beta = self.averaging
        self._average = (1 - beta) * self._average + beta * np.where(selected, rate, 0.0)
        return self._encode(selected)
