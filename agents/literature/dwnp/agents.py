"""DWNP and its hypernetwork baselines as agents: ``dwnp``, ``dwnp-wireless``, ``fedilp``, ``fedosp``.

Every round all devices take part with equal bandwidth shares; each device's encoded pruning rate is
what its current sub-network removes, so the simulator times the sub-network each device trains.
The models use LayerNorm (``learning.norm: layer``), as in the paper (Sec. 4.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import AGENTS
from agents.literature.common import ScheduledStrategy, StrategyAgent, schedule_rounds, unpruned_round_time_s
from agents.literature.dwnp.strategy import DWNPSettings, DWNPStrategy
from fedsimenv.learning.local_sgd import PeriodicAveraging

#: Smallest device budget the wireless-aware option assigns.
MIN_DEVICE_BUDGET = 0.1


def wireless_budgets(round_time_s: NDArray[np.float64], mean_budget: float) -> NDArray[np.float64]:
    """Wireless-aware p_d^n: proportional to each device's speed ``1 / T_n`` (unpruned round time at
    an equal bandwidth share: compute and channel), scaled to average ``mean_budget`` and clipped to
    [0.1, 1]. The paper sets every p_d^n equal; this option is ours."""
    speed = 1.0 / round_time_s
    result: NDArray[np.float64] = np.clip(mean_budget * speed / speed.mean(), MIN_DEVICE_BUDGET, 1.0)
    return result


@AGENTS.register("dwnp")
class DWNPAgent(StrategyAgent):
    """DWNP (Gao et al.): device-wise sub-networks from a hypernetwork over learned embeddings."""

    settings: ClassVar[DWNPSettings] = DWNPSettings()
    wireless_aware: ClassVar[bool] = False
    learning_overrides: ClassVar[Mapping[str, Any]] = {"learning.norm": "layer"}

    def make_strategy(self) -> ScheduledStrategy:
        rounds = schedule_rounds(self.context.max_rounds, self.settings.train_fraction)
        strategy = DWNPStrategy(rounds, self.settings)
        if self.settings.r_w is not None:
            # Alg. 1: W averaged every r_W local iterations; the learning-rate schedule (none by
            # default) restarts for the fine-tuning phase.
            total = self.context.max_rounds or rounds
            strategy.periodic = PeriodicAveraging(self.settings.r_w).with_phases(rounds, total - rounds)
        return strategy

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        self._require_bound()
        strategy = self.strategy
        assert isinstance(strategy, DWNPStrategy)
        if self.wireless_aware and strategy.device_budgets is None:
            times = unpruned_round_time_s(self.context.view())
            strategy.device_budgets = wireless_budgets(times, self.settings.device_budget)
        return super().act(observation, info)


@AGENTS.register("dwnp-wireless")
class WirelessDWNPAgent(DWNPAgent):
    """DWNP with each device's FLOPs budget p_d^n from its compute speed and channel."""

    wireless_aware: ClassVar[bool] = True


@AGENTS.register("fedilp")
class FedILPAgent(DWNPAgent):
    """FedILP (DWNP's baseline): iterative learning and pruning, one sub-network ``a^0`` for all."""

    settings: ClassVar[DWNPSettings] = DWNPSettings(device_wise=False)


@AGENTS.register("fedosp")
class FedOSPAgent(DWNPAgent):
    """FedOSP (DWNP's baseline): dense training, then a one-shot HN with weights frozen, one
    sub-network for all devices, fine-tuning."""

    settings: ClassVar[DWNPSettings] = DWNPSettings(device_wise=False, one_shot=True)
