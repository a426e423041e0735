"""Trained RL policies as agents: ``--agent ppo:DIR/policy.zip`` (or ``sac:...``).

``fedsimenv train`` writes ``policy.zip`` and, next to it, ``train.json`` (algorithm, policy kind,
network sizes, observation features version). The agent rebuilds the policy from ``train.json`` and
known classes and reads only the weights (``policy.pth``, ``torch.load(weights_only=True)``): loading
a policy never executes code from the file (:mod:`agents.rl_policy`). It sees the features of
:mod:`agents.rl_features` (the observation plus the coming round's system view) and acts
deterministically. Needs the ``rl`` extra (stable-baselines3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import POLICY_AGENTS, Agent, AgentContext
from agents.rl_features import FEATURES_VERSION, flat_features


class PolicyAgent(Agent):
    """Replays a saved Stable-Baselines3 policy.

    Args:
        context: The env's sizes and action encoding.
        seed: Unused (the policy acts deterministically).
        path: The saved ``policy.zip``; ``train.json`` must sit beside it.

    Raises:
        ValueError: the file is missing or refused, or a fixed-size policy was trained for another N.
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
        if meta.get("features") != FEATURES_VERSION:
            raise ValueError(
                f"agent {self.algorithm}:{path}: the policy was trained on observation features "
                f"{meta.get('features')!r}; this version reads {FEATURES_VERSION!r} (retrain it)"
            )
        if meta.get("policy") != "device" and meta.get("num_devices") != context.num_devices:
            raise ValueError(
                f"agent {self.algorithm}:{path}: trained for {meta.get('num_devices')} devices, "
                f"the scenario has {context.num_devices} (only --policy device runs on any N)"
            )
        if context.max_rounds is None:
            raise ValueError(f"agent {self.algorithm}:{path}: needs the episode length (max_rounds)")
        self.max_rounds = context.max_rounds
        try:
            from agents.rl_policy import load_policy
        except ImportError:
            raise ValueError("RL policy agents need stable-baselines3: pip install 'fedsimenv[rl]'") from None
        self.policy = load_policy(policy, meta, context.num_devices)

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        features = flat_features(observation, self.context.view(), self.max_rounds)
        action, _ = self.policy.predict(features, deterministic=True)
        return np.asarray(action, dtype=np.float32).reshape(self.context.action_space.shape)


@POLICY_AGENTS.register("ppo")
class PPOAgent(PolicyAgent):
    """A saved PPO policy."""

    algorithm = "ppo"


@POLICY_AGENTS.register("sac")
class SACAgent(PolicyAgent):
    """A saved SAC policy."""

    algorithm = "sac"
