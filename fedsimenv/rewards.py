"""Rewards, each a class registered by name and configured by float params from the scenario.

A reward maps the outcome of a round to a scalar and the named terms it was built from (reported in
``info["reward_terms"]``). Each docstring states the reward's optimum, i.e. what a policy that
maximises the (undiscounted) episode return does.

For RL use the episodic rewards ``time-to-target-shaped`` and ``accuracy-under-budget``: under both a
degenerate policy (one device at rho_max: very short rounds that do not learn) scores below ``equal``
(tests/test_rl_rewards.py). The per-round rates ``accuracy-gain-per-second`` and
``accuracy-latency-energy`` do not have that property (a round of 0.01 s that gains 0.01 accuracy
is worth 1/s) and are kept for comparisons, not for training policies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from fedsimenv.registry import Registry


@dataclass(frozen=True)
class RoundOutcome:
    """What a reward may look at after a round."""

    accuracy: float
    previous_accuracy: float
    round_latency_s: float
    round_energy_j: float
    target_accuracy: float | None = None
    #: The round's reference latency (median unpruned equal-share latency, s), filled in by the env
    #: for rewards with ``uses_reference``; ``None`` otherwise.
    reference_latency_s: float | None = None


class Reward(ABC):
    #: Whether the reward needs ``RoundOutcome.reference_latency_s`` (the env computes it only then).
    uses_reference: bool = False
    #: Whether RL may train on it: a degenerate policy (one device at rho_max) scores below ``equal``
    #: (tests/test_rl_rewards.py checks this both ways on every registered reward).
    rl_safe: bool = False

    def episode_target(self, configured: float | None) -> float | None:
        """The accuracy that ends the episode, given ``episode.target_accuracy``."""
        return configured

    @abstractmethod
    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        """Return ``(reward, terms)``."""


REWARDS: Registry[type[Reward]] = Registry("reward")


@REWARDS.register("accuracy-gain-per-second")
class AccuracyGainPerSecond(Reward):
    """``(acc_t - acc_{t-1}) / round_latency_s``: accuracy gained per simulated second.

    Optimum: the largest sum of per-round rates, which favours very short rounds (a degenerate
    one-device, rho_max round that gains little scores high): for comparisons, not RL training.
    """

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        gain = outcome.accuracy - outcome.previous_accuracy
        rate = gain / outcome.round_latency_s if outcome.round_latency_s > 0 else 0.0
        return rate, {"accuracy_gain": gain, "round_latency_s": outcome.round_latency_s}


@REWARDS.register("accuracy-latency-energy")
class AccuracyLatencyEnergy(Reward):
    """``w_acc (acc_t - acc_{t-1}) - w_lat latency_s - w_energy energy_j``.

    Optimum: the largest ``w_acc (final - initial accuracy) - w_lat total time - w_energy total
    energy``; with the default weights a cheap, poorly learning policy can beat one that reaches a
    high accuracy slowly (not safe for RL training without tuning the weights).

    Args:
        accuracy_weight: Weight of the accuracy gain.
        latency_weight_per_s: Cost of one simulated second.
        energy_weight_per_j: Cost of one joule of device energy.
    """

    def __init__(
        self,
        accuracy_weight: float = 1.0,
        latency_weight_per_s: float = 0.01,
        energy_weight_per_j: float = 0.01,
    ) -> None:
        for name, value in (
            ("accuracy_weight", accuracy_weight),
            ("latency_weight_per_s", latency_weight_per_s),
            ("energy_weight_per_j", energy_weight_per_j),
        ):
            if value < 0:
                raise ValueError(f"reward param {name} must be >= 0, got {value}")
        self.accuracy_weight = accuracy_weight
        self.latency_weight_per_s = latency_weight_per_s
        self.energy_weight_per_j = energy_weight_per_j

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        terms = {
            "accuracy": self.accuracy_weight * (outcome.accuracy - outcome.previous_accuracy),
            "latency": -self.latency_weight_per_s * outcome.round_latency_s,
            "energy": -self.energy_weight_per_j * outcome.round_energy_j,
        }
        return sum(terms.values()), terms


@REWARDS.register("time-to-target")
class TimeToTarget(Reward):
    """``-time_weight_per_s * latency_s``, plus ``bonus`` in the round the target accuracy is reached.

    Maximising it minimises the simulated time to reach the target, but an episode that misses the
    target pays only for its (short) time: where reaching the target takes longer than ``bonus /
    time_weight_per_s`` seconds, a degenerate policy that never learns scores higher (not RL-safe;
    use ``time-to-target-shaped``). The target is
    ``target_accuracy`` if > 0, else the scenario's ``episode.target_accuracy`` (one must be set).

    Args:
        time_weight_per_s: Cost of one simulated second.
        bonus: Paid once, in the round whose accuracy reaches the target (the episode then ends).
        target_accuracy: Target in (0, 1]; 0 = use ``episode.target_accuracy``.
    """

    def __init__(self, time_weight_per_s: float = 1.0, bonus: float = 10.0, target_accuracy: float = 0.0):
        if time_weight_per_s < 0 or bonus < 0:
            raise ValueError("reward params time_weight_per_s and bonus must be >= 0")
        if not 0.0 <= target_accuracy <= 1.0:
            raise ValueError(f"reward param target_accuracy must be in [0, 1], got {target_accuracy}")
        self.time_weight_per_s = time_weight_per_s
        self.bonus = bonus
        self.target_accuracy = target_accuracy

    def episode_target(self, configured: float | None) -> float | None:
        target = self.target_accuracy or configured
        if not target:
            raise ValueError(
                "reward 'time-to-target' needs a target: set episode.target_accuracy or "
                "reward.params.target_accuracy (in (0, 1])"
            )
        return target

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        target = self.episode_target(outcome.target_accuracy)
        reached = target is not None and outcome.accuracy >= target
        terms = {
            "time": -self.time_weight_per_s * outcome.round_latency_s,
            "target_bonus": self.bonus if reached else 0.0,
        }
        return sum(terms.values()), terms


def _check_target(name: str, target_accuracy: float) -> None:
    if not 0.0 <= target_accuracy <= 1.0:
        raise ValueError(f"reward param target_accuracy must be in [0, 1], got {target_accuracy}")


@REWARDS.register("time-to-target-shaped")
class ShapedTimeToTarget(Reward):
    """Episodic time to target for RL, in units of the round's reference latency, with
    potential-based shaping on accuracy:

    ``r_t = w_p (Phi(acc_t) - Phi(acc_{t-1})) - w_t latency_t / T_ref,t + bonus [acc_t >= target]``,
    ``Phi(a) = min(a, target) / target``; ``T_ref,t`` is the round's reference latency (median over
    devices of the unpruned latency with an equal share, which makes the reward scale-free across
    scenarios). The episode ends when the target is reached.

    Optimum: reach the target in the least (reference-normalised) simulated time. The progress terms
    telescope (Ng et al. 1999 potential shaping, exact for gamma = 1) to ``w_p (1 - Phi(acc_0))`` in
    every episode that reaches the target, so among those the return is a constant minus ``w_t``
    times the time taken; an episode that misses collects at most ``w_p (Phi(acc_T) - Phi(acc_0))``
    and no bonus, so it scores below every episode that reaches the target in less than
    ``(bonus + w_p (1 - Phi(acc_T))) / w_t`` reference latencies (500 with the defaults). Short
    rounds that do not learn earn nothing but their (small) time cost; rounds that lose accuracy pay
    for it through the progress term.

    Args:
        time_weight: Cost of one reference latency.
        progress_weight: Weight w_p of the accuracy potential.
        bonus: Paid once, in the round that reaches the target.
        target_accuracy: Target in (0, 1]; 0 = ``episode.target_accuracy``, else 0.9.
    """

    uses_reference = True
    rl_safe = True

    def __init__(
        self,
        time_weight: float = 0.02,
        progress_weight: float = 10.0,
        bonus: float = 10.0,
        target_accuracy: float = 0.0,
    ) -> None:
        for name, value in (
            ("time_weight", time_weight),
            ("progress_weight", progress_weight),
            ("bonus", bonus),
        ):
            if value < 0:
                raise ValueError(f"reward param {name} must be >= 0, got {value}")
        _check_target("time-to-target-shaped", target_accuracy)
        self.time_weight = time_weight
        self.progress_weight = progress_weight
        self.bonus = bonus
        self.target_accuracy = target_accuracy

    def episode_target(self, configured: float | None) -> float | None:
        return self.target_accuracy or configured or 0.9

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        target = self.episode_target(outcome.target_accuracy) or 0.9
        reference = outcome.reference_latency_s
        if reference is None or not reference > 0:
            raise ValueError("reward 'time-to-target-shaped' needs the round's reference latency (> 0)")

        def potential(accuracy: float) -> float:
            return min(accuracy, target) / target

        terms = {
            "progress": self.progress_weight
            * (potential(outcome.accuracy) - potential(outcome.previous_accuracy)),
            "time": -self.time_weight * outcome.round_latency_s / reference,
            "target_bonus": self.bonus if outcome.accuracy >= target else 0.0,
        }
        return sum(terms.values()), terms


@REWARDS.register("accuracy-under-budget")
class AccuracyUnderBudget(Reward):
    """``acc_t - acc_{t-1}``: the episode return is the final accuracy minus the initial one.

    Optimum: the highest accuracy when the episode ends: at ``episode.time_budget_s`` or
    ``episode.energy_budget_j`` (set one to make it a budgeted problem) or after ``max_rounds``.
    Rounds are free except through the budget they use, so short rounds that do not learn never pay.
    """

    rl_safe = True

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        gain = outcome.accuracy - outcome.previous_accuracy
        return gain, {"accuracy_gain": gain}
