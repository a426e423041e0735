"""Decision makers for fedsimenv: heuristics, analytic optimisers; literature algorithms and RL later.

Every agent is registered by name in :data:`AGENTS` and follows the :class:`Agent` protocol.
"""

from agents import heuristics, literature, optimisers
from agents.base import AGENTS, Agent, AgentContext, configure_for_agent, make_agent

__all__ = [
    "AGENTS",
    "Agent",
    "AgentContext",
    "configure_for_agent",
    "heuristics",
    "literature",
    "make_agent",
    "optimisers",
]
