"""The per-device (permutation-equivariant) policy for SB3 SAC (`train --algo sac --policy device`).

The actor is :class:`agents.rl_policy.DeviceSetNetwork`'s actor with six outputs per device instead
of three (a mean and a log std per action component): one shared MLP encodes each device's
``[device features, global features]``, the encodings are pooled (mean and max over devices), and a
second shared MLP maps ``[row, encoding, pooled context]`` to that device's squashed-Gaussian
parameters (mean and log std of select, rho and bandwidth before the ``tanh``). Permuting the
devices permutes the action distribution the same way.

Each critic is a permutation-*invariant* Q(s, a) (Deep Sets over state-action pairs): a shared MLP
encodes each device's ``[device features, global features, its 3 action components]``, the encodings
are pooled (mean and max over devices) and concatenated with the global features, and an MLP maps that
to Q. Permuting devices together with their actions leaves Q unchanged, and no weight depends on N:
a policy trained on 10 devices acts on 20 without retraining. SAC's twin critics and their target
copies are two such networks each. Hidden layers use ReLU (SB3's SAC default; PPO's per-device
network keeps PPO's Tanh): on one CPU thread ``tanh`` was the largest single cost of an update.

The state dict (``actor.*``, ``critic.*``, ``critic_target.*``) has only N-independent tensors, so
:func:`agents.rl_policy.load_policy` rebuilds it for any N from ``train.json``'s ``hidden``.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, SACPolicy
from torch import nn

from agents.rl_device_net import equivariant_outputs, mlp, split_devices, to_canonical
from agents.rl_features import DEVICE_FEATURES, GLOBAL_FEATURES

#: Action components per device (select, rho, bandwidth), canonical order ``[select | rho | bandwidth]``.
COMPONENTS = 3


class DeviceSetActor(BasePolicy):
    """SAC's actor over the per-device network (module docstring); the interface of SB3's ``Actor``."""

    action_space: spaces.Box

    def __init__(
        self,
        observation_space: spaces.Space[Any],
        action_space: spaces.Box,
        features_extractor: BaseFeaturesExtractor,
        hidden: int = 64,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
            squash_output=True,
        )
        f, g = len(DEVICE_FEATURES), len(GLOBAL_FEATURES)
        self.hidden = hidden
        self.encoder = mlp([f + g, hidden, hidden], final_activation=True, activation=nn.ReLU)
        self.head = mlp(
            [f + g + 3 * hidden, hidden, 2 * COMPONENTS], final_activation=False, activation=nn.ReLU
        )
        # The distribution's own size is not used: SB3 computes it from the parameters' shapes.
        self.action_dist = SquashedDiagGaussianDistribution(get_action_dim(action_space))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(hidden=self.hidden, features_extractor=self.features_extractor)
        return data

    def get_action_dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Mean and log std (B, 3N) of the Gaussian before the ``tanh``, canonical order."""
        features = self.extract_features(obs, self.features_extractor)
        assert isinstance(features, torch.Tensor)
        per_device, _ = split_devices(features)
        out = equivariant_outputs(self.encoder, self.head, per_device)  # (B, N, 6)
        mean = to_canonical(out[:, :, :COMPONENTS])
        log_std = torch.clamp(to_canonical(out[:, :, COMPONENTS:]), LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std, {}

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        mean, log_std, _ = self.get_action_dist_params(obs)
        return self.action_dist.actions_from_params(mean, log_std, deterministic=deterministic)

    def action_log_prob(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std, _ = self.get_action_dist_params(obs)
        return self.action_dist.log_prob_from_params(mean, log_std)

    def _predict(self, observation: Any, deterministic: bool = False) -> torch.Tensor:
        action: torch.Tensor = self(observation, deterministic)
        return action

    def reset_noise(self, batch_size: int = 1) -> None:
        raise ValueError("the per-device SAC actor has no gSDE noise (use_sde is not supported)")


class DeviceSetCritic(ContinuousCritic):
    """SAC's twin permutation-invariant Q(s, a) (module docstring); SB3 ``ContinuousCritic``'s interface."""

    def __init__(
        self,
        observation_space: spaces.Space[Any],
        action_space: spaces.Box,
        features_extractor: BaseFeaturesExtractor,
        hidden: int = 64,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        normalize_images: bool = True,
    ) -> None:
        # ContinuousCritic's own MLPs are not built (net_arch=[] gives one Linear per critic, replaced).
        super().__init__(
            observation_space,
            action_space,
            net_arch=[],
            features_extractor=features_extractor,
            features_dim=1,
            normalize_images=normalize_images,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
        )
        f, g = len(DEVICE_FEATURES), len(GLOBAL_FEATURES)
        self.hidden = hidden
        self.q_networks = []
        for idx in range(n_critics):
            q_net = _DeviceSetQ(f + g + COMPONENTS, g, hidden)
            self.add_module(f"qf{idx}", q_net)  # replaces the unused Linear of the same name
            self.q_networks.append(q_net)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(hidden=self.hidden, n_critics=self.n_critics, features_extractor=self.features_extractor)
        return data

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.set_grad_enabled(not self.share_features_extractor):
            features = self.extract_features(obs, self.features_extractor)
        assert isinstance(features, torch.Tensor)
        rows = _state_action_rows(features, actions)
        return tuple(q_net(*rows) for q_net in self.q_networks)

    def q1_forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.extract_features(obs, self.features_extractor)
        assert isinstance(features, torch.Tensor)
        out: torch.Tensor = self.q_networks[0](*_state_action_rows(features, actions))
        return out


def _state_action_rows(features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-device ``[device, global, action_i]`` rows (B, N, F + G + 3) and the global features."""
    per_device, globals_ = split_devices(features)
    n = per_device.shape[1]
    if actions.shape[1] != COMPONENTS * n:
        raise ValueError(f"action of size {actions.shape[1]} for {n} devices (expected {COMPONENTS * n})")
    per_device_actions = actions.reshape(actions.shape[0], COMPONENTS, n).transpose(1, 2)
    return torch.cat([per_device, per_device_actions], dim=2), globals_


class _DeviceSetQ(nn.Module):
    """One invariant Q: ``head([mean_i enc(row_i), max_i enc(row_i), globals])`` -> (B, 1)."""

    def __init__(self, row_size: int, num_globals: int, hidden: int) -> None:
        super().__init__()
        self.encoder = mlp([row_size, hidden, hidden], final_activation=True, activation=nn.ReLU)
        self.head = mlp([2 * hidden + num_globals, hidden, 1], final_activation=False, activation=nn.ReLU)

    def forward(self, rows: torch.Tensor, globals_: torch.Tensor) -> torch.Tensor:
        h = self.encoder(rows)
        out: torch.Tensor = self.head(torch.cat([h.mean(dim=1), h.amax(dim=1), globals_], dim=1))
        return out


class DeviceSetSACPolicy(SACPolicy):
    """SB3 SAC policy with :class:`DeviceSetActor` and :class:`DeviceSetCritic` (``policy_kwargs``:
    ``hidden``; the remaining SACPolicy arguments keep their defaults, ``use_sde`` is refused)."""

    def __init__(self, *args: Any, hidden: int = 64, **kwargs: Any) -> None:
        if kwargs.get("use_sde"):
            raise ValueError("use_sde is not supported by the per-device SAC policy")
        self.hidden = hidden
        kwargs.setdefault("net_arch", [hidden, hidden])  # recorded by SB3, not used by these networks
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> DeviceSetActor:  # type: ignore[override]
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return DeviceSetActor(
            kwargs["observation_space"],
            kwargs["action_space"],
            kwargs["features_extractor"],
            hidden=self.hidden,
            normalize_images=kwargs["normalize_images"],
        ).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> DeviceSetCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return DeviceSetCritic(
            kwargs["observation_space"],
            kwargs["action_space"],
            kwargs["features_extractor"],
            hidden=self.hidden,
            n_critics=kwargs["n_critics"],
            share_features_extractor=kwargs["share_features_extractor"],
            normalize_images=kwargs["normalize_images"],
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["hidden"] = self.hidden
        return data
