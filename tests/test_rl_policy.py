"""The per-device policy (permutation equivariance, any N, SB3's env checker), loading saved policies
without executing code, and bit-identical replay of a saved policy."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents.rl_features import DEVICE_FEATURES, GLOBAL_FEATURES, DeviceFeatureObservation, feature_space
from agents.rl_policy import build_policy, load_policy, read_policy_weights
from fedsimenv.env import WirelessFLEnv

F, G = len(DEVICE_FEATURES), len(GLOBAL_FEATURES)


def _features(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n * F + G).astype(np.float32)


def test_device_policy_is_permutation_equivariant_and_runs_for_any_n() -> None:
    torch.manual_seed(0)
    policy: Any = build_policy("ppo", "device", 6, {"hidden": 16})
    x = _features(6, 1)
    perm = np.array([3, 0, 5, 1, 4, 2])
    devices = x[: 6 * F].reshape(6, F)
    x_perm = np.concatenate([devices[perm].ravel(), x[6 * F :]])
    net: Any = policy.mlp_extractor
    with torch.no_grad():
        a = net.forward_actor(torch.as_tensor(x)[None])[0].numpy().reshape(3, 6)
        b = net.forward_actor(torch.as_tensor(x_perm)[None])[0].numpy().reshape(3, 6)
        value_a = policy.predict_values(torch.as_tensor(x)[None])
        value_b = policy.predict_values(torch.as_tensor(x_perm)[None])
    np.testing.assert_allclose(b, a[:, perm], atol=1e-6)  # each component follows its device
    np.testing.assert_allclose(value_a.numpy(), value_b.numpy(), atol=1e-6)  # the value is invariant
    # The same weights act for 11 devices (only the exploration log_std depends on N).
    bigger = build_policy("ppo", "device", 11, {"hidden": 16})
    state = {k: v for k, v in policy.state_dict().items() if k != "log_std"}
    bigger.load_state_dict({**state, "log_std": bigger.state_dict()["log_std"]})
    action, _ = bigger.predict(_features(11, 2), deterministic=True)
    assert action.shape == (33,) and np.all(np.abs(action) <= 1)


@pytest.mark.parametrize("num_devices", [4, 10])
def test_feature_env_passes_sb3_check_env(num_devices: int) -> None:
    from stable_baselines3.common.env_checker import check_env

    env = DeviceFeatureObservation(
        WirelessFLEnv(
            "tiny", trainer="surrogate", overrides={"cell.num_devices": num_devices, "episode.max_rounds": 3}
        )
    )
    assert env.observation_space == feature_space(num_devices)
    check_env(env, warn=True, skip_render_check=True)


def _sb3_zip_with(path: Path, data: dict[str, Any], weights: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("policy.pth", weights)
        archive.writestr("_stable_baselines3_version", "2.9.2")


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_loading_a_policy_never_executes_code_from_the_zip(tmp_path: Path) -> None:
    import cloudpickle  # type: ignore[import-untyped]
    from stable_baselines3 import PPO

    meta = {"algo": "ppo", "policy": "device", "policy_kwargs": {"hidden": 8}}
    good = io.BytesIO()
    torch.save(build_policy("ppo", "device", 3, {"hidden": 8}).state_dict(), good)
    marker = tmp_path / "pwned"
    payload = base64.b64encode(cloudpickle.dumps(_Touch(marker))).decode()
    data = {"policy_class": {":type:": "<class 'x'>", ":serialized:": payload}}
    # 1. A :serialized: entry in `data`: SB3's own loader runs it; ours never reads `data`.
    _sb3_zip_with(tmp_path / "data.zip", data, good.getvalue())
    load_policy(tmp_path / "data.zip", meta, 3)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - SB3 fails after unpickling, the payload already ran
        PPO.load(tmp_path / "data.zip", device="cpu")
    assert marker.exists(), "the payload is real: SB3's loader executed it"
    marker.unlink()
    # 2. A pickle payload in policy.pth itself: refused by weights_only.
    _sb3_zip_with(tmp_path / "pth.zip", {}, pickle.dumps({"x": _Touch(marker)}))
    with pytest.raises(ValueError, match="refused"):
        read_policy_weights(tmp_path / "pth.zip")
    assert not marker.exists()
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(ValueError, match="not a zip"):
        read_policy_weights(tmp_path / "not.zip")


def test_scaled_observation_keeps_phase_times_visible() -> None:
    from fedsimenv.wrappers import ScaledFlatObservation, scale_observation

    env = ScaledFlatObservation(WirelessFLEnv("tiny", trainer="surrogate"))
    env.reset(seed=0)
    raw = {k: np.asarray(v) for k, v in env.unwrapped._observation().items()}  # type: ignore[attr-defined]
    size = raw["last_upload_time_s"].size
    offset = sum(raw[k].size for k in env.scaling["keys"][: env.scaling["keys"].index("last_upload_time_s")])
    fast = scale_observation({**raw, "last_upload_time_s": np.full(size, 0.05)}, env.scaling)
    slow = scale_observation({**raw, "last_upload_time_s": np.full(size, 0.5)}, env.scaling)
    # Mapped on log10(t + 1e-3) over [log10(1e-3), log10(1e4 + 1e-3)] (about 7 decades) onto [-1, 1].
    expected = 2 * (np.log10(0.501) - np.log10(0.051)) / (np.log10(1e4 + 1e-3) - np.log10(1e-3))
    np.testing.assert_allclose(
        slow[offset : offset + size] - fast[offset : offset + size], expected, atol=1e-5
    )
    assert expected > 0.28  # against ~9e-5 on the old linear [0, 1e4] scale
