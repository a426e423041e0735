"""The env's Dict observation: its space (finite bounds everywhere) and how it is read off the state.

Keys never clash with ``torch.nn.Module`` attribute names (SB3 builds an ``nn.ModuleDict`` from
them). Every value is float32 and clipped into its documented bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from channels import linear_to_db
from channels.mobility import StaticMobility
from fedsimenv.config import ScenarioConfig
from fedsimenv.numeric import clip
from fedsimenv.sim import RoundSimulator

Observation = dict[str, NDArray[np.float32]]

#: Channel gains are clipped to this range (dB) in observations.
GAIN_DB_RANGE = (-250.0, 0.0)
#: CPU frequencies are clipped to [0, this] GHz in observations.
MAX_CPU_FREQ_GHZ = 10.0
#: Last compute and upload times are clipped to [0, this] seconds.
MAX_PHASE_TIME_S = 1e4
#: The global loss is clipped to [0, this].
MAX_LOSS = 20.0


def observation_space(config: ScenarioConfig) -> spaces.Dict:
    """The Dict observation space of a scenario (table in :class:`fedsimenv.env.WirelessFLEnv`)."""
    n = config.cell.num_devices

    def box(low: float, high: float, size: int) -> spaces.Box:
        return spaces.Box(np.float32(low), np.float32(high), shape=(size,), dtype=np.float32)

    return spaces.Dict(
        {
            "channel_gain_db": box(*GAIN_DB_RANGE, n),
            "distance_m": box(0.0, config.cell.radius_m, n),
            "cpu_freq_ghz": box(0.0, MAX_CPU_FREQ_GHZ, n),
            "battery_level": box(0.0, 1.0, n),
            "data_fraction": box(0.0, 1.0, n),
            "available": box(0.0, 1.0, n),
            "last_selected": box(0.0, 1.0, n),
            "rounds_since_selected": box(0.0, config.episode.max_rounds, n),
            "last_compute_time_s": box(0.0, MAX_PHASE_TIME_S, n),
            "last_upload_time_s": box(0.0, MAX_PHASE_TIME_S, n),
            "round_fraction": box(0.0, 1.0, 1),
            "time_fraction": box(0.0, 1.0, 1),
            "energy_fraction": box(0.0, 1.0, 1),
            "accuracy": box(0.0, 1.0, 1),
            "loss": box(0.0, MAX_LOSS, 1),
        }
    )


@dataclass
class DeviceHistory:
    """Per-device memory the observation needs across rounds (reset with each episode)."""

    last_selected: NDArray[np.float32]
    rounds_since_selected: NDArray[np.float32]
    #: (2, N): each device's last compute time (row 0) and last upload time (row 1), s; one
    #: array, so that a round updates both in one pass (the observation's ``last_compute_time_s``
    #: and ``last_upload_time_s`` are its rows).
    last_phase_times_s: NDArray[np.float32]

    @classmethod
    def fresh(cls, num_devices: int) -> DeviceHistory:
        zeros = np.zeros(num_devices, dtype=np.float32)
        return cls(zeros.copy(), zeros.copy(), np.zeros((2, num_devices), dtype=np.float32))

    def update(
        self,
        selected: NDArray[np.bool_],
        compute_time_s: NDArray[np.float64],
        upload_time_s: NDArray[np.float64],
        max_rounds: int,
    ) -> None:
        """After a round: who took part, and each device's phase times where it had a job."""
        self.last_selected = selected.astype(np.float32)
        since = self.rounds_since_selected + 1.0
        if selected.dtype == np.bool_:  # ``np.where(selected, 0.0, since)`` as a masked write
            since[selected] = 0.0
        else:
            since = np.where(selected, 0.0, since)
        self.rounds_since_selected = np.minimum(since, max_rounds).astype(np.float32, copy=False)
        # Each time clipped to [0, MAX_PHASE_TIME_S] where finite, else the last one, as float32
        # (the float32 last times are exact in float64, so the cast gives them back unchanged).
        times_s = np.array((compute_time_s, upload_time_s), dtype=np.float64)
        clipped = clip(times_s, 0.0, MAX_PHASE_TIME_S)
        kept = np.where(np.isfinite(times_s), clipped, self.last_phase_times_s)
        self.last_phase_times_s = kept.astype(np.float32)


