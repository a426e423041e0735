"""The federated pruning algorithms of the literature, running inside the co-simulation.

Registered agents: ``fedmp``, ``prunefl``, ``dwnp`` (and ``dwnp-wireless``), ``filter-pruning``,
``fedosp``, ``fedilp``, ``heterofl``, ``gwep``, ``sub-fedavg``, ``fedsparse``, ``fedduap``, ``unlearning``.

**The seam.** An algorithm that only picks per-device pruning rates is a plain agent (HeteroFL's
width levels). An algorithm defined by particular learning-plane rules declares them in
``Agent.learning_overrides`` (FedMP: ``l1-filter`` pruning and ``r2sp`` aggregation), which
:func:`agents.configure_for_agent` applies to the scenario before the env is built. An algorithm
whose *server* chooses masks or trains extra state (PruneFL's adaptive kept set, DWNP's hypernetwork,
one-shot pruning after training) installs a :class:`fedsimenv.learning.strategy.TrainingStrategy`
into the env's torch trainer in ``Agent.bind(env)``; the trainer calls it for each pruned device's
mask and after each aggregation. The agent still acts through the canonical action (all devices,
equal bandwidth, the achieved pruning rate of each device's mask), so the simulator times every
algorithm with the exact FLOPs and bits of the masks it really trains, and every run logs the same
metrics. ``fedsimenv run SCENARIO --agent NAME`` does all of this (``fedsimenv.experiments.session``).
"""

from agents.literature import (
    dwnp,
    fedduap,
    fedmp,
    fedsparse,
    filter_pruning,
    gwep,
    heterofl,
    prunefl,
    subfedavg,
    unlearning,
)

__all__ = [
    "dwnp",
    "fedduap",
    "fedmp",
    "fedsparse",
    "filter_pruning",
    "gwep",
    "heterofl",
    "prunefl",
    "subfedavg",
    "unlearning",
]
