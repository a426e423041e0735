"""The one agent protocol: every decision maker (heuristic, optimiser, RL policy, literature
algorithm) is constructed from an :class:`AgentContext`, reset with the episode's info, and maps
``(observation, info)`` to an action in the env's canonical action space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from fedsimenv.config import ActionConfig, ScenarioConfig
from fedsimenv.registry import Registry
from fedsimenv.view import SystemView

if TYPE_CHECKING:
    from fedsimenv.env import WirelessFLEnv


@dataclass(frozen=True)
class AgentContext:
    """What an agent knows about the environment before the first step.

    Attributes:
        num_devices: Devices in the cell N.
        action_space: The env's canonical ``Box(-1, 1, (3N,))``.
        action: How actions are decoded.
        total_bandwidth_hz: Shared uplink bandwidth B, Hz.
        system_view: Returns the env's read-only :class:`~fedsimenv.view.SystemView` of the coming
            round (``env.unwrapped.system_view``); ``None`` where the agent runs without one (an RL
            policy needs only the observation). Optimisers require it.
        max_rounds: The episode's length in rounds (``episode.max_rounds``); algorithms with a
            schedule (train, prune, fine-tune) plan on it. ``None`` where unknown.
    """

    num_devices: int
    action_space: spaces.Box
    action: ActionConfig
    total_bandwidth_hz: float
    system_view: Callable[[], SystemView] | None = None
    max_rounds: int | None = None

    @classmethod
    def from_scenario(
        cls,
        config: ScenarioConfig,
        action_space: spaces.Box,
        system_view: Callable[[], SystemView] | None = None,
    ) -> AgentContext:
        return cls(
            num_devices=config.cell.num_devices,
            action_space=action_space,
            action=config.action,
            total_bandwidth_hz=config.network.bandwidth_hz,
            system_view=system_view,
            max_rounds=config.episode.max_rounds,
        )

    def view(self) -> SystemView:
        """The coming round's system view; ``RuntimeError`` if the env provides none."""
        if self.system_view is None:
            raise RuntimeError(
                "this agent needs the env's system view: build its AgentContext with "
                "system_view=env.unwrapped.system_view"
            )
        return self.system_view()


class Agent(ABC):
    """Base class of all agents.

    Server-side algorithms (the federated pruning algorithms of the literature) are agents too: they
    may declare the learning-plane settings they are defined with (:attr:`learning_overrides`, e.g.
    FedMP's L1 filter pruning and R2SP aggregation), which :func:`configure_for_agent` applies to the
    scenario before the env is built, and take hold of the env's trainer in :meth:`bind` (to install
    a :class:`~fedsimenv.learning.strategy.TrainingStrategy` that chooses masks on the server).

    Args:
        context: Sizes and action encoding of the environment.
        seed: Seed of the agent's own random stream (agents never use a global RNG).
    """

    #: Dotted scenario overrides the algorithm needs (e.g. ``{"learning.aggregation": "r2sp"}``).
    learning_overrides: ClassVar[Mapping[str, Any]] = {}
    #: Optional action controls the agent decides (``power``, ``cpu_freq``, ``rb``):
    #: :func:`configure_for_agent` adds them to the scenario's ``action.controls`` (``rb`` only in
    #: OFDMA mode). They widen the action, never change the world or the learning task.
    wanted_controls: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: AgentContext, seed: int | None = None) -> None:
        self.context = context
        self.rng = np.random.default_rng(seed)

    def bind(self, env: WirelessFLEnv) -> None:  # noqa: B027 - optional hook, default no-op
        """Called once with the env before its first ``reset`` (server-side algorithms install their
        training strategy in ``env.trainer`` here)."""

    def reset(self, info: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook, default no-op
        """Called after ``env.reset`` with its info."""

    @abstractmethod
    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        """The action for the coming round."""


AGENTS: Registry[type[Agent]] = Registry("agent")
#: Agents that load a saved policy, named ``ALGO:PATH`` (``ppo:runs/x/policy.zip``); built with
#: ``cls(context, seed, path)``.
POLICY_AGENTS: Registry[type[Any]] = Registry("policy algorithm")


def make_agent(name: str, context: AgentContext, seed: int | None = None) -> Agent:
    """Build registered agent ``name``, or a saved policy named ``ALGO:PATH`` (see ``agents.rl``)."""
    algo, sep, path = name.partition(":")
    if sep:
        agent: Agent = POLICY_AGENTS.get(algo)(context, seed, path)
        return agent
    return AGENTS.get(name)(context, seed)


def check_agent_name(name: str) -> None:
    """Raise ``ValueError`` (listing the allowed names) unless ``name`` can be built by make_agent."""
    algo, sep, path = name.partition(":")
    if not sep:
        AGENTS.get(name)
        return
    POLICY_AGENTS.get(algo)
    if not path:
        raise ValueError(f"agent {name!r}: give the saved policy as {algo}:PATH/policy.zip")


#: Learning settings that define the trained model itself (architecture, normalisation): with
#: ``same_model`` an agent's overrides of these are not applied, so every agent trains one model.
MODEL_KEYS = ("learning.model", "learning.norm")


def learning_changes(
    config: ScenarioConfig, name: str, same_model: bool = False
) -> dict[str, dict[str, Any]]:
    """Agent ``name``'s learning overrides that differ from ``config``: ``{"applied": {...},
    "withheld": {...}}`` (withheld: model keys under ``same_model``). Empty dicts if none."""
    applied: dict[str, Any] = {}
    withheld: dict[str, Any] = {}
    if ":" in name:
        return {"applied": applied, "withheld": withheld}
    for key, value in AGENTS.get(name).learning_overrides.items():
        current: Any = config
        for part in key.split("."):
            current = getattr(current, part, None)
        if current == value:
            continue
        (withheld if same_model and key in MODEL_KEYS else applied)[key] = value
    return {"applied": applied, "withheld": withheld}


def configure_for_agent(config: ScenarioConfig, name: str, same_model: bool = False) -> ScenarioConfig:
    """``config`` with agent ``name``'s :attr:`Agent.learning_overrides` applied and its
    :attr:`Agent.wanted_controls` added to ``action.controls`` (unchanged if neither).

    With ``same_model`` the overrides of :data:`MODEL_KEYS` are left out: the agent trains the
    scenario's model (its algorithm-defining settings, e.g. FedMP's pruning and aggregation, still
    apply).
    """
    from fedsimenv.scenario import load_scenario

    if ":" in name:  # a saved policy (ALGO:PATH) trains with the scenario as it is
        return config
    overrides = learning_changes(config, name, same_model)["applied"]
    wanted = [c for c in AGENTS.get(name).wanted_controls if c != "rb" or config.network.access == "ofdma"]
    missing = [c for c in wanted if c not in config.action.controls]
    if missing:
        overrides["action.controls"] = [*config.action.controls, *missing]
    return load_scenario(config, overrides) if overrides else config
