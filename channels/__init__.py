"""Wireless channel models: path loss, shadowing, fading, mobility, link rates.

Part of the timing plane: imports neither gymnasium nor torch. Components are registered by name
(``PATH_LOSS_MODELS``, ``SHADOWING_MODELS``, ``FADING_MODELS``, ``MOBILITY_MODELS``) and selected from
scenario YAML as ``{model: NAME, params: {...}}``.
"""

from channels import fading, mobility, pathloss, pathloss_3gpp, shadowing, temporal
from channels.base import (
    FADING_MODELS,
    MOBILITY_MODELS,
    PATH_LOSS_MODELS,
    SHADOWING_MODELS,
    FadingModel,
    MobilityModel,
    PathLossModel,
    ShadowingModel,
)
from channels.channel import ChannelModel
from channels.dynamic import DynamicChannel
from channels.link import (
    allocate_resource_blocks,
    broadcast_rate_bps,
    noise_power_w,
    ofdma_rate_bps,
    outage_probability,
    packet_error_rate,
    shannon_rate_bps,
    sinr_linear,
    snr_linear,
)
from channels.temporal import FadingProcess, start_fading
from channels.units import db_to_linear, dbm_to_watt, linear_to_db, watt_to_dbm

__all__ = [
    "FADING_MODELS",
    "MOBILITY_MODELS",
    "PATH_LOSS_MODELS",
    "SHADOWING_MODELS",
    "ChannelModel",
    "DynamicChannel",
    "FadingModel",
    "FadingProcess",
    "MobilityModel",
    "PathLossModel",
    "ShadowingModel",
    "allocate_resource_blocks",
    "broadcast_rate_bps",
    "db_to_linear",
    "dbm_to_watt",
    "fading",
    "linear_to_db",
    "mobility",
    "noise_power_w",
    "ofdma_rate_bps",
    "outage_probability",
    "packet_error_rate",
    "pathloss",
    "pathloss_3gpp",
    "shadowing",
    "shannon_rate_bps",
    "sinr_linear",
    "snr_linear",
    "start_fading",
    "temporal",
    "watt_to_dbm",
]
