"""fedsimenv: wireless federated edge learning co-simulation.

Importing the package registers the Gymnasium environment ``fedsimenv/WirelessFL-v0`` (kwarg
``scenario``: a built-in name, a YAML path or a ``ScenarioConfig``). The environment module itself
(and torch) is imported only when the environment is made.
"""

from __future__ import annotations

import gymnasium

__version__ = "0.1.0"

ENV_ID = "fedsimenv/WirelessFL-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="fedsimenv.env:WirelessFLEnv", kwargs={"scenario": "tiny"})

__all__ = ["ENV_ID", "__version__"]
