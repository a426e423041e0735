"""Decision makers for fedsimenv: heuristics, analytic optimisers; literature algorithms and RL later.

Every agent is registered by name in :data:`AGENTS` and follows the :class:`Agent` protocol.
"""

from agents import heuristics, optimisers
from agents.base import AGENTS, Agent, AgentContext, make_agent

__all__ = ["AGENTS", "Agent", "AgentContext", "heuristics", "make_agent", "optimisers"]
