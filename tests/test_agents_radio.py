"""Radio-deciding agents: Yang et al.'s energy minimisation against its structure and an independent
scipy solve; the energy agent's set planning; Liu et al. without selection; Chen's RB assignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium import spaces
from scipy.optimize import minimize

from agents import AgentContext, make_agent
from agents.energy import EnergyProblem, minimise_energy
from agents.optimal.closed_form import allocate_fixed, min_bandwidth_hz
from agents.optimal.problem import JointProblem
from agents.radio import smallest_feasible_deadline_s
from fedsimenv.actions import decode_action
from fedsimenv.config import ActionConfig
from fedsimenv.view import SystemView

N0 = 4e-21


def _problem(n: int, seed: int, budget_s: float = 0.3) -> EnergyProblem:
    rng = np.random.default_rng(seed)
    return EnergyProblem(
        channel_gain_linear=10 ** (rng.uniform(-112, -100, n) / 10),
        noise_psd_w_per_hz=N0,
        tx_power_max_w=np.full(n, 0.1),
        compute_cycles=rng.uniform(1e8, 3e8, n),
        cpu_freq_max_hz=np.full(n, 2e9),
        kappa=1e-28,
        upload_bits=np.full(n, 1e6),
        bandwidth_hz=10e6,
        latency_budget_s=budget_s,
    )


def test_energy_solution_has_yang_et_al_structure() -> None:
    problem = _problem(5, 0)
    r = minimise_energy(problem)
    # (i) the whole band is used; (ii) every device's latency budget is tight (a slack device would
    # lower its frequency and save kappa C f^2); (iii) powers and frequencies within their maxima.
    assert r.bandwidth_hz.sum() == pytest.approx(10e6, rel=1e-9)
    np.testing.assert_allclose(problem.latency_s(r.bandwidth_hz, r.cpu_freq_hz, r.tx_power_w), 0.3, rtol=1e-6)
    assert np.all(r.tx_power_w <= 0.1 * (1 + 1e-12)) and np.all(r.cpu_freq_hz <= 2e9 * (1 + 1e-12))
    # (iv) at an interior power the derivative of the device's energy in p vanishes (the 1-D
    # optimality condition of the power block), checked by central differences.
    for k in range(5):
        p = r.tx_power_w[k]
        if p >= 0.1 * (1 - 1e-6):
            continue
        b, g, cycles = r.bandwidth_hz[k], problem.channel_gain_linear[k], problem.compute_cycles[k]

        def energy(p: float, b: float = b, g: float = g, cycles: float = cycles) -> float:
            up = 1e6 / (b * math.log2(1 + p * g / (N0 * b)))
            f = cycles / (0.3 - up)
            return 1e-28 * cycles * f**2 + p * up

        h = 1e-4 * p
        slope = (energy(p + h) - energy(p - h)) / (2 * h)
        assert abs(slope) * p < 1e-4 * energy(p)


def _scipy_energy(problem: EnergyProblem, starts: int = 6) -> float:
    """Joint (b, f, p) minimisation by SLSQP from several starts: an independent reference."""
    n, big_b, t = problem.num_devices, problem.bandwidth_hz, problem.latency_budget_s
    g, bits, cycles = problem.channel_gain_linear, problem.upload_bits, problem.compute_cycles

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return x[:n] * big_b, x[n : 2 * n] * 2e9, x[2 * n :] * 0.1

    def latency(x: np.ndarray) -> np.ndarray:
        b, f, p = unpack(x)
        return np.asarray(cycles / f + bits / (b * np.log2(1 + p * g / (N0 * b))))

    def energy(x: np.ndarray) -> float:
        b, f, p = unpack(x)
        return float(np.sum(1e-28 * cycles * f**2 + p * bits / (b * np.log2(1 + p * g / (N0 * b)))) * 1e3)

    rng = np.random.default_rng(0)
    best = math.inf
    for _ in range(starts):
        x0 = np.concatenate([np.full(n, 1 / n), rng.uniform(0.6, 1, n), rng.uniform(0.5, 1, n)])
        res = minimize(
            energy,
            x0,
            method="SLSQP",
            bounds=[(1e-4, 1)] * n + [(1e-3, 1)] * (2 * n),
            constraints=[
                {"type": "ineq", "fun": lambda x: t - latency(x)},
                {"type": "ineq", "fun": lambda x: 1 - np.sum(x[:n])},
            ],
            options={"maxiter": 500, "ftol": 1e-12},
        )
        if res.success and np.all(latency(res.x) <= t * (1 + 1e-6)) and np.sum(res.x[:n]) <= 1 + 1e-6:
            best = min(best, res.fun / 1e3)
    return best


@pytest.mark.parametrize("seed", [1, 2])
def test_energy_matches_an_independent_scipy_solve(seed: int) -> None:
    problem = _problem(3, seed)
    ours = minimise_energy(problem).energy_j
    reference = _scipy_energy(problem)
    assert math.isfinite(reference)
    assert ours == pytest.approx(reference, rel=2e-3)


def _view(downlink_s: list[float], gain_db: list[float], rho_max: float = 0.8) -> SystemView:
    n = len(downlink_s)
    return SystemView(
        round_index=0,
        channel_gain_linear=10 ** (np.array(gain_db) / 10),
        tx_power_w=np.full(n, 0.1),
        noise_psd_w_per_hz=N0,
        bandwidth_hz=10e6,
        compute_latency_s=np.full(n, 0.02),
        compute_cycles=np.full(n, 0.02 * 1e9),
        cpu_freq_hz=np.full(n, 1e9),
        kappa=1e-28,
        upload_bits=np.full(n, 2e5),
        download_bits=2e5,
        downlink_time_s=np.array(downlink_s),
        num_samples=np.full(n, 100.0),
        rho_max=rho_max,
    )


def _context(view: SystemView, controls: tuple[str, ...]) -> AgentContext:
    n = view.num_devices
    return AgentContext(
        num_devices=n,
        action_space=spaces.Box(-1, 1, (len(controls) * n,)),
        action=ActionConfig(controls=controls),
        total_bandwidth_hz=view.bandwidth_hz,
        system_view=lambda: view,
    )


def test_energy_agent_plans_the_downlink_of_its_own_set() -> None:
    # Device 3's broadcast alone (0.244 s) exceeds the whole deadline; the agent must not budget it
    # for the others (the vehicular failure: one device at rho_max every round).
    view = _view([0.004, 0.005, 0.006, 0.244], [-100, -102, -101, -125])
    controls = ("select", "rho", "bandwidth", "power", "cpu_freq")
    agent = make_agent("energy-yang", _context(view, controls))
    agent.deadline_s = lambda view: 0.1  # type: ignore[attr-defined]
    action = agent.act({}, {})
    d = decode_action(action, 4, ActionConfig(controls=controls), 10e6, tx_power_max_w=view.tx_power_w,
                      cpu_freq_max_hz=view.cpu_freq_hz)  # fmt: skip
    np.testing.assert_array_equal(d.selected, [True, True, True, False])
    np.testing.assert_array_equal(d.pruning_rate, 0.0)
    assert d.tx_power_w is not None and d.cpu_freq_hz is not None
    # the planned latency of the chosen set fits the deadline with its own broadcast (0.006 s)
    b, p, g = d.bandwidth_hz[:3], d.tx_power_w[:3], view.channel_gain_linear[:3]
    latency = 0.006 + view.compute_cycles[:3] / d.cpu_freq_hz[:3] + 2e5 / (b * np.log2(1 + p * g / (N0 * b)))
    assert np.all(latency <= 0.1 * (1 + 1e-4))
    assert np.all(d.cpu_freq_hz[:3] < view.cpu_freq_hz[:3])  # it slows the CPUs down to save energy


def test_liu_without_selection_takes_everyone_and_raises_an_infeasible_deadline() -> None:
    view = _view([0.002, 0.003, 0.004], [-100, -110, -145])
    agent = make_agent("liu-no-selection", _context(view, ("select", "rho", "bandwidth")))
    agent.deadline_s = lambda view: 0.05  # type: ignore[attr-defined]
    d = decode_action(agent.act({}, {}), 3, ActionConfig(), 10e6)
    assert d.selected.all()
    assert "raised" in agent.last_note  # type: ignore[attr-defined]
    # The raised deadline is the least at which all devices fit at rho_max (checked by min bandwidths).
    problem = JointProblem(view.snr_bandwidth_hz, view.compute_latency_s, view.upload_bits, np.full(3, 1 / 3),
                           10e6, 0.05, 0.004, 0.8)  # fmt: skip
    tau = smallest_feasible_deadline_s(problem)

    def need(deadline: float) -> float:
        p = JointProblem(view.snr_bandwidth_hz, view.compute_latency_s, view.upload_bits, np.full(3, 1 / 3),
                         10e6, deadline, 0.004, 0.8)  # fmt: skip
        return float(min_bandwidth_hz(p, np.full(3, 0.8)).sum())

    assert need(tau) <= 10e6 < need(tau * (1 - 1e-4))
    assert allocate_fixed(problem) is None
    assert f"{tau * (1 + 1e-6):.4g}" in agent.last_note  # type: ignore[attr-defined]


def test_chen_assigns_each_device_its_better_resource_block_in_ofdma() -> None:
    # Two devices, two RBs: device 0 is strong on RB 1, device 1 on RB 0 (per-RB gains); the
    # Hungarian assignment must cross them, and the rb control must carry it to the simulator.
    base = _view([0.002, 0.002], [-100, -100])
    rb_gain = 10 ** (np.array([[-118.0, -100.0], [-100.0, -118.0]]) / 10)
    view = SystemView(**{**base.__dict__, "num_resource_blocks": 2, "rb_bandwidth_hz": 5e6,
                         "rb_gain_linear": rb_gain, "packet_error_waterfall": 0.5})  # fmt: skip
    controls = ("select", "rho", "bandwidth", "power", "rb")
    agent = make_agent("chen-selection", _context(view, controls))
    agent.deadline_s = lambda view: 0.5  # type: ignore[attr-defined]
    d = decode_action(agent.act({}, {}), 2, ActionConfig(controls=controls), 10e6,
                      tx_power_max_w=view.tx_power_w, num_resource_blocks=2)  # fmt: skip
    assert d.selected.all()
    assert d.resource_block_owner is not None
    np.testing.assert_array_equal(d.resource_block_owner, [1, 0])
