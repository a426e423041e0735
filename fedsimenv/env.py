"""The Gymnasium environment: one ``step`` is one federated round."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from fedsimenv.actions import decode_action
from fedsimenv.config import ScenarioConfig
from fedsimenv.env_round import (
    END_REASONS,
    coming_round_view,
    episode_end,
    round_covering,
    round_info,
    round_workload,
)
from fedsimenv.learning.plan import DeviceJob, LearningResult, RoundPlan
from fedsimenv.learning.trainer import TRAINERS
from fedsimenv.numeric import make_frozen
from fedsimenv.observations import (
    GAIN_DB_RANGE,
    MAX_CPU_FREQ_GHZ,
    DeviceHistory,
    Observation,
    ObservationBuilder,
    observation_space,
)
from fedsimenv.rewards import REWARDS, RoundOutcome
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams, child_sequence
from fedsimenv.sim import RoundDecision, RoundReport, RoundSimulator
from fedsimenv.sim.builder import build_simulator
from fedsimenv.sim.fastround import report_summary
from fedsimenv.sim.protocols import PROTOCOLS
from fedsimenv.view import SystemView

__all__ = ["END_REASONS", "GAIN_DB_RANGE", "MAX_CPU_FREQ_GHZ", "WirelessFLEnv"]


class WirelessFLEnv(gym.Env[dict[str, Any], NDArray[Any]]):
    """Federated edge learning over a wireless cell, with per-device pruning, selection and bandwidth.

    ## Description

    N devices in a cell train one global model with FedAvg. In each round (one ``step``) the agent
    chooses which devices take part, how much each prunes its copy of the model, and how the shared
    uplink bandwidth B is split among them. A SimPy simulation gives each device's downlink, compute
    and upload times from the channel and the exact FLOPs and size of its pruned model; real PyTorch
    training of the pruned models (masked FedAvg over the devices that arrived) gives the accuracy,
    or, with ``trainer="surrogate"``, a learning curve calibrated on real runs (fast mode for RL
    training, :mod:`fedsimenv.learning.surrogate`; results shown to users come from real training).

    ## Action Space

    ``Box(-1, 1, (3N,), float32)``, laid out ``[select | rho | bandwidth]`` (see
    :mod:`fedsimenv.actions`): device k is selected iff ``select_k > selection_threshold`` (if none
    is, the device with the largest ``select_k``), ``rho_k = rho_max (a_k + 1) / 2``, bandwidth is a
    softmax of ``bandwidth_logit_scale * a_k`` over the selected devices times B. The scenario's
    ``action.controls`` may add N entries each for ``power`` (transmit power, a dB map below the
    device's maximum), ``cpu_freq`` (CPU frequency, a fraction of its maximum) and ``rb`` (first
    OFDMA resource block), in that order after the three: ``Box(-1, 1, (C N,))`` for C controls.

    Clipping, never a crash: NaN entries become 0, +inf becomes +1, -inf becomes -1, then every
    entry is clipped to [-1, 1]; so an all-NaN action selects device 0 (ties go to the lowest index)
    at rho_max / 2 with all of B. Only a wrong number of entries raises ``ValueError``.

    Readable variants (:mod:`fedsimenv.wrappers`): ``DictActionWrapper`` (``selected`` MultiBinary,
    ``pruning_rate`` in [0, rho_max], ``bandwidth_share``) and ``MultiDiscreteActionWrapper``
    (per device: off, or on with one of L quantised pruning rates; bandwidth from an allocator).

    ## Observation Space

    A ``Dict`` of float32 ``Box`` es with finite bounds (N = devices); values are clipped into them:

    | key                   | shape | range            | meaning                                     |
    |-----------------------|-------|------------------|---------------------------------------------|
    | channel_gain_db       | (N,)  | [-250, 0]        | uplink power gain of the coming round, dB   |
    | distance_m            | (N,)  | [0, radius_m]    | distance to the base station                |
    | cpu_freq_ghz          | (N,)  | [0, 10]          | CPU frequency                               |
    | battery_level         | (N,)  | [0, 1]           | battery left / capacity (1 if unlimited)    |
    | data_fraction         | (N,)  | [0, 1]           | share of all training samples held locally  |
    | available             | (N,)  | {0, 1}           | device is on now (Markov availability)      |
    | last_selected         | (N,)  | {0, 1}           | whether the device took part last round     |
    | rounds_since_selected | (N,)  | [0, max_rounds]  | rounds since last selected (from the start) |
    | last_compute_time_s   | (N,)  | [0, 1e4]         | compute time of its last job (0 before)     |
    | last_upload_time_s    | (N,)  | [0, 1e4]         | upload time of its last job (0 before)      |
    | round_fraction        | (1,)  | [0, 1]           | rounds done / max_rounds                    |
    | time_fraction         | (1,)  | [0, 1]           | simulated time / episode.time_budget_s      |
    | energy_fraction       | (1,)  | [0, 1]           | device energy / episode.energy_budget_j     |
    | accuracy              | (1,)  | [0, 1]           | global test accuracy now                    |
    | loss                  | (1,)  | [0, 20]          | global test loss now                        |

    ``time_fraction`` and ``energy_fraction`` are 0 when the budget is not set. No key clashes with
    a ``torch.nn.Module`` attribute (SB3's ``MultiInputPolicy`` works); ``ScaledFlatObservation``
    flattens it into ``Box(-1, 1)`` for ``MlpPolicy``.

    ## Rewards

    From the scenario's ``reward`` section (registry ``fedsimenv.rewards.REWARDS``); every term is in
    ``info["reward_terms"]``:

    * ``accuracy-under-budget`` (default): the accuracy gained this round (the episode return is the
      final accuracy minus the initial one);
    * ``accuracy-latency-energy``: ``w_acc gain - w_lat latency / T_ref - w_energy energy_j``;
    * ``time-to-target``: ``-w_time latency / T_ref`` per round, plus ``bonus`` in the round the
      target accuracy is reached (episode ends there);
    * ``time-to-target-shaped`` (for RL): the same time cost, a potential-based accuracy-progress
      term and a bonus at the target.

    ``T_ref`` is the round's reference latency (:meth:`SystemView.reference_latency_s`), so the
    weights are scale-free. Every registered reward ranks the degenerate policy (one device at
    rho_max: very short rounds that do not learn) below ``equal`` (tests/test_rl_rewards.py);
    ``fedsimenv/rewards.py`` documents each reward's optimum.

    ## Starting State

    ``reset(seed=s)`` draws device positions, CPU frequencies, the data partition and the initial
    model from seed s; ``reset()`` without a seed starts the next episode of the current seed's
    sequence (the first is seeded by the scenario's ``seed``).

    ## Episode End

    Terminated when the target accuracy (``episode.target_accuracy``, or the ``time-to-target``
    reward's own) is reached. Truncated when the simulated time reaches ``episode.time_budget_s``,
    the total device energy reaches ``episode.energy_budget_j`` (budgets are optional), or after
    ``episode.max_rounds`` rounds. ``info["episode_end"]`` names the reason (first of
    ``target_accuracy``, ``time_budget``, ``energy_budget``, ``max_rounds``; ``""`` otherwise).

    ## Info

    ``round``, ``sim_time_s`` (cumulative), ``round_latency_s``, ``energy_j`` (cumulative),
    ``round_energy_j``, ``accuracy``, ``loss``, ``num_selected``, ``num_arrived``, ``num_dropped``
    (deadline, over-commit), ``num_failed`` (unavailable, went offline, battery, packet error, no
    resource block), ``num_packet_errors``, ``max_staleness``,
    ``mean_pruning_rate``, ``upload_bits`` (of the arrived updates), ``downlink_time_s``,
    ``min_covering`` and ``mean_covering`` (the covering index of the aggregated masks,
    :mod:`fedsimenv.learning.covering`), ``server_time_s`` (server computation of a training
    strategy, included in ``round_latency_s``), ``extra_metrics`` (an algorithm's own, e.g.
    personalised accuracy), ``reward_terms`` and ``episode_end``. The full
    :class:`~fedsimenv.sim.RoundReport` of the last round (per-device phase times, status and reason,
    energy, battery) is
    ``env.unwrapped.last_report``.

    ## Protocols

    The scenario's ``protocol`` section: ``synchronous`` (default), ``deadline`` (late updates are
    dropped), ``over-commit`` (the first ``target_updates`` arrivals are kept), and ``async``
    (buffered asynchronous aggregation: devices keep working across steps, a step ends at every
    ``target_updates``-th arrival, each update is trained from the model its device downloaded and
    applied with FedBuff's staleness weight ``1 / sqrt(1 + staleness)``; selecting a busy device has
    no effect). Only arrived updates are trained and aggregated.

    ## Rendering

    ``render_mode="rgb_array"``: ``render()`` returns an (H, W, 3) uint8 frame: the cell with device
    positions (grey = not selected last round, colour = pruning rate, red edge = update lost) and
    the last round's download/compute/upload timeline.

    ## System View

    ``env.unwrapped.system_view()`` returns a read-only :class:`~fedsimenv.view.SystemView` of the
    coming round (linear gains, powers, N0, B, unpruned compute latency and upload bits, downlink
    times, samples): what analytic optimisers decide on. Not part of the observation.

    ## Arguments

    * ``scenario``: built-in scenario name, path to a YAML file, or a ``ScenarioConfig``.
    * ``reward``: reward name overriding the scenario's (``fedsimenv list`` shows them).
    * ``trainer``: trainer name overriding the scenario's: ``torch`` (real) or ``surrogate`` (fast).
    * ``overrides``: dotted-key overrides, e.g. ``{"episode.max_rounds": 5}``.
    * ``render_mode``: ``None`` or ``"rgb_array"``.

    Registered ids: ``fedsimenv/WirelessFL-v0`` (kwargs as above, default ``tiny``),
    ``fedsimenv/WirelessFL-Fast-v0`` (the same with ``trainer="surrogate"``) and
    ``fedsimenv/WirelessFL-Discrete-v0`` (:class:`fedsimenv.wrappers.WirelessFLDiscreteEnv`: the
    MultiDiscrete action, extra kwargs ``levels`` and ``allocator``).

    ## Version History

    * v0: walking skeleton: synchronous rounds, macro-cell channel, magnitude pruning, digits.
      Then, still v0 (no release yet): the full observation (battery, availability, history, budgets,
      loss), time/energy budgets, ``time-to-target`` reward, surrogate trainer, action wrappers,
      ``rgb_array`` rendering.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 2}  # noqa: RUF012

    def __init__(
        self,
        scenario: str | os.PathLike[str] | ScenarioConfig = "tiny",
        reward: str | None = None,
        trainer: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not supported; allowed values: None, 'rgb_array'"
            )
        self.render_mode = render_mode
        all_overrides = dict(overrides or {})
        if reward is not None:
            all_overrides["reward.name"] = reward
        if trainer is not None:
            all_overrides["trainer"] = trainer
        self.config = load_scenario(scenario, all_overrides)
        cfg = self.config
        self.num_devices = cfg.cell.num_devices
        self.trainer = TRAINERS.get(cfg.trainer)(cfg.learning, self.num_devices)
        if PROTOCOLS.get(cfg.protocol.name).jobs_span_rounds and not self.trainer.supports_async:
            supported = [name for name in TRAINERS.names() if TRAINERS.get(name).supports_async]
            raise ValueError(
                f"protocol.name: {cfg.protocol.name!r} keeps jobs across rounds, which trainer "
                f"{cfg.trainer!r} does not support; trainers that do: {', '.join(supported)}"
            )
        self.reward_fn = REWARDS.get(cfg.reward.name)(**cfg.reward.params)
        self.target_accuracy = self.reward_fn.episode_target(cfg.episode.target_accuracy)

        self.action_space = gym.spaces.Box(
            np.float32(-1.0),
            np.float32(1.0),
            shape=(len(cfg.action.controls) * self.num_devices,),
            dtype=np.float32,
        )
        self.observation_space = observation_space(cfg)
        self._seed_root = np.random.SeedSequence(cfg.seed)
        self._episode = 0
        self._simulator: RoundSimulator | None = None
        self.episode_streams: EpisodeStreams | None = None
        self.last_report: RoundReport | None = None
        #: The plan and learning result of the last round (what a replay log records).
        self.last_plan: RoundPlan | None = None
        self.last_learning: LearningResult | None = None
        self.last_covering: tuple[float, float] = (0.0, 0.0)
        #: Async protocol: the jobs started and not yet arrived, by device.
        self._in_flight: dict[int, DeviceJob] = {}
        self._view_cache: tuple[int, SystemView] | None = None
        self._observe: ObservationBuilder  # per episode (reset)

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
        self.episode_streams = streams

        self._simulator = build_simulator(self.config, streams)
        self.fleet = self._simulator.fleet
        initial = self.trainer.reset(streams)
        num_samples = self.trainer.num_samples
        self._data_fraction = (num_samples / num_samples.sum()).astype(np.float32)
        self._observe = ObservationBuilder(self.config, self._simulator, self._data_fraction)
        self._round = 0
        self._energy_j = 0.0
        self._history = DeviceHistory.fresh(self.num_devices)
        self._learning = initial
        self.last_report = None
        self.last_plan = None
        self.last_learning = None
        self._in_flight = {}
        self._view_cache = None
        return self._observation(), {"round": 0, "accuracy": initial.accuracy, "loss": initial.loss}

    def step(self, action: NDArray[Any]) -> tuple[Observation, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._simulator is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        fleet = self.simulator.fleet
        decision = decode_action(
            action,
            self.num_devices,
            cfg.action,
            cfg.network.bandwidth_hz,
            tx_power_max_w=fleet.tx_power_w,
            cpu_freq_max_hz=fleet.cpu_freq_hz,
            num_resource_blocks=self.simulator.uplink.num_blocks,
        )
        return self.step_decision(decision, validated=True)

    def step_decision(
        self, decision: RoundDecision, *, validated: bool = False
    ) -> tuple[Observation, SupportsFloat, bool, bool, dict[str, Any]]:
        """One round from a :class:`RoundDecision` (checked unless ``validated``: ``step`` decodes an
        action into a feasible one, so it skips the check)."""
        cfg = self.config
        simulator = self.simulator
        is_async = simulator.rules.jobs_span_rounds
        # In the async protocol a device already working keeps its job; only idle ones start one.
        starting = decision.selected & ~simulator.busy if is_async else decision.selected
        idx = starting.nonzero()[0]
        rates = dict(zip(idx.tolist(), decision.pruning_rate[idx].tolist(), strict=True))
        if decision.upload_value_bits is None:
            plan = self.trainer.plan_round(rates, spans_rounds=is_async)
        else:  # quantised uploads (control quant_bits): the trainer prices each at its width
            widths = {k: int(decision.upload_value_bits[k]) for k in rates}
            plan = self.trainer.plan_round(rates, spans_rounds=is_async, upload_value_bits=widths)
        workload = round_workload(plan, self.trainer, self.num_devices, cfg.learning.local_epochs)
        reference_s = self.system_view().reference_latency_s() if self.reward_fn.uses_reference else None
        report = simulator.run_round(decision, workload, validated=validated)
        arrived = report.arrived.nonzero()[0].tolist()
        if is_async:
            self._in_flight.update(plan.jobs)
            jobs = RoundPlan(self._in_flight).jobs_of(arrived)
            for k in arrived:
                del self._in_flight[k]
            learning = self.trainer.train_async(jobs, [int(report.staleness[k]) for k in arrived])
        else:
            # A plan of columns (the surrogate's, without masks) is used without per-device jobs.
            jobs = plan.jobs_of(arrived) if plan.columns is None else []
            learning = self.trainer.train_round(plan, arrived)
            if learning.server_time_s > 0:
                # Server-side computation (e.g. FedDUAP's server update) ends the round later: the
                # simulated clock runs on through it (no device works meanwhile).
                simulator.env.run(until=simulator.now_s + learning.server_time_s)
        covering = learning.covering or round_covering(jobs, plan, is_async, len(arrived))
        self.last_covering = (float(covering[0]), float(covering[1]))  # one JSON form, replayed or not
        self.last_plan = plan
        self.last_learning = learning

        round_energy_j = report.energy_j
        reward, terms = self.reward_fn(
            make_frozen(  # ``RoundOutcome(...)``, without the frozen constructor's cost
                RoundOutcome,
                accuracy=learning.accuracy,
                previous_accuracy=self._learning.accuracy,
                round_latency_s=report.round_latency_s + learning.server_time_s,
                round_energy_j=round_energy_j,
                target_accuracy=self.target_accuracy,
                reference_latency_s=reference_s,
            )
        )
        self._round += 1
        self._energy_j += round_energy_j
        self._learning = learning
        self._history.update(
            decision.selected, report.compute_time_s, report.upload_time_s, cfg.episode.max_rounds
        )
        self.last_report = report

        now_s = simulator.now_s
        terminated, truncated, end_reason = episode_end(
            cfg.episode, self.target_accuracy, learning.accuracy, now_s, self._energy_j, self._round
        )
        summary = report_summary(simulator, report, round_energy_j)
        info = round_info(self._round, now_s, self._energy_j, summary, learning, terms)
        info["min_covering"], info["mean_covering"] = self.last_covering
        info["episode_end"] = end_reason
        return self._observation(), float(reward), terminated, truncated, info

    def render(self) -> NDArray[np.uint8] | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        from fedsimenv.render import render_frame

        sim = self.simulator
        position = getattr(sim.channel, "position_m", None)
        if position is None:
            position = self.fleet.position_m
        accuracy = self._learning.accuracy
        title = f"{self.config.name}: round {self._round}, t = {sim.now_s:.2f} s, accuracy {accuracy:.3f}"
        return render_frame(
            np.asarray(position, dtype=np.float64),
            self.config.cell.radius_m,
            self.last_report,
            self.config.action.rho_max,
            title,
        )

    # -- helpers -----------------------------------------------------------------------------

    @property
    def simulator(self) -> RoundSimulator:
        if self._simulator is None:
            raise RuntimeError("call reset() first")
        return self._simulator

    def system_view(self) -> SystemView:
        """The read-only :class:`~fedsimenv.view.SystemView` of the coming round (after ``reset``)."""
        sim = self.simulator
        if self._view_cache is None or self._view_cache[0] != sim.round_index:
            self._view_cache = (sim.round_index, coming_round_view(self.config, sim, self.trainer))
        return self._view_cache[1]

    def _observation(self) -> Observation:
        learning = self._learning
        return self._observe(self._history, self._round, self._energy_j, learning.accuracy, learning.loss)
