"""fedsimenv: wireless federated edge learning co-simulation.

Importing the package registers the Gymnasium environments (kwargs ``scenario``: a built-in name, a
YAML path or a ``ScenarioConfig``; ``reward``, ``trainer``, ``overrides``, ``render_mode``):

* ``fedsimenv/WirelessFL-v0``: the canonical ``Box(-1, 1, (3N,))`` action, the scenario's trainer;
* ``fedsimenv/WirelessFL-Fast-v0``: the same with the calibrated surrogate trainer (fast mode);
* ``fedsimenv/WirelessFL-Discrete-v0``: ``MultiDiscrete`` action (off / on with L pruning levels,
  kwarg ``levels``), bandwidth from an allocator (kwarg ``allocator``).

The environment module itself (and torch) is imported only when an environment is made, and
gymnasium itself only by whoever uses it: the ids are registered as soon as gymnasium is imported
(at once if it already is), so ``import fedsimenv.sim`` or ``import fedsimenv.learning`` loads
neither gymnasium nor the env layer.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

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


def _register_envs(gymnasium: ModuleType) -> None:
    for env_id, (entry_point, kwargs) in _ENTRY_POINTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, kwargs=kwargs)


class _RegisterAfterGymnasium(importlib.abc.MetaPathFinder):
    """Post-import hook: registers the ids right after ``gymnasium`` finishes importing."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)  # one shot; the real finders locate the module
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_register(module: ModuleType) -> None:
            exec_module(module)
            _register_envs(module)

        loader.exec_module = exec_and_register  # type: ignore[method-assign]
        return spec


if "gymnasium" in sys.modules:
    _register_envs(sys.modules["gymnasium"])
elif not any(isinstance(finder, _RegisterAfterGymnasium) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterGymnasium())

__all__ = ["DISCRETE_ENV_ID", "ENV_ID", "ENV_IDS", "FAST_ENV_ID", "__version__"]
