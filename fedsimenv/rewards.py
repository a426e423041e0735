"""Rewards, each a class registered by name and configured by float params from the scenario.

A reward maps the outcome of a round to a scalar and the named terms it was built from (reported in
``info["reward_terms"]``). Each docstring states the reward's optimum, i.e. what a policy that
maximises the (undiscounted) episode return does, and when a policy that does not learn loses.

Every registered reward ranks the degenerate policy (one device at rho_max: very short rounds that
do not learn) below ``equal`` on the built-in scenarios (tests/test_rl_rewards.py, on the surrogate
and, marked slow, on real training), because accuracy enters each return through the accuracy
reached, not through a rate. Time enters in units of the round's *reference latency* (the median
over devices of the unpruned latency with an equal share, :meth:`SystemView.reference_latency_s`),
which makes the weights scale-free across scenarios.

The per-round rate ``accuracy-gain-per-second`` (``gain / round latency``, formerly the scenarios'
default) was retired: a sum of per-round rates over an episode of fixed length rewards short rounds
that barely learn (on ``default``, 20 one-device rho_max rounds gained 0.25 accuracy in 0.3 s:
0.8/s, against 0.006/s for ``equal``), and no per-round reward can express an episode-level rate.
Scenarios now default to ``accuracy-under-budget``.
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

    def episode_target(self, configured: float | None) -> float | None:
        """The accuracy that ends the episode, given ``episode.target_accuracy``."""
        return configured

    @abstractmethod
    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        """Return ``(reward, terms)``."""


REWARDS: Registry[type[Reward]] = Registry("reward")


def _reference(name: str, outcome: RoundOutcome) -> float:
    reference = outcome.reference_latency_s
    if reference is None or not reference > 0:
        raise ValueError(f"reward {name!r} needs the round's reference latency (> 0)")
    return reference


def _non_negative(**params: float) -> None:
    for name, value in params.items():
        if value < 0:
            raise ValueError(f"reward param {name} must be >= 0, got {value}")


def _check_target(name: str, target_accuracy: float) -> None:
    if not 0.0 <= target_accuracy <= 1.0:
        raise ValueError(f"reward param target_accuracy must be in [0, 1], got {target_accuracy}")


@REWARDS.register("accuracy-latency-energy")
class AccuracyLatencyEnergy(Reward):
    """``w_acc (acc_t - acc_{t-1}) - w_lat latency_t / T_ref,t - w_energy energy_j``.

    Optimum: the largest ``w_acc (final - initial accuracy) - w_lat (total time in reference
    latencies) - w_energy (total device energy, J)``: a fixed exchange rate between accuracy and
    cost. With the defaults one accuracy point (0.01) is worth 20 reference latencies or 10 J, so
    accuracy comes first and cost breaks ties: a policy that ends ``d`` accuracy above another beats
    it unless it spends more than ``2000 d`` extra reference latencies (or ``1000 d`` J). On
    ``default`` (real training, 20 rounds), ``equal`` ends 0.6 above the degenerate policy for 520
    reference latencies and 57 J more: 0.60 - 0.26 - 0.06 > 0. Larger cost weights make it a
    trade-off in which a policy that learns little but cheaply can win; check it with
    tests/test_rl_rewards.py's degenerate-policy test before training on them.

    Args:
        accuracy_weight: Weight of the accuracy gain.
        latency_weight: Cost of one reference latency of simulated time.
        energy_weight_per_j: Cost of one joule of device energy.
    """

    uses_reference = True

    def __init__(
        self,
        accuracy_weight: float = 1.0,
        latency_weight: float = 0.0005,
        energy_weight_per_j: float = 0.001,
    ) -> None:
        _non_negative(
            accuracy_weight=accuracy_weight,
            latency_weight=latency_weight,
            energy_weight_per_j=energy_weight_per_j,
        )
        self.accuracy_weight = accuracy_weight
        self.latency_weight = latency_weight
        self.energy_weight_per_j = energy_weight_per_j

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        reference = _reference("accuracy-latency-energy", outcome)
        terms = {
            "accuracy": self.accuracy_weight * (outcome.accuracy - outcome.previous_accuracy),
            "latency": -self.latency_weight * outcome.round_latency_s / reference,
            "energy": -self.energy_weight_per_j * outcome.round_energy_j,
        }
        return sum(terms.values()), terms


@REWARDS.register("time-to-target")
class TimeToTarget(Reward):
    """``-w_t latency_t / T_ref,t``, plus ``bonus`` in the round the target accuracy is reached
    (the episode ends there): the sparse episodic time to target.

    Optimum: reach the target in the least simulated time (in reference latencies). An episode
    that misses the target pays for its time and gets no bonus, so every episode that reaches the
    target within ``bonus / w_t`` reference latencies (500 with the defaults) scores above every
    episode that misses it, however short its rounds; ``equal`` reaches 0.9 on ``default`` in about
    150. Without the shaping of ``time-to-target-shaped`` a policy learns only from episodes that
    reach the target (prefer the shaped one for RL from scratch). The target is
    ``target_accuracy`` if > 0, else the scenario's ``episode.target_accuracy`` (one must be set).

    Args:
        time_weight: Cost of one reference latency of simulated time.
        bonus: Paid once, in the round whose accuracy reaches the target.
        target_accuracy: Target in (0, 1]; 0 = use ``episode.target_accuracy``.
    """

    uses_reference = True

    def __init__(self, time_weight: float = 0.02, bonus: float = 10.0, target_accuracy: float = 0.0):
        _non_negative(time_weight=time_weight, bonus=bonus)
        _check_target("time-to-target", target_accuracy)
        self.time_weight = time_weight
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
        reference = _reference("time-to-target", outcome)
        terms = {
            "time": -self.time_weight * outcome.round_latency_s / reference,
            "target_bonus": self.bonus if reached else 0.0,
        }
        return sum(terms.values()), terms


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

    def __init__(
        self,
        time_weight: float = 0.02,
        progress_weight: float = 10.0,
        bonus: float = 10.0,
        target_accuracy: float = 0.0,
    ) -> None:
        _non_negative(time_weight=time_weight, progress_weight=progress_weight, bonus=bonus)
        _check_target("time-to-target-shaped", target_accuracy)
        self.time_weight = time_weight
        self.progress_weight = progress_weight
        self.bonus = bonus
        self.target_accuracy = target_accuracy

    def episode_target(self, configured: float | None) -> float | None:
        return self.target_accuracy or configured or 0.9

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        target = self.episode_target(outcome.target_accuracy) or 0.9
        reference = _reference("time-to-target-shaped", outcome)

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
    Rounds are free except through the budget they use, so short rounds that do not learn never pay;
    without a budget time does not count at all (the scenarios' default reward: its return is the
    accuracy gained, which a policy that does not learn cannot score).
    """

    def __call__(self, outcome: RoundOutcome) -> tuple[float, dict[str, float]]:
        gain = outcome.accuracy - outcome.previous_accuracy
        return gain, {"accuracy_gain": gain}
