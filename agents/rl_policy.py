"""SB3 policies for the per-device features of :mod:`agents.rl_features`, and loading a saved policy
without executing code.

:class:`DeviceSetPolicy` is a permutation-equivariant actor-critic for PPO (Deep Sets / PointNet
structure): one shared MLP encodes each device's features (with the global features appended), the
encodings are pooled (mean and max over devices) into a context, and a second shared MLP maps
``[device features, encoding, pooled context]`` to that device's three action components (select,
rho, bandwidth logit). Permuting the devices permutes the action the same way, and the weights do
not depend on N, so one policy runs on scenarios of any size. The critic pools the encodings of its
own encoder (mean, max) with the global features. SAC's per-device policy (equivariant squashed
Gaussian actor, invariant twin Q(s, a)) is :class:`agents.rl_sac_policy.DeviceSetSACPolicy`.

Loading (:func:`load_policy`) never unpickles: SB3's ``policy.zip`` holds a ``data`` member whose
``:serialized:`` entries are cloudpickle (arbitrary code on load). The policy is rebuilt from
``train.json`` (algorithm, policy kind, network sizes: plain JSON) and known classes, and only the
``policy.pth`` member is read, with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn

from agents.rl_device_net import equivariant_outputs, mlp, split_devices, to_canonical
from agents.rl_features import DEVICE_FEATURES, GLOBAL_FEATURES, feature_space
from agents.rl_sac_policy import DeviceSetSACPolicy

#: Policy kinds ``fedsimenv train --policy`` accepts, per algorithm.
POLICY_KINDS = {"ppo": ("device", "mlp"), "sac": ("device", "mlp")}


class DeviceSetNetwork(nn.Module):
    """The actor and critic of :class:`DeviceSetPolicy` (module docstring); any N."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        f, g = len(DEVICE_FEATURES), len(GLOBAL_FEATURES)
        self.num_device_features, self.num_global_features = f, g
        self.latent_dim_pi = 1  # unused: the actor outputs the action mean directly
        self.latent_dim_vf = hidden
        self.pi_encoder = mlp([f + g, hidden, hidden], final_activation=True)
        self.pi_head = mlp([f + g + 3 * hidden, hidden, 3], final_activation=False)
        self.vf_encoder = mlp([f + g, hidden, hidden], final_activation=True)
        self.vf_head = mlp([2 * hidden + g, hidden], final_activation=True)

    def forward_actor(self, x: torch.Tensor) -> torch.Tensor:
        per_device, _ = split_devices(x)
        return to_canonical(equivariant_outputs(self.pi_encoder, self.pi_head, per_device))

    def forward_critic(self, x: torch.Tensor) -> torch.Tensor:
        per_device, globals_ = split_devices(x)
        h = self.vf_encoder(per_device)
        out: torch.Tensor = self.vf_head(torch.cat([h.mean(dim=1), h.amax(dim=1), globals_], dim=1))
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(x), self.forward_critic(x)


class DeviceSetPolicy(ActorCriticPolicy):
    """PPO actor-critic over :class:`DeviceSetNetwork` (``policy_kwargs``: ``hidden``)."""

    def __init__(self, *args: Any, hidden: int = 64, **kwargs: Any) -> None:
        self.hidden = hidden
        kwargs.setdefault("ortho_init", False)
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = DeviceSetNetwork(self.hidden)  # type: ignore[assignment]

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["hidden"] = self.hidden
        return data


def action_space(num_devices: int) -> spaces.Box:
    return spaces.Box(np.float32(-1.0), np.float32(1.0), shape=(3 * num_devices,), dtype=np.float32)


def build_policy(algo: str, kind: str, num_devices: int, policy_kwargs: Mapping[str, Any]) -> BasePolicy:
    """A fresh policy of a known class for N devices (``policy_kwargs`` as recorded in train.json)."""
    from stable_baselines3.sac.policies import SACPolicy

    if kind not in POLICY_KINDS.get(algo, ()):
        allowed = ", ".join(f"{a}/{k}" for a, kinds in POLICY_KINDS.items() for k in kinds)
        raise ValueError(f"policy {algo}/{kind} is not known; allowed values: {allowed}")
    kwargs = dict(policy_kwargs)
    obs, act = feature_space(num_devices), action_space(num_devices)

    def lr(_: float) -> float:
        return 0.0

    if algo == "sac":
        return (DeviceSetSACPolicy if kind == "device" else SACPolicy)(obs, act, lr, **kwargs)
    cls = DeviceSetPolicy if kind == "device" else ActorCriticPolicy
    return cls(obs, act, lr, **kwargs)


def read_policy_weights(path: Path) -> dict[str, torch.Tensor]:
    """The ``policy.pth`` state dict of an SB3 ``policy.zip``, read with ``weights_only=True``.

    The zip's ``data`` member (cloudpickle entries) is never read.

    Raises:
        ValueError: not a zip, no ``policy.pth`` member, or the member holds anything but tensors.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if "policy.pth" not in archive.namelist():
                raise ValueError(f"{path}: no policy.pth member (not an SB3 policy.zip)")
            raw = archive.read("policy.pth")
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not a zip file (an SB3 policy.zip)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes from the restricted unpickler
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError / RuntimeError for disallowed content
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: policy.pth is not a plain tensor state dict; refused ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: policy.pth is not a plain tensor state dict; refused")
    return state


def load_policy(path: Path, meta: Mapping[str, Any], num_devices: int) -> BasePolicy:
    """Rebuild the policy described by ``meta`` (train.json) for N devices and load its weights.

    A ``device`` policy trained for another N loads too (its weights do not depend on N; only PPO's
    exploration ``log_std`` is resized, which deterministic replay does not use; SAC's per-device
    policy, :mod:`agents.rl_sac_policy`, has no N-sized tensor at all).
    """
    algo, kind = str(meta.get("algo")), str(meta.get("policy", "mlp"))
    policy = build_policy(algo, kind, num_devices, meta.get("policy_kwargs", {}))
    state = read_policy_weights(path)
    if kind == "device" and "log_std" in state and state["log_std"].shape[0] != 3 * num_devices:
        per_component = state["log_std"].reshape(3, -1).mean(dim=1)
        state["log_std"] = per_component.repeat_interleave(num_devices)
    try:
        policy.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"{path}: weights do not fit a {algo}/{kind} policy for {num_devices} devices ({first})"
        ) from None
    policy.set_training_mode(False)
    return policy
