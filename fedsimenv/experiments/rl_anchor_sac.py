"""SAC fine-tuning anchored to the behaviour-cloned teacher: ``fedsimenv train --algo sac --anchor-coef``.

The SAC counterpart of :class:`fedsimenv.experiments.rl_anchor.AnchoredPPO` (see there for why: the
surrogate's return barely separates good schedules, so unanchored fine-tuning drifts away from the
cloned ``optimal``). The actor's loss gets the same term:

    actor loss = SAC's ``ent_coef * log pi(a|s) - min_k Q_k(s, a)``
                 + anchor_coef * mean over the batch's states of KL(pi_theta(.|s) || pi_ref(.|s))

with ``pi_ref`` a frozen copy of the policy right after behaviour cloning. SAC's policy is a
``tanh``-squashed diagonal Gaussian; the KL between two squashed Gaussians equals the KL between the
Gaussians before the ``tanh`` (KL is invariant under the same bijection applied to both), so it is
:func:`~fedsimenv.experiments.rl_anchor.gaussian_kl` of the actors' pre-squash means and log stds:
exact, closed form. The states are the replay batch's (the states the policy and its predecessors
visited). ``anchor_coef = 0`` is plain SB3 SAC.

:meth:`AnchoredSAC.train` is SB3 2.x's ``SAC.train`` (twin critics, entropy tuning, Polyak targets,
same logs) with the anchor term added; it logs ``train/anchor_kl``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from fedsimenv.experiments.rl_anchor import checked_anchor_coef, frozen_copy, gaussian_kl


class AnchoredSAC(SAC):
    """SB3 SAC with a KL penalty toward a frozen reference actor (module docstring).

    Args:
        anchor_coef: Weight of the KL term (>= 0; 0 = plain SAC). It applies once
            :meth:`freeze_reference` has been called (after behaviour cloning).
        *args, **kwargs: :class:`stable_baselines3.SAC`'s.
    """

    def __init__(self, *args: Any, anchor_coef: float = 0.0, **kwargs: Any) -> None:
        if kwargs.get("use_sde"):
            # :meth:`train` follows SB3's SAC update without its gSDE noise resets.
            raise ValueError("AnchoredSAC does not support use_sde=True (gSDE); allowed: use_sde=False")
        self.anchor_coef = checked_anchor_coef(anchor_coef)
        self.reference: Any = None
        super().__init__(*args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "reference"]

    def freeze_reference(self) -> None:
        """Make a frozen copy of the current actor the anchor (call it after behaviour cloning)."""
        self.reference = frozen_copy(self.actor)

    def anchor_kl(self, observations: torch.Tensor) -> torch.Tensor:
        """Mean over ``observations`` of KL(actor || reference) (pre-squash Gaussians); 0 without one."""
        if self.reference is None:
            return torch.zeros(())
        mean, log_std, _ = self.actor.get_action_dist_params(observations)
        with torch.no_grad():
            ref_mean, ref_log_std, _ = self.reference.get_action_dist_params(observations)
        return gaussian_kl(mean, log_std, ref_mean, ref_log_std).mean()

    def kl_to_reference(self, observations: torch.Tensor) -> float:
        """:meth:`anchor_kl` as a number, without gradients (the drift diagnostic of evaluations)."""
        with torch.no_grad():
            return float(self.anchor_kl(observations))

    def hold_entropy_at_reference(self, observations: torch.Tensor) -> float:
        """Set SAC's entropy target to the reference actor's entropy on ``observations`` and return it.

        SB3's default target, ``-dim(A)`` (-1 per component), is out of reach of a clone of ``optimal``:
        its selection components sit near +-1, where the ``tanh`` correction makes the density of the
        squashed action huge, so the entropy stays far below the target and the automatic coefficient
        grows without bound (measured on ``default``: 0.1 -> 1.9 in 30k steps, with the critic loss
        from ~70 to ~9000 and the KL to the clone to ~40). Holding the entropy where the clone put it
        keeps the coefficient bounded. The entropy is the mean over states of ``-log pi(a|s)``, one
        sampled action per state.
        """
        if self.reference is None:
            raise ValueError("hold_entropy_at_reference needs freeze_reference() first")
        with torch.no_grad():
            _, log_prob = self.reference.action_log_prob(observations)
        self.target_entropy = float(-log_prob.mean())
        return self.target_entropy

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's update (``gradient_steps`` batches) with the anchor term in the actor loss."""
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        anchored = self.anchor_coef > 0 and self.reference is not None
        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses, anchor_kls = [], [], []

        for gradient_step in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
            actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
            log_prob = log_prob.reshape(-1, 1)

            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = torch.exp(self.log_ent_coef.detach())
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                ent_coef_losses.append(ent_coef_loss.item())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())
            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()  # type: ignore[no-untyped-call]
                self.ent_coef_optimizer.step()

            with torch.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)
                next_q_values = torch.cat(
                    self.critic_target(replay_data.next_observations, next_actions), dim=1
                )
                next_q_values, _ = torch.min(next_q_values, dim=1, keepdim=True)
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values

            current_q_values = self.critic(replay_data.observations, replay_data.actions)
            critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, torch.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()  # type: ignore[no-untyped-call]
            self.critic.optimizer.step()

            q_values_pi = torch.cat(self.critic(replay_data.observations, actions_pi), dim=1)
            min_qf_pi, _ = torch.min(q_values_pi, dim=1, keepdim=True)
            actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
            if anchored:
                anchor = self.anchor_kl(replay_data.observations)
                anchor_kls.append(anchor.item())
                actor_loss = actor_loss + self.anchor_coef * anchor
            actor_losses.append(actor_loss.item())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()  # type: ignore[no-untyped-call]
            self.actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if ent_coef_losses:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        if anchor_kls:
            self.logger.record("train/anchor_kl", np.mean(anchor_kls))
        self.logger.record("train/anchor_coef", self.anchor_coef)
