"""Wireless channel models: path loss, shadowing, fading, link rates.

Part of the timing plane: imports neither gymnasium nor torch. Components are registered by name
(``PATH_LOSS_MODELS``, ``FADING_MODELS``) and selected from scenario YAML.
"""

from channels import fading, pathloss
from channels.base import FADING_MODELS, PATH_LOSS_MODELS, FadingModel, PathLossModel
from channels.channel import ChannelModel
from channels.link import shannon_rate_bps, snr_linear
from channels.units import db_to_linear, dbm_to_watt, linear_to_db, watt_to_dbm

__all__ = [
    "FADING_MODELS",
    "PATH_LOSS_MODELS",
    "ChannelModel",
    "FadingModel",
    "PathLossModel",
    "db_to_linear",
    "dbm_to_watt",
    "fading",
    "linear_to_db",
    "pathloss",
    "shannon_rate_bps",
    "snr_linear",
    "watt_to_dbm",
]
