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


class Reward(ABC):
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
