"""HeteroFL-style fixed width levels (Diao et al., ICLR 2021), assigned by device capability.

Each device trains the leading ``beta`` fraction of every layer's channels (the learning plane's
``width`` pruning: a top-left slice of the global tensors), with ``beta`` fixed for the whole episode
by the device's capability level; the server averages each entry over the devices whose slice
covers it (``masked-fedavg`` over leading-channel masks is HeteroFL's rule).

Left open / chosen here: HeteroFL assigns levels by fixed device classes; here the devices are
ranked by their unpruned round time at an equal bandwidth share in the first round (compute and
channel together) and split into ``len(width_levels)`` equal groups, fastest first. A width ``beta``
keeps ~``beta^2`` of the parameters, so the encoded rate is ``1 - beta^2`` (capped at ``rho_max``);
the width pruner turns that back into a channel ratio on the exact parameter count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import AGENTS, Agent
from agents.literature.common import unpruned_round_time_s
from fedsimenv.actions import encode_decision


def width_levels_by_capability(
    round_time_s: NDArray[np.float64], levels: tuple[float, ...]
) -> NDArray[np.float64]:
    """Width of each device: devices sorted by round time (fastest first, ties by index) are split
    into ``len(levels)`` groups as equal as possible, the fastest group getting ``levels[0]``."""
    order = np.lexsort((np.arange(len(round_time_s)), round_time_s))
    widths = np.empty(len(round_time_s))
    for group, members in enumerate(np.array_split(order, len(levels))):
        widths[members] = levels[group]
    return widths


@AGENTS.register("heterofl")
class HeteroFLAgent(Agent):
    """Fixed width levels by capability (HeteroFL's levels a, b, c: widths 1, 1/2, 1/4).

    All devices every round, equal bandwidth shares. Needs the system view (first round only).
    """

    width_levels: ClassVar[tuple[float, ...]] = (1.0, 0.5, 0.25)
    learning_overrides: ClassVar[Mapping[str, Any]] = {
        "learning.pruning": "width",
        "learning.aggregation": "masked-fedavg",
    }

    def reset(self, info: Mapping[str, Any]) -> None:
        self._rho: NDArray[np.float64] | None = None

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        if getattr(self, "_rho", None) is None:
            widths = width_levels_by_capability(unpruned_round_time_s(self.context.view()), self.width_levels)
            self._rho = np.minimum(1.0 - widths**2, self.context.action.rho_max)
        assert self._rho is not None
        n = self.context.num_devices
        return encode_decision(np.ones(n, bool), self._rho, np.ones(n), self.context.action)
