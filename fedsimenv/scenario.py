"""Finding, loading, validating and writing scenario files.

A scenario is referred to by the name of a built-in file (``tiny`` -> ``scenarios/tiny.yaml``,
shipped inside the wheel as package data of the ``scenarios`` package) or by a path to a YAML file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fedsimenv.config import REGISTRIES, ScenarioConfig


class ScenarioError(ValueError):
    """A scenario could not be found, parsed or validated; the message says where and why."""


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader without YAML 1.1's surprises.

    * a key given twice in one mapping is an error naming the key and its line (not "last wins");
    * only ``true``/``false`` (any case) are booleans: ``on``, ``off``, ``yes``, ``no`` stay strings;
    * no sexagesimal numbers (``12:30:00`` stays a string, not 45000) and no ``0``-prefixed octal;
    * YAML 1.2 floats such as ``5e6`` are numbers (YAML 1.1 wants ``5.0e+6``).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base constructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (line {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_YAML_BOOL = "tag:yaml.org,2002:bool"
_YAML_INT = "tag:yaml.org,2002:int"
_YAML_FLOAT = "tag:yaml.org,2002:float"
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_YAML_BOOL, _YAML_INT, _YAML_FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(_YAML_BOOL, re.compile(r"^(?:true|false)$", re.IGNORECASE), list("tTfF"))
StrictLoader.add_implicit_resolver(
    _YAML_INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
StrictLoader.add_implicit_resolver(
    _YAML_FLOAT,
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def strict_yaml_load(text: str) -> Any:
    """Parse YAML with :class:`StrictLoader`, a ``yaml.SafeLoader`` (raises ``yaml.YAMLError``)."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


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
            data = strict_yaml_load(text)
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
