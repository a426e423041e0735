"""Decision makers for fedsimenv: analytic optimisers, heuristics, federated-pruning algorithms from
the literature and RL policies.

Every agent is registered by name in :data:`AGENTS` and follows the :class:`Agent` protocol; saved RL
policies are built by name as ``ALGO:PATH`` through :data:`POLICY_AGENTS`.
"""

from agents import heuristics, literature, optimisers, quantised, radio, rl
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
    "quantised",
    "radio",
    "rl",
]
