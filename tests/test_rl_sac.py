"""The per-device SAC policy (`fedsimenv train --algo sac --policy device`): permutation equivariance of
the actor and invariance of the twin Q, any N, the anchored learner against SB3's own SAC, behaviour
cloning into the SAC actor, and bit-identical replay of a saved policy on this and another N."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rl_helpers import assert_agent_acts_as_sb3_predicts
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.rl_features import DEVICE_FEATURES, GLOBAL_FEATURES, DeviceFeatureObservation
from agents.rl_policy import POLICY_KINDS, build_policy, load_policy
from agents.rl_sac_policy import DeviceSetSACPolicy
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.rl_anchor_sac import AnchoredSAC
from fedsimenv.experiments.rl_training import TrainSettings, make_rl_env, train_policy
from fedsimenv.scenario import load_scenario

F, G = len(DEVICE_FEATURES), len(GLOBAL_FEATURES)


def _features(n: int, seed: int, batch: int = 1) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(batch, n * F + G)).astype(np.float32))


def _permute_devices(x: torch.Tensor, perm: np.ndarray) -> torch.Tensor:
    n = len(perm)
    devices = x[:, : n * F].reshape(x.shape[0], n, F)[:, perm]
    return torch.cat([devices.reshape(x.shape[0], -1), x[:, n * F :]], dim=1)


def _permute_action(a: torch.Tensor, perm: np.ndarray) -> torch.Tensor:
    n = len(perm)
    return a.reshape(a.shape[0], 3, n)[:, :, perm].reshape(a.shape[0], -1)


def test_sac_device_is_registered() -> None:
    assert "device" in POLICY_KINDS["sac"]
    assert isinstance(build_policy("sac", "device", 4, {"hidden": 8}), DeviceSetSACPolicy)


def test_sac_actor_is_equivariant_and_the_twin_q_invariant() -> None:
    torch.manual_seed(0)
    policy: Any = build_policy("sac", "device", 7, {"hidden": 16})
    perm = np.array([4, 0, 6, 2, 1, 5, 3])
    x, a = _features(7, 1, batch=3), torch.rand(3, 21) * 2 - 1
    xp, ap = _permute_devices(x, perm), _permute_action(a, perm)
    with torch.no_grad():
        mean, log_std, _ = policy.actor.get_action_dist_params(x)
        mean_p, log_std_p, _ = policy.actor.get_action_dist_params(xp)
        q = torch.cat(policy.critic(x, a), dim=1)
        q_p = torch.cat(policy.critic(xp, ap), dim=1)
        q_devices_only = torch.cat(policy.critic(xp, a), dim=1)
    # Each device's three components (select, rho, bandwidth) follow the device.
    torch.testing.assert_close(mean_p, _permute_action(mean, perm), atol=1e-6, rtol=0)
    torch.testing.assert_close(log_std_p, _permute_action(log_std, perm), atol=1e-6, rtol=0)
    # Q(s, a) is unchanged when devices move together with their actions ...
    torch.testing.assert_close(q_p, q, atol=1e-5, rtol=0)
    assert q.shape == (3, 2) and not torch.equal(q[:, 0], q[:, 1])  # two independent critics
    # ... and not when the actions stay put (Q reads which device gets which action).
    assert torch.max(torch.abs(q_devices_only - q)) > 1e-4
    # The deterministic action is tanh of the mean, inside the canonical Box.
    action, _ = policy.predict(x[0].numpy(), deterministic=True)
    np.testing.assert_allclose(action, np.tanh(mean[0].numpy()), atol=1e-6)


def test_sac_weights_act_for_any_n_and_load_without_unpickling(tmp_path: Path) -> None:
    import zipfile

    torch.manual_seed(1)
    small: Any = build_policy("sac", "device", 10, {"hidden": 16})
    assert all("log_std" not in k or "actor" not in k for k in small.state_dict())  # nothing N-sized
    buffer = tmp_path / "policy.zip"
    import io

    raw = io.BytesIO()
    torch.save(small.state_dict(), raw)
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("policy.pth", raw.getvalue())
    meta = {"algo": "sac", "policy": "device", "policy_kwargs": {"hidden": 16}}
    for n in (10, 20, 3):
        policy: Any = load_policy(buffer, meta, n)
        x = _features(n, 5, batch=2)
        with torch.no_grad():
            action = policy.actor(x, deterministic=True)
            q = policy.critic(x, action)
        assert action.shape == (2, 3 * n) and torch.all(action.abs() <= 1)
        assert q[0].shape == (2, 1)
    # The same device's decision does not depend on N beyond the pooled context: a 1-device scenario
    # pools over that device alone (mean == max), reproduced here by hand from the shared layers.
    one: Any = load_policy(buffer, meta, 1)
    x1 = _features(1, 9)
    with torch.no_grad():
        row = torch.cat([x1[:, :F], x1[:, F:]], dim=1)
        h = one.actor.encoder(row)
        out = one.actor.head(torch.cat([row, h, h, h], dim=1))
        mean, _, _ = one.actor.get_action_dist_params(x1)
    torch.testing.assert_close(mean, out[:, :3], atol=1e-6, rtol=0)


def _model(cls: type[SAC], anchor_coef: float, seed: int = 3) -> Any:
    """A small per-device SAC on `tiny`; build and learn one model at a time (torch's global RNG,
    which SB3 seeds at construction, is shared by every model in the process)."""
    config = load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 4})
    env = DummyVecEnv([lambda: make_rl_env(config)])
    env.seed(seed)
    extra: dict[str, Any] = {} if cls is SAC else {"anchor_coef": anchor_coef}
    return cls(
        DeviceSetSACPolicy,
        env,
        learning_starts=16,
        batch_size=16,
        policy_kwargs={"hidden": 8},
        seed=seed,
        device="cpu",
        **extra,
    )


def test_anchored_sac_without_anchor_is_sb3_sac_bit_for_bit() -> None:
    plain = _model(SAC, 0.0)
    plain.learn(48)
    anchored = _model(AnchoredSAC, 0.0)
    anchored.freeze_reference()  # a reference with coefficient 0 changes nothing
    anchored.learn(48)
    for (name, p), (_, q) in zip(
        plain.policy.state_dict().items(), anchored.policy.state_dict().items(), strict=True
    ):
        assert torch.equal(p, q), name


def test_anchored_sac_refuses_gsde_it_does_not_follow() -> None:
    env = make_rl_env(load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 4}))
    with pytest.raises(ValueError, match="use_sde"):
        AnchoredSAC("MlpPolicy", env, use_sde=True)


def _visited_features(episodes: int) -> torch.Tensor:
    """Features of states the training env visits (random actions), where the anchor acts."""
    env = make_rl_env(load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 4}))
    env.action_space.seed(0)
    rows = []
    for episode in range(episodes):
        features, _ = env.reset(seed=900 + episode)
        done = False
        while not done:
            rows.append(features)
            features, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    return torch.as_tensor(np.asarray(rows))


def test_sac_anchor_bounds_the_drift_from_the_reference() -> None:
    # From the reference (KL 0), 64 SAC updates move the actor away on the visited states; the
    # anchor's KL term keeps it close (measured: 0.68 plain, 0.07 with coefficient 5).
    observations = _visited_features(8)
    kls = {}
    for coef in (0.0, 5.0):
        model = _model(AnchoredSAC, coef, seed=4)
        model.freeze_reference()
        assert model.kl_to_reference(observations) == 0.0
        model.learn(80)
        kls[coef] = model.kl_to_reference(observations)
    assert kls[0.0] > 0.1 and kls[5.0] < 0.25 * kls[0.0], kls


def test_entropy_target_is_the_reference_actors_squashed_gaussian_entropy() -> None:
    # Actor made constant: pre-squash N(0.5, 0.4^2) in every component. Reference by quadrature:
    # H(tanh(u)) = H(N) + E[log(1 - tanh(u)^2)] per component, times 3N = 30 components.
    model = _model(AnchoredSAC, 1.0)
    head = model.actor.head[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.5, 0.5, 0.5, np.log(0.4), np.log(0.4), np.log(0.4)]))
    model.freeze_reference()
    u = np.linspace(0.5 - 10 * 0.4, 0.5 + 10 * 0.4, 200_001)
    density = np.exp(-0.5 * ((u - 0.5) / 0.4) ** 2) / (0.4 * np.sqrt(2 * np.pi))
    correction = np.sum(density * np.log(1 - np.tanh(u) ** 2)) * (u[1] - u[0])
    expected = 30 * (0.5 * np.log(2 * np.pi * np.e * 0.4**2) + correction)
    torch.manual_seed(0)
    observations = _features(10, 3, batch=4000)
    assert model.hold_entropy_at_reference(observations) == pytest.approx(expected, abs=0.15)
    assert model.target_entropy == pytest.approx(expected, abs=0.15)


def test_behaviour_cloning_fits_the_sac_actor_and_both_critics() -> None:
    from fedsimenv.experiments.rl_imitation import behaviour_clone, collect_demonstrations

    config = load_scenario("tiny", {"trainer": "surrogate", "reward.name": "time-to-target-shaped"})
    data = collect_demonstrations(config, "optimal", 3, 500, 0.99)
    torch.manual_seed(0)
    policy: Any = build_policy("sac", "device", 10, {"hidden": 32})
    x, y = torch.as_tensor(data.features), torch.as_tensor(data.actions)
    w = torch.as_tensor(data.weights)

    def actor_mse() -> float:
        with torch.no_grad():
            action = policy.actor(x, deterministic=True)
        return float(((action - y) ** 2 * w).sum() / w.sum())

    before = actor_mse()
    losses = behaviour_clone(policy, data, 300, 0, log_std_target=-1.6)
    assert actor_mse() < 0.25 * before and losses["actor_mse"] < 0.1, (before, actor_mse(), losses)
    with torch.no_grad():
        _, log_std, _ = policy.actor.get_action_dist_params(x)
        q0, q1 = policy.critic(x, y)
    assert abs(float(log_std.mean()) + 1.6) < 0.3
    returns = torch.as_tensor(data.returns).unsqueeze(1)
    for q in (q0, q1):  # both critics near the teacher's returns-to-go at its own actions
        assert float(torch.mean(torch.abs(q - returns))) < 0.25 * float(torch.mean(torch.abs(returns)))
    for p, t in zip(policy.critic.parameters(), policy.critic_target.parameters(), strict=True):
        assert torch.equal(p, t)


def test_saved_sac_device_policy_replays_bit_identically_and_on_another_n(tmp_path: Path) -> None:
    from stable_baselines3.common.env_checker import check_env

    config = load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 4})
    settings = TrainSettings(
        algo="sac", timesteps=48, batch_size=16, bc_episodes=2, bc_epochs=2, eval_every=0, verbose=False
    )
    meta = train_policy(config, settings, tmp_path)
    assert meta["policy"] == "device" and meta["policy_kwargs"] == {"hidden": 64}
    assert meta["anchor"]["active"] is True
    assert np.isfinite(meta["behaviour_cloning"]["target_entropy"])  # the clone's entropy (below)
    trusted = SAC.load(tmp_path / "policy.zip", device="cpu")  # our own file: SB3's loader as reference
    assert_agent_acts_as_sb3_predicts("sac", trusted, config, tmp_path)
    # The same file acts, through SB3's env checker path, in a 6-device scenario without retraining.
    small = load_scenario(config, {"cell.num_devices": 6})
    feature_env = DeviceFeatureObservation(WirelessFLEnv(small))
    check_env(feature_env, warn=True, skip_render_check=True)
    policy = load_policy(tmp_path / "policy.zip", json.loads((tmp_path / "train.json").read_text()), 6)
    features, _ = feature_env.reset(seed=3)
    action, _ = policy.predict(features, deterministic=True)
    assert feature_env.action_space.contains(action)
    feature_env.step(action)


@pytest.mark.slow  # ~1 min: behaviour cloning from 40 teacher episodes, 2 real-training episodes
def test_short_sac_on_the_surrogate_beats_random_on_real_training(tmp_path: Path) -> None:
    from fedsimenv.experiments.rl_eval import agent_decider, policy_decider, run_real_episode

    config = load_scenario("tiny", {"trainer": "surrogate"})
    settings = TrainSettings(
        algo="sac", timesteps=200, batch_size=32, bc_episodes=8, eval_every=0, verbose=False
    )
    train_policy(config, settings, tmp_path)
    policy = load_policy(tmp_path / "policy.zip", json.loads((tmp_path / "train.json").read_text()), 10)
    real = load_scenario("tiny", {"reward.name": "time-to-target-shaped", "episode.max_rounds": 3})
    sac = run_real_episode(real, 4243, policy_decider(policy))
    random = run_real_episode(real, 4243, agent_decider("random"), factory=True)
    assert sac["return"] > random["return"], (sac["return"], random["return"])
