"""Filter Pruning (Li et al., ICLR 2017) as DWNP's first baseline: L1-norm channel pruning, one shot
after training, then fine-tuning.

Gao et al. (DWNP, Sec. 4.1) adapt it to FL "directly ... where there are no communication costs for
pruning": the server trains a base model with FedAvg, ranks channels by their L1 norm, prunes to the
FLOPs budget once and fine-tunes the pruned model with FedAvg. The same pruned model serves the
server and every device (FLOPs reduction D = S).

Left open by the papers and chosen here: the same channel ratio in every group (Li et al. prune a
fixed fraction per layer) found by bisection so that the exact FLOPs meet the budget; the channel
norm is Torch-Pruning's group L1 norm (see ``fedsimenv.learning.pruning.structured``); the split
between training and fine-tuning rounds is ``train_fraction`` of the episode (DWNP: 200 + 200
epochs, i.e. one half).
"""

from __future__ import annotations

from typing import ClassVar

from agents.base import AGENTS
from agents.literature.channel_layout import ChannelLayout, l1_gates_for_flops, l1_importance
from agents.literature.common import ScheduledStrategy, StrategyAgent, schedule_rounds
from fedsimenv.learning.pruning import Masks
from fedsimenv.learning.trainer import TorchTrainer


class FilterPruningStrategy(ScheduledStrategy):
    """Dense FedAvg for ``train_rounds``, then L1 filter pruning to ``keep_flops`` of the FLOPs.

    Args:
        train_rounds: Rounds before the one pruning step.
        keep_flops: Fraction of the unpruned forward FLOPs the pruned model keeps (DWNP's p_d).
    """

    def __init__(self, train_rounds: int, keep_flops: float) -> None:
        super().__init__(train_rounds)
        self.keep_flops = keep_flops

    def server_prune(self, trainer: TorchTrainer) -> Masks:
        example = trainer.client_data(0)[0][:1]
        layout = ChannelLayout(trainer.model, example)
        gates = l1_gates_for_flops(layout, l1_importance(trainer.model, example), self.keep_flops)
        return layout.masks(gates)


@AGENTS.register("filter-pruning")
class FilterPruningAgent(StrategyAgent):
    """Filter Pruning baseline (DWNP's Table 1): train, L1-prune once to ``keep_flops``, fine-tune.

    All devices every round, equal bandwidth shares.
    """

    keep_flops: ClassVar[float] = 0.5
    train_fraction: ClassVar[float] = 0.5

    def make_strategy(self) -> ScheduledStrategy:
        return FilterPruningStrategy(
            schedule_rounds(self.context.max_rounds, self.train_fraction), self.keep_flops
        )
