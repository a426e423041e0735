"""The one agent protocol: every decision maker (heuristic, optimiser, RL policy, literature
algorithm) is constructed from an :class:`AgentContext`, reset with the episode's info, and maps
``(observation, info)`` to an action in the env's canonical action space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from fedsimenv.config import ActionConfig, ScenarioConfig
from fedsimenv.registry import Registry


@dataclass(frozen=True)
class AgentContext:
    """What an agent knows about the environment before the first step."""

    num_devices: int
    action_space: spaces.Box
    action: ActionConfig
    total_bandwidth_hz: float

    @classmethod
    def from_scenario(cls, config: ScenarioConfig, action_space: spaces.Box) -> AgentContext:
        return cls(
            num_devices=config.cell.num_devices,
            action_space=action_space,
            action=config.action,
            total_bandwidth_hz=config.network.bandwidth_hz,
        )


class Agent(ABC):
    """Base class of all agents.

    Args:
        context: Sizes and action encoding of the environment.
        seed: Seed of the agent's own random stream (agents never use a global RNG).
    """

    def __init__(self, context: AgentContext, seed: int | None = None) -> None:
        self.context = context
        self.rng = np.random.default_rng(seed)

    def reset(self, info: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook, default no-op
        """Called after ``env.reset`` with its info."""

    @abstractmethod
    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        """The action for the coming round."""


AGENTS: Registry[type[Agent]] = Registry("agent")


def make_agent(name: str, context: AgentContext, seed: int | None = None) -> Agent:
    """Build registered agent ``name``."""
    return AGENTS.get(name)(context, seed)
