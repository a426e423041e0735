"""Rewards, each a class registered by name and configured by float params from the scenario.

A reward maps the outcome of a round to a scalar and the named terms it was built from (reported in
``info["reward_terms"]``).
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


class Reward(ABC):
    def episode_target(self, configured: float | None) -> float | None:
        """The accuracy that ends the episode, given ``episode.target_accuracy``."""
        return configured

    @abstractmethod
    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        """Return ``(reward, terms)``."""


REWARDS: Registry[type[Reward]] = Registry("reward")


@REWARDS.register("accuracy-gain-per-second")
class AccuracyGainPerSecond(Reward):
    """``(acc_t - acc_{t-1}) / round_latency_s``: accuracy gained per simulated second."""

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        gain = outcome.accuracy - outcome.previous_accuracy
        rate = gain / outcome.round_latency_s if outcome.round_latency_s > 0 else 0.0
        return rate, {"accuracy_gain": gain, "round_latency_s": outcome.round_latency_s}


@REWARDS.register("accuracy-latency-energy")
class AccuracyLatencyEnergy(Reward):
    """``w_acc (acc_t - acc_{t-1}) - w_lat latency_s - w_energy energy_j``.

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

    Maximising it minimises the simulated time to reach the target. The target is
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
