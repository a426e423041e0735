"""Building the timing plane from a scenario: channel, mobility, fleet, availability, simulator."""

from __future__ import annotations

from typing import ClassVar, Protocol, TypeVar

from pydantic import BaseModel

from channels import (
    FADING_MODELS,
    MOBILITY_MODELS,
    PATH_LOSS_MODELS,
    SHADOWING_MODELS,
    ChannelModel,
    DynamicChannel,
    MobilityModel,
)
from fedsimenv.config import ComponentConfig, ScenarioConfig
from fedsimenv.registry import Registry
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.availability import MarkovAvailability
from fedsimenv.sim.simulator import RoundSimulator
from fedsimenv.sim.world import build_fleet


class _Component(Protocol):
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel) -> None: ...


C = TypeVar("C", bound=_Component)


def build_component(registry: Registry[type[C]], spec: ComponentConfig) -> C:
    """Instantiate the registered class ``spec.model`` with ``spec.params`` validated by its Params."""
    cls = registry.get(spec.model)
    return cls(cls.Params.model_validate(spec.params))


def build_channel(config: ScenarioConfig) -> ChannelModel:
    """The scenario's channel model (path loss, shadowing, fading), from the registries."""
    spec = config.channel
    return ChannelModel(
        path_loss=build_component(PATH_LOSS_MODELS, spec.path_loss),
        fading=build_component(FADING_MODELS, spec.fading),
        shadowing_std_db=spec.shadowing_std_db,
        shadowing=None if spec.shadowing is None else build_component(SHADOWING_MODELS, spec.shadowing),
    )


def build_mobility(config: ScenarioConfig) -> MobilityModel:
    """The scenario's mobility model, from the registry (``reset`` it before use)."""
    return build_component(MOBILITY_MODELS, config.channel.mobility)


def build_simulator(config: ScenarioConfig, streams: EpisodeStreams) -> RoundSimulator:
    """A fresh simulator for one episode: devices from the ``world`` stream, channel evolution from
    ``channel``, availability from ``availability``."""
    channel = build_channel(config)
    fleet = build_fleet(config, channel, streams.numpy("world"))
    dynamic = DynamicChannel(
        channel, build_mobility(config), config.cell.radius_m, config.cell.min_distance_m
    )
    spec = config.devices.availability
    availability = (
        MarkovAvailability(
            config.cell.num_devices,
            spec.on_to_off_rate_per_s,
            spec.off_to_on_rate_per_s,
            streams.numpy("availability"),
        )
        if spec is not None
        else None
    )
    return RoundSimulator(
        fleet,
        dynamic,
        config.network,
        streams.numpy("channel"),
        protocol=config.protocol,
        coherence_time_s=config.channel.coherence_time_s,
        max_blocks_per_round=config.channel.max_blocks_per_round,
        availability=availability,
    )
