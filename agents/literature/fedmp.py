"""FedMP (Jiang et al., "FedMP: Federated Learning through Adaptive Model Pruning in Heterogeneous
Edge Computing", ICDE 2022).

Each device trains a sub-model pruned with structured L1 filter pruning at one ratio in every layer
(the learning plane's ``l1-filter``); its ratio is chosen every round by a per-device multi-armed
bandit over discretised ratios with reward

    r_n = delta_L / |T_n - mean(T)|,

the loss reduction of the round over the distance of the device's completion time from the mean
(devices that finish close to the others, i.e. waste no one's time, and help the loss, score high).
The server aggregates with residual recovery (R2SP: each sub-model is completed with the global
model's pruned entries before FedAvg; the learning plane's ``r2sp``).

Left open by the paper and chosen here (documented, tunable as class attributes):

* arms: ratios {0, 0.1, ..., 0.8} (capped at the action's rho_max);
* bandit: UCB1 (Auer et al., 2002), index ``mean_i + c * s * sqrt(2 ln t / n_i)`` with exploration
  constant ``c = 1`` and ``s`` the mean absolute reward seen so far by that bandit (the reward's unit,
  loss per second, is arbitrary, so the bonus is scaled to it); untried arms first, lowest index;
* delta_L: the decrease of the *global* test loss over the round (FedMP uses the training loss
  reduction; the env reports the global loss), the same for every device of the round;
* guard: the denominator is ``max(|T_n - mean T|, epsilon * mean T)`` with ``epsilon = 0.01``, so a
  device exactly at the mean gets ``delta_L / (0.01 mean T)``, a large but finite reward;
* T_n: the device's completion time (download + compute + upload) measured by the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import AGENTS, Agent
from fedsimenv.actions import encode_decision

if TYPE_CHECKING:
    from fedsimenv.env import WirelessFLEnv


class UCB1:
    """UCB1 over ``num_arms`` arms with a scaled exploration bonus.

    Args:
        num_arms: Arms.
        exploration: Constant c of the bonus ``c * scale * sqrt(2 ln t / n_i)``.
    """

    def __init__(self, num_arms: int, exploration: float = 1.0) -> None:
        self.exploration = exploration
        self.counts = np.zeros(num_arms, dtype=np.int64)
        self.sums = np.zeros(num_arms)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def indices(self, scale: float = 1.0) -> NDArray[np.float64]:
        """The UCB index of each arm (+inf for an arm never pulled)."""
        index = np.full(len(self.counts), np.inf)
        tried = self.counts > 0
        if tried.any():
            mean = self.sums[tried] / self.counts[tried]
            bonus = (
                self.exploration * scale * np.sqrt(2.0 * math.log(max(self.total, 1)) / self.counts[tried])
            )
            index[tried] = mean + bonus
        return index

    def select(self, scale: float = 1.0) -> int:
        """The arm with the largest index (ties: lowest index)."""
        return int(np.argmax(self.indices(scale)))

    def update(self, arm: int, reward: float) -> None:
        self.counts[arm] += 1
        self.sums[arm] += reward


def fedmp_reward(loss_decrease: float, time_s: float, mean_time_s: float, epsilon: float = 0.01) -> float:
    """FedMP's reward ``delta_L / |T_n - mean T|`` with the denominator floored at ``epsilon * mean T``."""
    return loss_decrease / max(abs(time_s - mean_time_s), epsilon * mean_time_s)


@AGENTS.register("fedmp")
class FedMPAgent(Agent):
    """FedMP: per-device UCB over L1-filter pruning ratios, R2SP aggregation.

    All devices every round, equal bandwidth shares. Needs ``bind(env)`` to read each device's
    completion time from the simulator's round report.
    """

    arms: ClassVar[Sequence[float]] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    exploration: ClassVar[float] = 1.0
    epsilon: ClassVar[float] = 0.01
    learning_overrides: ClassVar[Mapping[str, Any]] = {
        "learning.pruning": "l1-filter",
        "learning.aggregation": "r2sp",
    }

    def bind(self, env: WirelessFLEnv) -> None:
        self._env = env

    @property
    def arm_rates(self) -> NDArray[np.float64]:
        return np.unique(np.minimum(np.asarray(self.arms, dtype=float), self.context.action.rho_max))

    def reset(self, info: Mapping[str, Any]) -> None:
        n = self.context.num_devices
        self.bandits = [UCB1(len(self.arm_rates), self.exploration) for _ in range(n)]
        self._abs_sum = np.zeros(n)
        self._chosen: NDArray[np.int64] | None = None
        self._loss = float(info.get("loss", math.nan))

    def _learn(self, info: Mapping[str, Any]) -> None:
        env = getattr(self, "_env", None)
        report = env.last_report if env is not None else None
        loss = float(info.get("loss", math.nan))
        if self._chosen is not None and report is not None and math.isfinite(self._loss):
            arrived = np.flatnonzero(report.arrived)
            if len(arrived):
                times = (report.upload_finish_s - report.start_time_s)[arrived]
                mean = float(np.mean(times))
                for k, t in zip(arrived, times, strict=True):
                    reward = fedmp_reward(self._loss - loss, float(t), mean, self.epsilon)
                    self.bandits[k].update(int(self._chosen[k]), reward)
                    self._abs_sum[k] += abs(reward)
        self._loss = loss

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        if not hasattr(self, "bandits"):
            self.reset(info)
        else:
            self._learn(info)
        chosen = np.empty(self.context.num_devices, dtype=np.int64)
        for k, bandit in enumerate(self.bandits):
            scale = self._abs_sum[k] / bandit.total if bandit.total else 1.0
            chosen[k] = bandit.select(scale if scale > 0 else 1.0)
        self._chosen = chosen
        n = self.context.num_devices
        return encode_decision(np.ones(n, bool), self.arm_rates[chosen], np.ones(n), self.context.action)