def _fraction(value: float, budget: float | None) -> float:
    return 0.0 if budget is None else min(max(value / budget, 0.0), 1.0)


class ObservationBuilder:
    """Reads the observation of the coming round off the state, for one episode's simulator.

    What cannot change within the episode is computed once: CPU frequencies, data fractions, and
    the distances of devices that do not move (``StaticMobility``), the all-ones battery level and
    availability where batteries are unlimited and availability is not modelled. Every call still
    returns fresh arrays (a caller may modify them in place).
    """

    def __init__(
        self, config: ScenarioConfig, simulator: RoundSimulator, data_fraction: NDArray[np.float32]
    ) -> None:
        self.config, self.simulator = config, simulator
        fleet, n = simulator.fleet, simulator.fleet.num_devices
        self._cpu_freq_ghz = np.clip(fleet.cpu_freq_hz / 1e9, 0, MAX_CPU_FREQ_GHZ).astype(np.float32)
        self._data_fraction = data_fraction.copy()
        self._ones = np.ones(n, dtype=np.float32)
        mobility = getattr(simulator.channel, "mobility", None)
        self._distance: NDArray[np.float32] | None = None
        if type(mobility) is StaticMobility:  # positions never change: neither do the distances
            self._distance = self._read_distance()

    def _read_distance(self) -> NDArray[np.float32]:
        return np.minimum(self.simulator.distance_m, self.config.cell.radius_m).astype(np.float32)

    def __call__(
        self, history: DeviceHistory, round_index: int, energy_j: float, accuracy: float, loss: float
    ) -> Observation:
        """The observation of the coming round (table in :class:`fedsimenv.env.WirelessFLEnv`)."""
        simulator, fleet, episode = self.simulator, self.simulator.fleet, self.config.episode
        gain_db = clip(linear_to_db(simulator.channel_gain_linear), *GAIN_DB_RANGE)
        if simulator.availability is not None:
            # Advancing to "now" is what the next round's start does anyway: no extra randomness drawn.
            available = simulator.availability.advance_to(simulator.now_s).astype(np.float32)
        else:
            available = self._ones.copy()
        if fleet.battery_capacity_j is not None:
            battery = np.clip(simulator.battery_j / fleet.battery_capacity_j, 0.0, 1.0).astype(np.float32)
        else:
            battery = self._ones.copy()
        distance = self._read_distance() if self._distance is None else self._distance.copy()
        now_s = simulator.now_s
        phase_times_s = history.last_phase_times_s.copy()  # rows: compute, upload
        # The five (1,) scalars as slices of one float32 array (each value converted on its own,
        # as ``np.array([value], dtype=np.float32)`` would).
        scalars = np.array(
            [
                min(max(round_index / episode.max_rounds, 0.0), 1.0),
                min(max(_fraction(now_s, episode.time_budget_s), 0.0), 1.0),
                min(max(_fraction(energy_j, episode.energy_budget_j), 0.0), 1.0),
                min(max(accuracy, 0.0), 1.0),
                min(max(loss if math.isfinite(loss) else MAX_LOSS, 0.0), MAX_LOSS),
            ],
            dtype=np.float32,
        )
        return {
            "channel_gain_db": gain_db.astype(np.float32),
            "distance_m": distance,
            "cpu_freq_ghz": self._cpu_freq_ghz.copy(),
            "battery_level": battery,
            "data_fraction": self._data_fraction.copy(),
            "available": available,
            "last_selected": history.last_selected.copy(),
            "rounds_since_selected": history.rounds_since_selected.copy(),
            "last_compute_time_s": phase_times_s[0],
            "last_upload_time_s": phase_times_s[1],
            "round_fraction": scalars[0:1],
            "time_fraction": scalars[1:2],
            "energy_fraction": scalars[2:3],
            "accuracy": scalars[3:4],
            "loss": scalars[4:5],
        }


def build_observation(
    config: ScenarioConfig,
    simulator: RoundSimulator,
    data_fraction: NDArray[np.float32],
    history: DeviceHistory,
    round_index: int,
    energy_j: float,
    accuracy: float,
    loss: float,
) -> Observation:
    """The observation of the coming round (one-off; the env keeps an :class:`ObservationBuilder`)."""
    build = ObservationBuilder(config, simulator, data_fraction)
    return build(history, round_index, energy_j, accuracy, loss)
