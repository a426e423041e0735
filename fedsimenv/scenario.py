"""Finding, loading, validating and writing scenario files.

A scenario is referred to by the name of a built-in file (``tiny`` -> ``scenarios/tiny.yaml``,
shipped inside the wheel as package data of the ``scenarios`` package) or by a path to a YAML file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fedsimenv.config import REGISTRIES, ScenarioConfig


class ScenarioError(ValueError):
    """A scenario could not be found, parsed or validated; the message says where and why."""


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with fedsimenv."""
    root = resources.files("scenarios")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_scenario_text(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """Return ``(source, yaml_text)`` for a built-in name or a file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario file not found: {path}")
        return str(path), path.read_text(encoding="utf-8")
    name = str(name_or_path)
    resource = resources.files("scenarios") / f"{name}.yaml"
    if not resource.is_file():
        raise ScenarioError(
            f"unknown scenario {name!r}; built-in scenarios: {', '.join(builtin_scenarios())} "
            "(or give a path to a .yaml file)"
        )
    return f"built-in scenario {name!r}", resource.read_text(encoding="utf-8")


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted keys set: ``{"episode.max_rounds": 5}``."""
    result: dict[str, Any] = _deep_copy(data)
    for dotted, value in overrides.items():
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ScenarioError(f"override {dotted!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_scenario(
    name_or_path: str | os.PathLike[str] | ScenarioConfig, overrides: Mapping[str, Any] | None = None
) -> ScenarioConfig:
    """Load and validate a scenario, applying dotted-key ``overrides`` first.

    Raises:
        ScenarioError: not found, not YAML, or invalid; the message names each bad field's path.
    """
    if isinstance(name_or_path, ScenarioConfig):
        data: Any = name_or_path.model_dump(mode="json")
        source = f"scenario {name_or_path.name!r}"
    else:
        source, text = read_scenario_text(name_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ScenarioError(f"{source}: not valid YAML: {err}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ScenarioError(
                f"{source}: top level must be a mapping of sections, got {type(data).__name__}"
            )
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return ScenarioConfig.model_validate(data, context={REGISTRIES: component_registries()})
    except ValidationError as err:
        raise ScenarioError(f"{source} is invalid:\n{format_validation_error(err)}") from None


def component_registries() -> dict[str, Any]:
    """The registries a scenario's component names are checked against, by kind (the planes own
    them; they fill on import of their packages)."""
    from fedsimenv.learning.aggregation import AGGREGATORS
    from fedsimenv.learning.datasets import DATASETS
    from fedsimenv.learning.models import MODELS
    from fedsimenv.learning.partition import PARTITIONS
    from fedsimenv.learning.pruning import PRUNING_METHODS
    from fedsimenv.learning.trainer import TRAINERS
    from fedsimenv.rewards import REWARDS
    from fedsimenv.sim.protocols import PROTOCOLS

    return {
        "aggregation": AGGREGATORS,
        "dataset": DATASETS,
        "model": MODELS,
        "partition": PARTITIONS,
        "pruning": PRUNING_METHODS,
        "protocol": PROTOCOLS,
        "reward": REWARDS,
        "trainer": TRAINERS,
    }


def format_validation_error(err: ValidationError) -> str:
    """One line per error: ``field.path: message (got VALUE)``, listing allowed keys for unknown ones."""
    lines = []
    for item in err.errors():
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(ScenarioConfig, loc[:-1])
            message = "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        elif item["type"] != "missing":
            message += f" (got {item.get('input')!r})"
        lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    cls: type[BaseModel] = model
    for part in loc:
        field = cls.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        cls = annotation
    return list(cls.model_fields)


def dump_scenario(config: ScenarioConfig) -> str:
    """The fully resolved scenario as YAML (every default written out)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
