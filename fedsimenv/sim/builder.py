"""Building the timing plane from a scenario: channel, mobility, fleet, availability, simulator."""

from __future__ import annotations

from channels import (
    FADING_MODELS,
    MOBILITY_MODELS,
    PATH_LOSS_MODELS,
    SHADOWING_MODELS,
    ChannelModel,
    DynamicChannel,
    MobilityModel,
)
from fedsimenv.config import ScenarioConfig
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.availability import MarkovAvailability
from fedsimenv.sim.simulator import RoundSimulator
from fedsimenv.sim.world import build_fleet


def build_channel(config: ScenarioConfig) -> ChannelModel:
    """The scenario's channel model (path loss, shadowing, fading), from the registries."""
    spec = config.channel
    path_loss_cls = PATH_LOSS_MODELS.get(spec.path_loss.model)
    fading_cls = FADING_MODELS.get(spec.fading.model)
    shadowing = None
    if spec.shadowing is not None:
        shadowing_cls = SHADOWING_MODELS.get(spec.shadowing.model)
        shadowing = shadowing_cls(shadowing_cls.Params.model_validate(spec.shadowing.params))
    return ChannelModel(
        path_loss=path_loss_cls(path_loss_cls.Params.model_validate(spec.path_loss.params)),
        fading=fading_cls(fading_cls.Params.model_validate(spec.fading.params)),
        shadowing_std_db=spec.shadowing_std_db,
        shadowing=shadowing,
    )


def build_mobility(config: ScenarioConfig) -> MobilityModel:
    """The scenario's mobility model, from the registry (``reset`` it before use)."""
    spec = config.channel.mobility
    mobility_cls = MOBILITY_MODELS.get(spec.model)
    return mobility_cls(mobility_cls.Params.model_validate(spec.params))


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
        availability=availability,
    )
