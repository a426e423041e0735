"""PPO fine-tuning anchored to the behaviour-cloned teacher (``fedsimenv train --anchor-coef``).

Without an anchor, PPO fine-tuning on the surrogate drifts away from the cloned ``optimal`` schedule as
timesteps grow (measured on ``default``: the last policy after 100k steps was 19 % slower to 0.9 on
real training than the 20k one, ``bench/RESULTS-rl.md``): the surrogate's return barely separates
good schedules, so the policy gradient is mostly noise, and PPO's clipping bounds each update but
not the random walk of many. :class:`AnchoredPPO` adds a KL penalty toward a frozen reference:

    loss = PPO's clipped loss + ent_coef * entropy loss + vf_coef * value loss
           + anchor_coef * mean over the minibatch's observations of KL(pi_theta(.|s) || pi_ref(.|s))

where ``pi_ref`` is a frozen copy of the policy right after behaviour cloning from the teacher
(:meth:`AnchoredPPO.freeze_reference`) and ``s`` are the observations the policy visited (the
rollout's minibatches). Both policies are diagonal Gaussians, so the KL is closed form
(:func:`gaussian_kl`): summed over the 3N action components, zero exactly when the policy equals the
reference and growing with the squared distance of the means in units of the reference's std. The
gradient step turns the drift into a mean-reverting process around the teacher's clone, so more
timesteps can only trade (bounded) distance from it for return. This is the KL-to-a-prior
regulariser of KL-regularised RL (e.g. AlphaStar's KL to its supervised policy; the PPO paper's
KL-penalty objective with a fixed reference instead of the previous policy); the coefficient is
fixed (no decay), so the bound does not loosen with more steps. ``anchor_coef = 0`` is plain SB3 PPO.

:meth:`AnchoredPPO.train` is SB3 2.x's ``PPO.train`` (Box actions, same clipping, value clipping,
``target_kl`` early stop and logs) with the anchor term added; it logs ``train/anchor_kl``.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F


def gaussian_kl(
    mean: torch.Tensor, log_std: torch.Tensor, ref_mean: torch.Tensor, ref_log_std: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean, std^2) || N(ref_mean, ref_std^2)) of diagonal Gaussians, summed over the last axis.

    Per component: ``log(ref_std / std) + (std^2 + (mean - ref_mean)^2) / (2 ref_std^2) - 1/2``.
    """
    var, ref_var = torch.exp(2 * log_std), torch.exp(2 * ref_log_std)
    per_component = ref_log_std - log_std + (var + (mean - ref_mean) ** 2) / (2 * ref_var) - 0.5
    return per_component.sum(dim=-1)


def checked_anchor_coef(value: float) -> float:
    """``value`` as the anchor's weight; a one-line error unless it is a finite number >= 0."""
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"--anchor-coef must be a finite number >= 0, got {value}")
    return float(value)


def frozen_copy(policy: BasePolicy) -> BasePolicy:
    """A copy of ``policy`` in evaluation mode with no trainable parameters: the anchor's reference."""
    reference = copy.deepcopy(policy)
    reference.set_training_mode(False)
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def _gaussian(policy: ActorCriticPolicy, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (B, A) and log std (B, A) of ``policy``'s diagonal Gaussian at ``observations``."""
    normal = policy.get_distribution(observations).distribution
    if not isinstance(normal, torch.distributions.Normal):
        raise ValueError(f"the anchor needs a diagonal Gaussian policy, got {type(normal).__name__}")
    return normal.mean, torch.log(normal.stddev)


class AnchoredPPO(PPO):
    """SB3 PPO with a KL penalty toward a frozen reference policy (module docstring).

    Args:
        anchor_coef: Weight of the KL term (>= 0; 0 = plain PPO). The penalty applies once
            :meth:`freeze_reference` has been called (after behaviour cloning).
        *args, **kwargs: :class:`stable_baselines3.PPO`'s.
    """

    def __init__(self, *args: Any, anchor_coef: float = 0.0, **kwargs: Any) -> None:
        self.anchor_coef = checked_anchor_coef(anchor_coef)
        self.reference: ActorCriticPolicy | None = None
        super().__init__(*args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        # the reference is a training-time device, not part of the saved policy
        return [*super()._excluded_save_params(), "reference"]

    def freeze_reference(self) -> None:
        """Make a frozen copy of the current policy the anchor (call it after behaviour cloning)."""
        self.reference = cast(ActorCriticPolicy, frozen_copy(self.policy))

    def anchor_kl(self, observations: torch.Tensor) -> torch.Tensor:
        """Mean over ``observations`` of KL(policy || reference); 0 without a reference."""
        if self.reference is None:
            return torch.zeros(())
        mean, log_std = _gaussian(self.policy, observations)
        with torch.no_grad():
            ref_mean, ref_log_std = _gaussian(self.reference, observations)
        return gaussian_kl(mean, log_std, ref_mean, ref_log_std).mean()

    def kl_to_reference(self, observations: torch.Tensor) -> float:
        """:meth:`anchor_kl` as a number, without gradients (the drift diagnostic of evaluations)."""
        with torch.no_grad():
            return float(self.anchor_kl(observations))

    def train(self) -> None:
        """One PPO update over the rollout buffer, with the anchor term (module docstring)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = (
            None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        )
        anchored = self.anchor_coef > 0 and self.reference is not None
        entropy_losses: list[float] = []
        pg_losses: list[float] = []
        value_losses: list[float] = []
        clip_fractions: list[float] = []
        anchor_kls: list[float] = []
        approx_kl_divs: list[float] = []
        loss = torch.zeros(())
        continue_training = True
        for _ in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                values, log_prob, entropy = self.policy.evaluate_actions(
                    rollout_data.observations, rollout_data.actions
                )
                values = values.flatten()
                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = torch.exp(log_prob - rollout_data.old_log_prob)
                policy_loss = -torch.min(
                    advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
                ).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(torch.mean((torch.abs(ratio - 1) > clip_range).float()).item())
                values_pred = (
                    values
                    if clip_range_vf is None
                    else rollout_data.old_values
                    + torch.clamp(values - rollout_data.old_values, -clip_range_vf, clip_range_vf)
                )
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.item())
                entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
                entropy_losses.append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                if anchored:
                    anchor = self.anchor_kl(rollout_data.observations)
                    anchor_kls.append(anchor.item())
                    loss = loss + self.anchor_coef * anchor
                with torch.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = float(torch.mean((torch.exp(log_ratio) - 1) - log_ratio))
                    approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if anchor_kls:
            self.logger.record("train/anchor_kl", np.mean(anchor_kls))
        self.logger.record("train/anchor_coef", self.anchor_coef)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", torch.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
