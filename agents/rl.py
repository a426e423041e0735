"""Trained RL policies as agents: ``--agent ppo:DIR/policy.zip`` (or ``sac:...``).

``fedsimenv train`` writes ``policy.zip`` and, next to it, ``train.json`` with the observation
scaling the policy was trained with (:class:`fedsimenv.wrappers.ScaledFlatObservation`); the agent
applies the same scaling and acts deterministically. Needs the ``rl`` extra (stable-baselines3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import POLICY_AGENTS, Agent, AgentContext


class PolicyAgent(Agent):
    """Replays a saved Stable-Baselines3 policy.

    Args:
        context: The env's sizes and action encoding.
        seed: Unused (the policy acts deterministically).
        path: The saved ``policy.zip``; ``train.json`` must sit beside it.

    Raises:
        ValueError: the file is missing, or the policy was trained for another number of devices.
    """

    algorithm: ClassVar[str] = ""

    def __init__(self, context: AgentContext, seed: int | None = None, path: str = "") -> None:
        super().__init__(context, seed)
        policy = Path(path)
        meta_path = policy.parent / "train.json"
        if not policy.is_file():
            raise ValueError(f"agent {self.algorithm}:{path}: policy file not found")
        if not meta_path.is_file():
            raise ValueError(
                f"agent {self.algorithm}:{path}: {meta_path} (written by fedsimenv train) not found"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("algo") != self.algorithm:
            raise ValueError(
                f"agent {self.algorithm}:{path}: the policy was trained with {meta.get('algo')!r}; "
                f"use --agent {meta.get('algo')}:{path}"
            )
        if meta.get("num_devices") != context.num_devices:
            raise ValueError(
                f"agent {self.algorithm}:{path}: trained for {meta.get('num_devices')} devices, "
                f"the scenario has {context.num_devices}"
            )
        self.scaling: dict[str, Any] = meta["observation_scaling"]
        try:
            from stable_baselines3 import PPO, SAC
        except ImportError:
            raise ValueError("RL policy agents need stable-baselines3: pip install 'fedsimenv[rl]'") from None
        cls: Any = {"ppo": PPO, "sac": SAC}[self.algorithm]
        self.model = cls.load(str(policy), device="cpu")

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        from fedsimenv.wrappers import scale_observation

        action, _ = self.model.predict(scale_observation(observation, self.scaling), deterministic=True)
        return np.asarray(action, dtype=np.float32).reshape(self.context.action_space.shape)


@POLICY_AGENTS.register("ppo")
class PPOAgent(PolicyAgent):
    """A saved PPO policy."""

    algorithm = "ppo"


@POLICY_AGENTS.register("sac")
class SACAgent(PolicyAgent):
    """A saved SAC policy."""

    algorithm = "sac"
