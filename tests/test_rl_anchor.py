"""The KL anchor of PPO fine-tuning toward the behaviour-cloned teacher (`fedsimenv train --anchor-coef`):
the closed-form KL against torch's and a hand-computed case, zero exactly at the reference, a pull
back toward it in a real PPO update, the flag reaching the learner, and the reference not saved."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from fedsimenv.cli import build_parser, main
from fedsimenv.experiments.rl_anchor import AnchoredPPO, gaussian_kl
from fedsimenv.experiments.rl_training import TrainSettings, _algorithm, make_rl_env, train_policy
from fedsimenv.scenario import load_scenario


def test_gaussian_kl_matches_torch_and_a_hand_computed_case() -> None:
    # Hand case, one component: equal stds 0.2, means 0.2 apart -> (0.2 / 0.2)^2 / 2 = 0.5;
    # std 0.4 vs reference 0.2, equal means -> log(0.5) + 0.16 / 0.08 - 0.5 = 0.8068528...
    zero, log_02 = torch.zeros(1, 1), torch.full((1, 1), float(np.log(0.2)))
    assert gaussian_kl(zero + 0.2, log_02, zero, log_02).item() == pytest.approx(0.5, rel=1e-6)
    expected = np.log(0.5) + 0.16 / 0.08 - 0.5
    assert gaussian_kl(zero, log_02 + np.log(2.0), zero, log_02).item() == pytest.approx(expected, rel=1e-6)
    generator = torch.Generator().manual_seed(3)
    mean, ref_mean = torch.randn(5, 12, generator=generator), torch.randn(5, 12, generator=generator)
    log_std, ref_log_std = torch.randn(5, 12, generator=generator) * 0.3, torch.randn(12, generator=generator)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, log_std.exp()),
        torch.distributions.Normal(ref_mean, ref_log_std.exp().expand(5, 12)),
    ).sum(dim=-1)
    assert torch.allclose(gaussian_kl(mean, log_std, ref_mean, ref_log_std), reference, atol=1e-5)
    assert torch.all(gaussian_kl(mean, log_std, mean, log_std) == 0)


def _model(anchor_coef: float, max_rounds: int = 4) -> AnchoredPPO:
    config = load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": max_rounds})
    settings = TrainSettings(
        timesteps=16, n_steps=16, batch_size=16, n_epochs=10, seed=5, anchor_coef=anchor_coef, verbose=False
    )
    env = DummyVecEnv([lambda: make_rl_env(config)])
    env.seed(5)
    model = _algorithm(settings, env)
    assert isinstance(model, AnchoredPPO) and model.anchor_coef == anchor_coef
    return model


def _perturb(model: AnchoredPPO, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.policy.mlp_extractor.pi_head.parameters():  # type: ignore[union-attr]
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def test_anchor_is_zero_at_the_reference_and_positive_away_from_it() -> None:
    model = _model(1.0)
    observations = torch.as_tensor(
        np.random.default_rng(0).normal(size=(7, *model.observation_space.shape)),  # type: ignore[misc]
        dtype=torch.float32,
    )
    assert model.anchor_kl(observations).item() == 0.0  # no reference yet: no penalty
    model.freeze_reference()
    assert model.anchor_kl(observations).item() == 0.0  # policy == reference
    assert all(not p.requires_grad for p in model.reference.parameters())  # type: ignore[union-attr]
    _perturb(model, 1)
    kl = model.anchor_kl(observations)
    assert kl.item() > 0.01 and model.kl_to_reference(observations) == pytest.approx(kl.item())
    kl.backward()  # type: ignore[no-untyped-call]  # the gradient reaches the policy, never the frozen reference
    first_layer: Any = model.policy.mlp_extractor.pi_head[0]  # type: ignore[index]
    assert first_layer.weight.grad is not None


def _kl_after_one_update(anchor_coef: float) -> tuple[float, float]:
    model = _model(anchor_coef)
    model.freeze_reference()
    _perturb(model, 2)
    model.learn(total_timesteps=16)  # one rollout of 16 steps, then one update (10 epochs)
    observations = torch.as_tensor(model.rollout_buffer.observations.reshape(16, -1))
    with torch.no_grad():
        before = model.anchor_kl(observations).item()
    model.train()  # a second update on the same rollout
    with torch.no_grad():
        return before, model.anchor_kl(observations).item()


def test_ppo_update_pulls_the_policy_back_to_the_reference_only_when_anchored() -> None:
    _, plain = _kl_after_one_update(0.0)
    _, anchored = _kl_after_one_update(5.0)
    # The same perturbed start, rollout and seed: the anchored update ends much closer to the reference.
    assert anchored < 0.5 * plain, (anchored, plain)


def test_anchor_flag_reaches_the_settings_and_the_reference_is_not_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["train", "tiny", "--out", str(tmp_path / "a"), "--anchor-coef", "0.25"])
    assert args.anchor_coef == 0.25
    default = build_parser().parse_args(["train", "tiny", "--out", "x"])
    assert default.anchor_coef == TrainSettings().anchor_coef
    assert main(["train", "tiny", "--out", str(tmp_path / "b"), "--anchor-coef", "-1"]) == 2
    assert "--anchor-coef must be a finite number >= 0" in capsys.readouterr().err
    model = _model(0.25)
    model.freeze_reference()
    model.save(tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        data: dict[str, Any] = json.loads(archive.read("data"))
    assert "reference" not in data and data["anchor_coef"] == 0.25


def test_anchor_anneal_decays_the_coefficient_linearly_to_zero(tmp_path: Path) -> None:
    import csv

    config = load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 4})
    settings = TrainSettings(
        timesteps=96,
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        bc_episodes=1,
        bc_epochs=1,
        anchor_coef=0.6,
        anchor_anneal=True,
        eval_every=0,
        verbose=False,
    )
    meta = train_policy(config, settings, tmp_path)
    assert meta["anchor"]["anneal"] is True and meta["anchor"]["coef"] == 0.6
    rows = list(csv.DictReader((tmp_path / "sb3_log" / "progress.csv").open()))
    # PPO updates after each 32-step rollout with the coefficient of that step, 0.6 * (1 - t / 96):
    # 0.4, 0.2 and 0 (SB3 writes an update's log at the next rollout, so the last one is not written).
    coefs = [float(r["train/anchor_coef"]) for r in rows if r.get("train/anchor_coef")]
    assert coefs == pytest.approx([0.6 * (1 - 32 / 96), 0.6 * (1 - 64 / 96)])
