"""Decision makers for fedsimenv: heuristics, analytic optimisers; literature algorithms and RL later.

Every agent is registered by name in :data:`AGENTS` and follows the :class:`Agent` protocol.
"""

from agents import heuristics, literature, optimisers, rl
from agents.base import (
    AGENTS,
    POLICY_AGENTS,
    Agent,
    AgentContext,
    check_agent_name,
    configure_for_agent,
    make_agent,
)

__all__ = [
    "AGENTS",
    "POLICY_AGENTS",
    "Agent",
    "AgentContext",
    "check_agent_name",
    "configure_for_agent",
    "heuristics",
    "literature",
    "make_agent",
    "optimisers",
    "rl",
]
