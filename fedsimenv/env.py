"""The Gymnasium environment: one ``step`` is one federated round."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from channels import linear_to_db, shannon_rate_bps
from fedsimenv.actions import decode_action
from fedsimenv.config import ScenarioConfig
from fedsimenv.learning.trainer import TRAINERS, LearningResult
from fedsimenv.rewards import REWARDS, RoundOutcome
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams, child_sequence
from fedsimenv.sim import DeviceWorkload, RoundReport, RoundSimulator
from fedsimenv.sim.builder import build_channel, build_mobility, build_simulator
from fedsimenv.view import SystemView

__all__ = ["WirelessFLEnv", "build_channel", "build_mobility"]

Observation = dict[str, NDArray[np.float32]]

#: Channel gains are clipped to this range (dB) in observations.
GAIN_DB_RANGE = (-250.0, 0.0)
#: CPU frequencies are clipped to [0, this] GHz in observations.
MAX_CPU_FREQ_GHZ = 10.0


class WirelessFLEnv(gym.Env[dict[str, Any], NDArray[Any]]):
    """Federated edge learning over a wireless cell, with per-device pruning, selection and bandwidth.

    ## Description

    N devices in a cell train one global model with FedAvg. In each round (one ``step``) the agent
    chooses which devices take part, how much each prunes its copy of the model, and how the shared
    uplink bandwidth B is split among them. A SimPy simulation gives each device's downlink, compute
    and upload times from the channel and the exact FLOPs and size of its pruned model; real PyTorch
    training of the pruned models (masked FedAvg over the devices that arrived) gives the accuracy.

    ## Action Space

    ``Box(-1, 1, (3N,), float32)``, laid out ``[select | rho | bandwidth]`` (see
    :mod:`fedsimenv.actions`): device k is selected iff ``select_k > selection_threshold`` (at least
    one always is), ``rho_k = rho_max (a_k + 1) / 2``, bandwidth is a softmax of
    ``bandwidth_logit_scale * a_k`` over the selected devices times B. NaN and infinite entries are
    mapped to 0, +1 and -1 and everything is clipped to [-1, 1]; only a wrong length raises.

    ## Observation Space

    A ``Dict`` of float32 ``Box`` es with finite bounds (N = devices):

    | key               | shape | range             | meaning                                      |
    |-------------------|-------|-------------------|----------------------------------------------|
    | channel_gain_db   | (N,)  | [-250, 0]         | uplink power gain of the coming round, dB    |
    | distance_m        | (N,)  | [0, radius_m]     | distance to the base station                 |
    | cpu_freq_ghz      | (N,)  | [0, 10]           | CPU frequency (clipped)                      |
    | data_fraction     | (N,)  | [0, 1]            | share of all training samples held locally   |
    | last_selected     | (N,)  | {0, 1}            | whether the device took part last round      |
    | round_fraction    | (1,)  | [0, 1]            | rounds done / max_rounds                     |
    | accuracy          | (1,)  | [0, 1]            | global test accuracy now                     |

    ## Rewards

    From the scenario's ``reward`` section (registry ``fedsimenv.rewards.REWARDS``); the default
    ``accuracy-gain-per-second`` is the accuracy gained this round divided by the round's latency.
    The terms are in ``info["reward_terms"]``.

    ## Starting State

    ``reset(seed=s)`` draws device positions, CPU frequencies, the data partition and the initial
    model from seed s; ``reset()`` without a seed starts the next episode of the current seed's
    sequence (the first is seeded by the scenario's ``seed``).

    ## Episode End

    Terminated when ``episode.target_accuracy`` is set and reached; truncated after
    ``episode.max_rounds`` rounds.

    ## Info

    ``round``, ``sim_time_s`` (cumulative), ``round_latency_s``, ``energy_j`` (cumulative),
    ``round_energy_j``, ``accuracy``, ``loss``, ``num_selected``, ``num_arrived``, ``num_dropped``
    (deadline, over-commit), ``num_failed`` (unavailable, went offline, battery), ``max_staleness``,
    ``mean_pruning_rate``, ``upload_bits`` (of the arrived updates), ``downlink_time_s`` and
    ``reward_terms``. The full :class:`~fedsimenv.sim.RoundReport` of the last round (per-device
    phase times, status and reason, energy, battery) is ``env.unwrapped.last_report``.

    ## Protocols

    The scenario's ``protocol`` section: ``synchronous`` (default), ``deadline`` (late updates are
    dropped), ``over-commit`` (the first ``target_updates`` arrivals are kept), and ``async``
    (buffered asynchronous aggregation: devices keep working across steps, a step ends at every
    ``target_updates``-th arrival, each update is trained from the model its device downloaded and
    applied with FedBuff's staleness weight ``1 / sqrt(1 + staleness)``; selecting a busy device has
    no effect). Only arrived updates are trained and aggregated.

    ## System View

    ``env.unwrapped.system_view()`` returns a read-only :class:`~fedsimenv.view.SystemView` of the
    coming round (linear gains, powers, N0, B, unpruned compute latency and upload bits, downlink
    times, samples): what analytic optimisers decide on. Not part of the observation.

    ## Arguments

    * ``scenario``: built-in scenario name, path to a YAML file, or a ``ScenarioConfig``.
    * ``reward``: reward name overriding the scenario's.
    * ``trainer``: trainer name overriding the scenario's (``torch``).
    * ``overrides``: dotted-key overrides, e.g. ``{"episode.max_rounds": 5}``.

    ## Version History

    * v0: walking skeleton: synchronous rounds, macro-cell channel, magnitude pruning, digits.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(
        self,
        scenario: str | os.PathLike[str] | ScenarioConfig = "tiny",
        reward: str | None = None,
        trainer: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported; allowed values: None")
        all_overrides = dict(overrides or {})
        if reward is not None:
            all_overrides["reward.name"] = reward
        if trainer is not None:
            all_overrides["trainer"] = trainer
        self.config = load_scenario(scenario, all_overrides)
        cfg = self.config
        n = self.num_devices = cfg.cell.num_devices
        self.trainer = TRAINERS.get(cfg.trainer)(cfg.learning, n)
        self.reward_fn = REWARDS.get(cfg.reward.name)(**cfg.reward.params)

        def box(low: float, high: float, size: int) -> spaces.Box:
            return spaces.Box(np.float32(low), np.float32(high), shape=(size,), dtype=np.float32)

        self.action_space = box(-1.0, 1.0, 3 * n)
        self.observation_space = spaces.Dict(
            {
                "channel_gain_db": box(*GAIN_DB_RANGE, n),
                "distance_m": box(0.0, cfg.cell.radius_m, n),
                "cpu_freq_ghz": box(0.0, MAX_CPU_FREQ_GHZ, n),
                "data_fraction": box(0.0, 1.0, n),
                "last_selected": box(0.0, 1.0, n),
                "round_fraction": box(0.0, 1.0, 1),
                "accuracy": box(0.0, 1.0, 1),
            }
        )
        self._seed_root = np.random.SeedSequence(cfg.seed)
        self._episode = 0
        self._simulator: RoundSimulator | None = None
        self.last_report: RoundReport | None = None
        self._view_cache: tuple[int, SystemView] | None = None

    # -- Gymnasium API -----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._seed_root = np.random.SeedSequence(seed)
            self._episode = 0
        streams = EpisodeStreams(child_sequence(self._seed_root, f"episode-{self._episode}"))
        self._episode += 1

        self._simulator = build_simulator(self.config, streams)
        self.fleet = self._simulator.fleet
        initial = self.trainer.reset(streams)
        num_samples = self.trainer.num_samples
        self._data_fraction = (num_samples / num_samples.sum()).astype(np.float32)
        self._round = 0
        self._energy_j = 0.0
        self._last_selected = np.zeros(self.num_devices, dtype=np.float32)
        self._learning = initial
        self.last_report = None
        self._view_cache = None
        return self._observation(), {"round": 0, "accuracy": initial.accuracy, "loss": initial.loss}

    def step(self, action: NDArray[Any]) -> tuple[Observation, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._simulator is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        decision = decode_action(action, self.num_devices, cfg.action, cfg.network.bandwidth_hz)
        is_async = cfg.protocol.name == "async"
        # In the async protocol a device already working keeps its job; only idle ones start one.
        starting = decision.selected & ~self._simulator.busy if is_async else decision.selected
        rates = {int(k): float(decision.pruning_rate[k]) for k in np.flatnonzero(starting)}
        costs = self.trainer.prepare_async(rates) if is_async else self.trainer.prepare_round(rates)

        flops = np.zeros(self.num_devices)
        bits = np.zeros(self.num_devices)
        for k, cost in costs.items():
            flops[k], bits[k] = cost.forward_flops_per_sample, cost.upload_bits
        workload = DeviceWorkload(
            forward_flops_per_sample=flops,
            upload_bits=bits,
            download_bits=self.trainer.download_bits(),
            num_samples=self.trainer.num_samples,
            local_epochs=cfg.learning.local_epochs,
        )
        report = self._simulator.run_round(decision, workload)
        arrived = [int(k) for k in np.flatnonzero(report.arrived)]
        learning = (
            self.trainer.train_async(arrived, [int(report.staleness[k]) for k in arrived])
            if is_async
            else self.trainer.train_round(arrived)
        )

        reward, terms = self.reward_fn(
            RoundOutcome(
                accuracy=learning.accuracy,
                previous_accuracy=self._learning.accuracy,
                round_latency_s=report.round_latency_s,
                round_energy_j=report.energy_j,
            )
        )
        self._round += 1
        self._energy_j += report.energy_j
        self._learning = learning
        self._last_selected = decision.selected.astype(np.float32)
        self.last_report = report

        target = cfg.episode.target_accuracy
        terminated = target is not None and learning.accuracy >= target
        truncated = self._round >= cfg.episode.max_rounds
        return self._observation(), float(reward), terminated, truncated, self._info(report, learning, terms)

    # -- helpers -----------------------------------------------------------------------------

    @property
    def simulator(self) -> RoundSimulator:
        if self._simulator is None:
            raise RuntimeError("call reset() first")
        return self._simulator

    def system_view(self) -> SystemView:
        """The read-only :class:`~fedsimenv.view.SystemView` of the coming round (after ``reset``)."""
        sim = self.simulator
        if self._view_cache is not None and self._view_cache[0] == sim.round_index:
            return self._view_cache[1]
        cfg = self.config
        # The unpruned cost is the same for every device (one global architecture); asking the
        # trainer for a rho = 0 cost has no side effect beyond its pending set, which we clear.
        unpruned = self.trainer.prepare_round({0: 0.0})[0]
        self.trainer.prepare_round({})
        n = self.num_devices
        num_samples = self.trainer.num_samples.astype(np.float64)
        cycles = cfg.learning.local_epochs * num_samples * 3.0 * unpruned.forward_flops_per_sample
        cycles = cycles / self.fleet.flops_per_cycle
        gain = sim.channel_gain_linear
        downlink_rate = shannon_rate_bps(
            cfg.network.downlink_bandwidth_hz, sim.bs_tx_power_w, gain, sim.noise_psd_w_per_hz
        )
        view = SystemView(
            round_index=sim.round_index,
            channel_gain_linear=gain,
            tx_power_w=self.fleet.tx_power_w,
            noise_psd_w_per_hz=sim.noise_psd_w_per_hz,
            bandwidth_hz=cfg.network.bandwidth_hz,
            compute_latency_s=cycles / self.fleet.cpu_freq_hz,
            compute_cycles=cycles,
            cpu_freq_hz=self.fleet.cpu_freq_hz,
            kappa=self.fleet.kappa,
            upload_bits=np.full(n, unpruned.upload_bits),
            download_bits=self.trainer.download_bits(),
            downlink_time_s=self.trainer.download_bits() / downlink_rate,
            num_samples=num_samples,
            rho_max=cfg.action.rho_max,
        )
        self._view_cache = (sim.round_index, view)
        return view

    def _observation(self) -> Observation:
        gain_db = np.clip(linear_to_db(self.simulator.channel_gain_linear), *GAIN_DB_RANGE)
        return {
            "channel_gain_db": gain_db.astype(np.float32),
            "distance_m": np.minimum(self.simulator.distance_m, self.config.cell.radius_m).astype(np.float32),
            "cpu_freq_ghz": np.clip(self.fleet.cpu_freq_hz / 1e9, 0, MAX_CPU_FREQ_GHZ).astype(np.float32),
            "data_fraction": self._data_fraction.copy(),
            "last_selected": self._last_selected.copy(),
            "round_fraction": np.array([self._round / self.config.episode.max_rounds], dtype=np.float32).clip(
                0, 1
            ),
            "accuracy": np.array([self._learning.accuracy], dtype=np.float32).clip(0, 1),
        }

    def _info(self, report: RoundReport, learning: LearningResult, terms: dict[str, float]) -> dict[str, Any]:
        return {
            "round": self._round,
            "sim_time_s": self.simulator.now_s,
            "energy_j": self._energy_j,
            "accuracy": learning.accuracy,
            "loss": learning.loss,
            **report.summary(),
            "reward_terms": terms,
        }
