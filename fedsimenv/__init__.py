"""fedsimenv: wireless federated edge learning co-simulation.

Importing the package registers the Gymnasium environments (kwargs ``scenario``: a built-in name, a
YAML path or a ``ScenarioConfig``; ``reward``, ``trainer``, ``overrides``, ``render_mode``):

* ``fedsimenv/WirelessFL-v0``: the canonical ``Box(-1, 1, (3N,))`` action, the scenario's trainer;
* ``fedsimenv/WirelessFL-Fast-v0``: the same with the calibrated surrogate trainer (fast mode);
* ``fedsimenv/WirelessFL-Discrete-v0``: ``MultiDiscrete`` action (off / on with L pruning levels,
  kwarg ``levels``), bandwidth from an allocator (kwarg ``allocator``).

The environment module itself (and torch) is imported only when an environment is made.
"""

from __future__ import annotations

import gymnasium

__version__ = "0.1.0"

ENV_ID = "fedsimenv/WirelessFL-v0"
FAST_ENV_ID = "fedsimenv/WirelessFL-Fast-v0"
DISCRETE_ENV_ID = "fedsimenv/WirelessFL-Discrete-v0"
#: Every id registered by this package.
ENV_IDS = (ENV_ID, FAST_ENV_ID, DISCRETE_ENV_ID)

_ENTRY_POINTS = {
    ENV_ID: ("fedsimenv.env:WirelessFLEnv", {"scenario": "tiny"}),
    FAST_ENV_ID: ("fedsimenv.env:WirelessFLEnv", {"scenario": "tiny", "trainer": "surrogate"}),
    DISCRETE_ENV_ID: ("fedsimenv.wrappers:WirelessFLDiscreteEnv", {"scenario": "tiny"}),
}
for _env_id, (_entry_point, _kwargs) in _ENTRY_POINTS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point, kwargs=_kwargs)

__all__ = ["DISCRETE_ENV_ID", "ENV_ID", "ENV_IDS", "FAST_ENV_ID", "__version__"]
