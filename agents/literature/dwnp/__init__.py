"""DWNP (Gao et al., "Device-Wise Federated Network Pruning") and its baselines FedILP and FedOSP.

Modules: :mod:`.gates` (straight-through Gumbel-sigmoid, FLOPs regulariser), :mod:`.hypernet`
(embeddings + hypernetwork), :mod:`.deploy` (how the deployed sub-networks are read out of the
hypernetwork: FLOPs-budget projection or the logit-sign threshold), :mod:`.strategy` (the
server-side schedule, Alg. 1), :mod:`.agents`.
"""

from agents.literature.dwnp import agents
from agents.literature.dwnp.deploy import project_to_flops_budget
from agents.literature.dwnp.gates import flops_regulariser, gumbel_sigmoid_st
from agents.literature.dwnp.hypernet import HyperNetwork
from agents.literature.dwnp.strategy import DWNPSettings, DWNPStrategy

__all__ = [
    "DWNPSettings",
    "DWNPStrategy",
    "HyperNetwork",
    "agents",
    "flops_regulariser",
    "gumbel_sigmoid_st",
    "project_to_flops_budget",
]
