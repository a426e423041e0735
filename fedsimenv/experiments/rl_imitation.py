"""Behaviour cloning warm start: demonstrations from a teacher agent (``optimal``), regressed into an
SB3 actor-critic before RL fine-tuning.

Demonstrations are collected on the training env (usually the surrogate: the teacher's decisions
depend only on the system view, not on the learning plane, so the surrogate gives the same states
the teacher would see on real training up to the accuracy features). The actor's Gaussian mean is
fitted to the teacher's canonical action by mean squared error, with the rho and bandwidth
components of devices the teacher did not select left out (they do not change the decision); the
critic is fitted to the teacher's discounted returns-to-go, so PPO starts from a consistent value.
SAC (:func:`behaviour_clone` takes either): its deterministic action ``tanh(mean)`` is fitted the
same way, its twin Q(s, a) to the returns-to-go at the teacher's actions, its log std to a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedsimenv.config import ScenarioConfig
from fedsimenv.seeding import EpisodeStreams


@dataclass
class Demonstrations:
    """Teacher transitions: features (T, D), actions (T, 3N), component weights (T, 3N), returns (T,)."""

    features: NDArray[np.float32]
    actions: NDArray[np.float32]
    weights: NDArray[np.float32]
    returns: NDArray[np.float32]
    episode_returns: list[float]


def collect_demonstrations(
    config: ScenarioConfig, teacher: str, episodes: int, seed: int, gamma: float, value_targets: bool = True
) -> Demonstrations:
    """Run ``teacher`` for ``episodes`` episodes (seeds ``seed, seed + 1, ...``) on ``config``.

    ``value_targets=False``: the returns are NaN (episodes of another reward or length, used for the
    actor only; the critic loss skips them).
    """
    from agents import make_agent
    from agents.base import AgentContext
    from agents.rl_features import flat_features
    from fedsimenv.env import WirelessFLEnv

    feats: list[NDArray[np.float32]] = []
    acts: list[NDArray[np.float32]] = []
    weights: list[NDArray[np.float32]] = []
    returns: list[float] = []
    episode_returns: list[float] = []
    for episode in range(episodes):
        base = WirelessFLEnv(config)
        max_rounds = base.config.episode.max_rounds
        space: Any = base.action_space
        context = AgentContext.from_scenario(base.config, space, system_view=base.system_view)
        agent = make_agent(
            teacher, context, EpisodeStreams(np.random.SeedSequence(seed + episode)).int_seed("agent")
        )
        agent.bind(base)
        obs, info = base.reset(seed=seed + episode)
        agent.reset(info)
        rewards: list[float] = []
        done = False
        while not done:
            features = flat_features(obs, base.system_view(), max_rounds)
            action = np.asarray(agent.act(obs, info), dtype=np.float32)
            n = base.num_devices
            selected = action[:n] > config.action.selection_threshold
            weight = np.concatenate([np.ones(n), selected, selected]).astype(np.float32)
            feats.append(features)
            acts.append(action)
            weights.append(weight)
            obs, reward, terminated, truncated, info = base.step(action)
            rewards.append(float(reward))
            done = terminated or truncated
        togo, running = [], 0.0
        for r in reversed(rewards):
            running = r + gamma * running
            togo.append(running)
        returns.extend(reversed(togo) if value_targets else [float("nan")] * len(togo))
        episode_returns.append(float(sum(rewards)))
    return Demonstrations(
        features=np.asarray(feats, dtype=np.float32),
        actions=np.asarray(acts, dtype=np.float32),
        weights=np.asarray(weights, dtype=np.float32),
        returns=np.asarray(returns, dtype=np.float32),
        episode_returns=episode_returns,
    )


def merge(parts: list[Demonstrations]) -> Demonstrations:
    """One data set from several."""
    return Demonstrations(
        features=np.concatenate([p.features for p in parts]),
        actions=np.concatenate([p.actions for p in parts]),
        weights=np.concatenate([p.weights for p in parts]),
        returns=np.concatenate([p.returns for p in parts]),
        episode_returns=[r for p in parts for r in p.episode_returns],
    )


def _predictions(policy: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
    """The policy's deterministic action (B, 3N), its value predictions (list of (B, 1)) and, for SAC,
    its log std (B, 3N; ``None`` for PPO, whose log std is a free parameter).

    PPO (SB3 ``ActorCriticPolicy``): the Gaussian mean and V(s). SAC (``SACPolicy``, MLP or per-device):
    ``tanh`` of the pre-squash mean (what SAC plays deterministically) and each critic's Q(s, a) at the
    teacher's action ``y``, so both critics start at the teacher's returns where the teacher acts.
    """
    import torch

    if hasattr(policy, "actor") and hasattr(policy, "critic"):
        mean, log_std, _ = policy.actor.get_action_dist_params(x)
        return torch.tanh(mean), list(policy.critic(x, y)), log_std
    features = policy.extract_features(x)
    latent_pi, latent_vf = policy.mlp_extractor(features)
    return policy.action_net(latent_pi), [policy.value_net(latent_vf)], None


def behaviour_clone(
    policy: Any,
    data: Demonstrations,
    epochs: int,
    seed: int,
    learning_rate: float = 1e-3,
    log_std_target: float | None = None,
) -> dict[str, float]:
    """Fit ``policy`` (an SB3 PPO ActorCriticPolicy or SAC SACPolicy) to ``data``; returns the final
    actor / critic losses.

    SAC's log std is an output of its actor; ``log_std_target`` (SAC only) is regressed into it, so
    fine-tuning starts exploring as narrowly as PPO's ``log_std_init`` does. SAC's target critics are
    set to the fitted critics afterwards.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(data.features)
    y = torch.as_tensor(data.actions)
    w = torch.as_tensor(data.weights)
    known = torch.as_tensor(np.isfinite(data.returns).astype(np.float32)).unsqueeze(1)
    v = torch.as_tensor(np.nan_to_num(data.returns, nan=0.0)).unsqueeze(1)
    optimiser = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    batch = 64
    actor_loss = critic_loss = float("nan")
    policy.set_training_mode(True)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            action, values, log_std = _predictions(policy, x[idx], y[idx])
            actor = ((action - y[idx]) ** 2 * w[idx]).sum() / w[idx].sum()
            critic = sum(
                ((value - v[idx]) ** 2 * known[idx]).sum() / known[idx].sum().clamp(min=1.0)
                for value in values
            ) / len(values)
            loss = actor + 0.1 * critic
            if log_std is not None and log_std_target is not None:
                loss = loss + ((log_std - log_std_target) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            actor_loss, critic_loss = float(actor.detach()), float(critic.detach())
    policy.set_training_mode(False)
    if hasattr(policy, "critic_target"):
        policy.critic_target.load_state_dict(policy.critic.state_dict())
    return {"actor_mse": actor_loss, "critic_mse": critic_loss}
