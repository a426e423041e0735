"""The env-step fast paths against the general code, bit for bit.

* ``fedsimenv.sim.fastround`` (whole synchronous static-FDMA rounds in array form) against the
  general closed form (``sim.fast_rounds = False``) and the SimPy event loop
  (``sim.closed_form_rounds = False``): the same scenario, seed and actions give the same pickled
  observation, reward, flags, info, RoundReport and simulator state at every step;
* a static ``DynamicChannel`` (which only advances its fading) against its general update;
* the cheaper report summary, covering shortcut and rate formulas against the straightforward ones.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from sim_helpers import make_simulator

from channels import DynamicChannel, shannon_rate_bps
from channels.mobility import StaticMobility, uniform_in_annulus
from fedsimenv.config import NetworkConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.env_round import round_covering
from fedsimenv.learning.covering import covering_index
from fedsimenv.learning.data import dirichlet_partition
from fedsimenv.learning.plan import DeviceJob, ModelCost, RoundPlan
from fedsimenv.learning.surrogate import SurrogateTrainer
from fedsimenv.scenario import load_scenario
from fedsimenv.sim import DeviceWorkload, RoundDecision
from fedsimenv.sim.builder import build_channel
from fedsimenv.sim.fastround import _broadcast_rate_bps, _fdma_rate_bps, report_summary
from fedsimenv.sim.types import STATUS_DROPPED, STATUS_FAILED, RoundReport

MODES = ("fast", "closed form", "event loop")
UMA_LOS = {"model": "3gpp-uma", "params": {"carrier_freq_hz": 3.5e9, "condition": "probabilistic"}}


def rollout(mode: str, overrides: dict[str, Any], steps: int, seed: int = 2) -> tuple[list[bytes], int]:
    """Pickled per-step outcomes of random actions (with NaN ones), and the rounds run fast."""
    env = WirelessFLEnv(
        "tiny", trainer="surrogate", overrides={"cell.num_devices": 20, "episode.max_rounds": 6, **overrides}
    )
    rng = np.random.default_rng(seed)
    fast_rounds = 0

    def fresh(**kwargs: Any) -> None:
        env.reset(**kwargs)
        env.simulator.fast_rounds &= mode == "fast"
        env.simulator.closed_form_rounds = mode != "event loop"

    fresh(seed=seed)
    outcomes = []
    for step in range(steps):
        action = rng.uniform(-1.2, 1.2, size=env.action_space.shape).astype(np.float32)
        if step % 7 == 3:
            action[:] = np.nan  # decodes to one device at rho_max / 2 with all of B
        obs, reward, terminated, truncated, info = env.step(action)
        sim = env.simulator
        jobs = sim.jobs
        state = (
            sim.now_s,
            sim.battery_j,
            jobs,
            sim.arrivals,
            sim.busy,
            sim.round_index,
            sim.downlink_rate_bps,
        )
        outcomes.append(pickle.dumps((obs, reward, terminated, truncated, info, env.last_report, state)))
        if terminated or truncated:
            fast_rounds += sim.fast_round_count
            fresh()
    return outcomes, fast_rounds + env.simulator.fast_round_count


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("static synchronous", {}),
        ("power and CPU controls, idle power", {
            "action.controls": ["select", "rho", "bandwidth", "power", "cpu_freq"],
            "devices.idle_power_w": 0.05,
        }),
        ("quantised uploads, noise figure and interference", {
            "action.controls": ["select", "rho", "bandwidth", "quant_bits"],
            "network.noise_figure_db": 7.0,
            "network.interference_psd_dbm_per_hz": -170.0,
        }),
        ("static LOS states and correlated shadowing, budgets", {
            "channel.path_loss": UMA_LOS,
            "channel.shadowing": {"model": "gudmundson", "params": {"std_db": 6.0}},
            "episode.time_budget_s": 40.0,
            "reward.name": "accuracy-latency-energy",
        }),
    ],
)  # fmt: skip
def test_fast_rounds_equal_the_closed_form_and_the_event_loop(name: str, overrides: dict[str, Any]) -> None:
    steps = 14
    fast, fast_rounds = rollout("fast", overrides, steps)
    assert fast_rounds == steps, f"{name}: every round is eligible for the fast path"
    for mode in MODES[1:]:
        other, other_fast = rollout(mode, overrides, steps)
        assert other_fast == 0
        for i, (a, b) in enumerate(zip(fast, other, strict=True)):
            assert a == b, f"{name}: step {i} differs between the fast path and the {mode}"


@pytest.mark.parametrize(
    "overrides",
    [
        {"network.packet_error": {"waterfall_threshold": 5.0, "max_transmissions": 2}},
        {"network.access": "ofdma", "network.resource_blocks": {"count": 25, "bandwidth_hz": 0.8e6}},
        {"channel.coherence_time_s": 0.3},
        {"devices.availability": {"on_to_off_rate_per_s": 0.3, "off_to_on_rate_per_s": 0.5}},
        {"protocol": {"name": "deadline", "deadline_s": 0.5}},
    ],
)
def test_rounds_the_fast_path_cannot_take_use_the_general_path(overrides: dict[str, Any]) -> None:
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": 6, **overrides})
    env.reset(seed=0)
    assert not env.simulator.fast_rounds
    env.step(env.action_space.sample())
    assert env.simulator.fast_round_count == 0


def test_finite_batteries_fall_back_round_by_round() -> None:
    overrides = {
        "devices.battery_capacity_j": {"distribution": "constant", "value": 50.0},
        "devices.idle_power_w": 0.05,
    }
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": 6, **overrides})
    env.reset(seed=0)
    assert env.simulator.fast_rounds  # statically eligible, but a battery can run out mid-round
    env.step(np.ones(3 * 6, dtype=np.float32))
    assert env.simulator.fast_round_count == 0 and env.simulator.closed_form_count == 1


def test_simulator_level_decisions_with_own_downloads_zero_sizes_and_ties() -> None:
    """Random selections, bandwidth also given to unselected devices, powers, CPU frequencies,
    per-device download sizes (some 0), zero-bit uploads and equal end times (ties), unvalidated."""
    rng = np.random.default_rng(11)
    n = 7
    network = NetworkConfig(bandwidth_hz=n * 1e6)
    sims = [make_simulator([1e9] * 3 + [2e9] * 4, network=network, seed=5) for _ in MODES]
    sims[1].fast_rounds = False
    sims[2].closed_form_rounds = False
    ties = 0
    for round_index in range(30):
        selected = rng.random(n) < 0.6
        selected[rng.integers(n)] = True
        tie = round_index % 4 == 0
        share = np.ones(n) if tie else rng.uniform(0.05, 1.0, n)
        bandwidth = share * (n * 1e6) / share.sum()  # unselected devices keep a share too
        decision = RoundDecision(
            selected=selected,
            pruning_rate=rng.uniform(0, 0.9, n),
            bandwidth_hz=bandwidth,
            tx_power_w=None if tie else rng.uniform(0.001, 0.01, n),
            cpu_freq_hz=None if tie or round_index % 3 else rng.uniform(0.5e9, 1e9, n),
        )
        sizes = np.full(n, 1e6) if tie else np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.0, 2e6, n))
        work = DeviceWorkload(
            forward_flops_per_sample=np.full(n, 1e5),
            upload_bits=sizes,
            download_bits=float(sizes[0]) if round_index % 2 else sizes[::-1] * 2,
            num_samples=np.full(n, 10, dtype=np.int64),
            local_epochs=2,
        )
        reports = [pickle.dumps(sim.run_round(decision, work)) for sim in sims]
        assert reports[0] == reports[1] == reports[2], f"round {round_index}"
        states = [pickle.dumps((s.jobs, s.arrivals, s.now_s, s.downlink_rate_bps, s.battery_j)) for s in sims]
        assert states[0] == states[1] == states[2], f"round {round_index}"
        stops = sims[0].jobs.stop_s[selected]
        ties += len(np.unique(stops)) < len(stops)
    assert ties > 0
    assert [sim.fast_round_count for sim in sims] == [30, 0, 0]


def test_static_channel_advances_like_the_general_update() -> None:
    """Static devices with correlated shadowing and a LOS model: only the fading is redrawn, and
    the gains are those of the full update (which moves nobody)."""
    config = load_scenario(
        "tiny",
        {
            "channel.path_loss": UMA_LOS,
            "channel.shadowing": {"model": "gudmundson", "params": {"std_db": 6.0}},
            "channel.fading": {"model": "gauss-markov", "params": {"speed_mps": 3.0}},
        },
    )
    channel = build_channel(config)
    assert channel.path_loss.needs_los_state
    rng = np.random.default_rng(3)
    position = uniform_in_annulus(40, 500.0, 10.0, rng)
    channels = [
        DynamicChannel(channel, StaticMobility(StaticMobility.Params()), 500.0, 10.0) for _ in range(2)
    ]
    assert all(c.static_large_scale for c in channels)
    channels[1].static_large_scale = False
    starts = [c.reset(position, np.random.default_rng(9)) for c in channels]
    assert np.array_equal(starts[0], starts[1])
    for dt in rng.exponential(1.0, 25):
        fast, general = (c.advance(float(dt)) for c in channels)
        assert fast.tobytes() == general.tobytes()
    assert channels[0].large_scale_gain_linear.tobytes() == channels[1].large_scale_gain_linear.tobytes()


def test_rate_formulas_equal_the_channel_library_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    n0 = 10 ** (-204 / 10)
    for trial in range(200):
        n = 1 + trial % 67  # every SIMD tail length, and the rate on a subset of each
        bandwidth = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(1e3, 2e7, n))
        power, gain = rng.uniform(1e-4, 1.0, n), 10 ** rng.uniform(-16, -6, n)
        expected = shannon_rate_bps(bandwidth, power, gain, n0)
        with np.errstate(divide="ignore", invalid="ignore"):  # as the fast round calls it
            fast = _fdma_rate_bps(bandwidth, power, gain, n0)
        assert fast.tobytes() == expected.tobytes()
        b, p, g = float(rng.uniform(1e5, 1e8)), float(rng.uniform(0.1, 40)), float(gain.min())
        assert _broadcast_rate_bps(b, p, g, n0) == float(shannon_rate_bps(b, p, g, n0))
    assert _broadcast_rate_bps(0.0, 1.0, 1e-9, n0) == float(shannon_rate_bps(0.0, 1.0, 1e-9, n0)) == 0.0


def test_summary_equals_the_straightforward_reductions() -> None:
    env = WirelessFLEnv(
        "tiny",
        trainer="surrogate",
        overrides={"cell.num_devices": 9, "protocol": {"name": "deadline", "deadline_s": 0.3}},
    )
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(6):
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        r = env.last_report
        assert r is not None
        downlink = r.download_finish_s - r.download_start_s
        expected = {
            "round_latency_s": r.end_time_s - r.start_time_s,
            "round_energy_j": float(
                r.compute_energy_j.sum() + r.transmit_energy_j.sum() + r.idle_energy_j.sum()
            ),
            "num_selected": int(r.selected.sum()),
            "num_arrived": int(r.arrived.sum()),
            "num_dropped": int((r.status == STATUS_DROPPED).sum()),
            "num_failed": int((r.status == STATUS_FAILED).sum()),
            "num_packet_errors": int((r.reason == "packet-error").sum()),
            "downlink_time_s": float(np.nanmax(downlink)) if np.isfinite(downlink).any() else 0.0,
            "upload_bits": float(r.upload_bits[r.arrived].sum()),
            "mean_pruning_rate": float(r.pruning_rate[r.selected].mean()),
            "max_staleness": int(r.staleness[r.arrived].max()) if r.arrived.any() else 0,
        }
        assert pickle.dumps(r.summary()) == pickle.dumps(expected)


def test_covering_shortcut_equals_covering_index() -> None:
    cost = ModelCost(forward_flops_per_sample=1.0, upload_bits=1.0, kept_params=7, total_params=13)
    jobs = {k: DeviceJob(k, 0.3, cost) for k in (1, 4, 6)}
    plan = RoundPlan(jobs)
    for arrived in ([], [4], [1, 6], [1, 4, 6]):
        chosen = plan.jobs_of(arrived)
        for is_async in (False, True):
            planned = None if is_async else [job.masks for job in jobs.values()]
            expected = covering_index([job.masks for job in chosen], 13 if chosen else 0, planned)
            got = round_covering(chosen, plan, is_async)
            assert pickle.dumps(got) == pickle.dumps(expected)


def test_observations_are_fresh_arrays_and_constants_stay_right() -> None:
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": 5})
    obs, _ = env.reset(seed=0)
    for value in obs.values():
        value[...] = -7.0  # a caller may scribble on what it got
    action = np.ones(3 * 5, dtype=np.float32)
    obs, *_ = env.step(action)
    sim = env.simulator
    assert np.array_equal(obs["distance_m"], np.minimum(sim.distance_m, 500.0).astype(np.float32))
    assert np.array_equal(obs["cpu_freq_ghz"], (sim.fleet.cpu_freq_hz / 1e9).astype(np.float32))
    samples = env.trainer.num_samples
    assert np.array_equal(obs["data_fraction"], (samples / samples.sum()).astype(np.float32))
    assert np.all(obs["battery_level"] == 1.0) and np.all(obs["available"] == 1.0)
    assert np.all(obs["last_selected"] == 1.0) and np.all(obs["rounds_since_selected"] == 0.0)


def test_fast_round_summary_equals_the_straightforward_reductions() -> None:
    """``fastround.report_summary`` of fast rounds (figures kept by the fast path) against the
    plain numpy reductions of the report."""
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": 11})
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(8):
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        r, sim = env.last_report, env.simulator
        assert r is not None and sim.fast_summary is not None and sim.fast_summary.report is r
        downlink = r.download_finish_s - r.download_start_s
        energy = float(r.compute_energy_j.sum() + r.transmit_energy_j.sum() + r.idle_energy_j.sum())
        expected = {
            "round_latency_s": r.end_time_s - r.start_time_s,
            "round_energy_j": energy,
            "num_selected": int(r.selected.sum()),
            "num_arrived": int(r.arrived.sum()),
            "num_dropped": int((r.status == STATUS_DROPPED).sum()),
            "num_failed": int((r.status == STATUS_FAILED).sum()),
            "num_packet_errors": int((r.reason == "packet-error").sum()),
            "downlink_time_s": float(np.nanmax(downlink)),
            "upload_bits": float(r.upload_bits[r.arrived].sum()),
            "mean_pruning_rate": float(r.pruning_rate[r.selected].mean()),
            "max_staleness": int(r.staleness[r.arrived].max()),
        }
        assert pickle.dumps(report_summary(sim, r)) == pickle.dumps(expected)
        assert pickle.dumps(report_summary(sim, r, 1.5)) == pickle.dumps({**expected, "round_energy_j": 1.5})
        assert pickle.dumps(r.summary()) == pickle.dumps(expected)


def test_column_plans_equal_eager_plans() -> None:
    """The surrogate's plan of columns against the eager DeviceJob plan of the same request: the
    same jobs (built on access), the same arrays for the arrived jobs, the same learning result."""
    env = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": 12})
    env.reset(seed=4)
    trainer = env.trainer
    assert isinstance(trainer, SurrogateTrainer)
    table = trainer.calibration.costs
    rates = {7: 0.0, 2: 0.45, 9: 0.9, 0: 0.3}
    plan = trainer.plan_round(rates)
    columns = plan.columns
    assert columns is not None and list(plan.jobs) == [7, 2, 9, 0] and len(plan.jobs) == 4 and 9 in plan.jobs
    eager = RoundPlan(
        {
            k: DeviceJob(k, rho, cost)
            for (k, rho), cost in zip(rates.items(), table.costs(np.array(list(rates.values()))), strict=True)
        }
    )
    assert pickle.dumps(dict(plan.jobs)) == pickle.dumps(dict(eager.jobs)) and plan == eager
    assert plan.costs == eager.costs and plan.pruning_rates == eager.pruning_rates
    for arrived in ([7, 2, 9, 0], [9, 7], [], [0]):
        idx, rho = columns.select(arrived)
        jobs = eager.jobs_of(arrived)
        assert idx.tolist() == [job.device for job in jobs] and idx.dtype == np.int64
        assert rho.tobytes() == np.array([job.pruning_rate for job in jobs], dtype=np.float64).tobytes()
    with pytest.raises(ValueError, match=r"devices \[5\] arrived but no job was planned"):
        columns.select([2, 5])
    results = []
    for candidate in (trainer.plan_round(rates), eager):
        env.reset(seed=4)
        results.append(pickle.dumps([trainer.train_round(candidate, [9, 7, 0]) for _ in range(3)]))
    assert results[0] == results[1]


def test_dirichlet_partition_equals_the_split_based_reference() -> None:
    """The partition by slices against ``np.split`` of the same draws."""

    def reference(labels: np.ndarray, n: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
        parts: list[list[np.ndarray]] = [[] for _ in range(n)]
        for label in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
            for device, chunk in enumerate(np.split(idx, cuts)):
                parts[device].append(chunk)
        return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]

    labels = np.random.default_rng(0).integers(0, 7, 500)
    for seed, n, alpha in ((1, 5, 0.3), (2, 20, 0.5), (3, 1, 1.0), (4, 40, 10.0)):
        got = dirichlet_partition(labels, n, alpha, np.random.default_rng(seed))
        expected = reference(labels, n, alpha, np.random.default_rng(seed))
        assert [p.tolist() for p in got] == [p.tolist() for p in expected]


def test_sample_counts_changed_in_place_are_priced_like_the_closed_form() -> None:
    """A trainer that shrinks its sample counts in place mid-episode (unlearning a class does) gets
    the fast round priced at the new counts, as the closed form prices them (a cache keyed on the
    array object went stale here)."""
    reports: dict[bool, RoundReport] = {}
    for fast in (True, False):
        env = WirelessFLEnv("tiny", trainer="surrogate", overrides={"cell.num_devices": 6})
        env.reset(seed=1)
        env.simulator.fast_rounds &= fast
        action = np.full(env.action_space.shape or (), 0.5, dtype=np.float32)
        env.step(action)
        samples = env.trainer.num_samples
        samples[:] = samples // 2  # in place: the same array object
        env.step(action)
        assert env.last_report is not None
        reports[fast] = env.last_report
        assert env.simulator.fast_round_count == (2 if fast else 0)
    np.testing.assert_array_equal(reports[True].compute_time_s, reports[False].compute_time_s)
    np.testing.assert_array_equal(reports[True].end_time_s, reports[False].end_time_s)
