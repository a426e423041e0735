"""Learning plane: datasets, partitions, models, pruning, aggregation and trainers.

Imports neither gymnasium nor simpy. Importing the package fills the trainer registry
(:data:`fedsimenv.learning.trainer.TRAINERS`): every module that registers a trainer is imported here.
"""

from fedsimenv.learning import surrogate, trainer

__all__ = ["surrogate", "trainer"]
