r"""Energy-efficient allocation in the style of Yang et al., IEEE TWC 2021 ("Energy efficient
federated learning over wireless communication networks").

Minimise the round's total device energy over bandwidth b_k, CPU frequency f_k and transmit power
p_k, subject to a latency budget T (compute + upload):

    minimise    sum_k kappa C_k f_k^2 + p_k L_k / r_k(b_k, p_k)
    subject to  C_k / f_k + L_k / r_k(b_k, p_k) <= T,   sum b_k <= B,
                0 < f_k <= f_max_k,   0 < p_k <= p_max_k,
    r_k(b, p) = b log2(1 + p g_k / (N0 b)),

with C_k the CPU cycles of local training. As in the paper the problem is solved by alternating
between two convex blocks (the joint problem is not convex in (b, p)):

* block A, power fixed: convex in (b, f) and DCP/DPP in cvxpy with ``x = b / B``,
  ``u >= inv_pos(q(x))`` (q the normalised rate, the ``rel_entr`` form of docs/DESIGN.md);
* block B, bandwidth fixed: per device a one-dimensional problem in p, with f the least frequency
  that meets the budget, ``f = C / (T - L / r(b, p))``, minimised by bounded Brent search.

Each block cannot increase the energy, so the iteration is monotone; it stops when the relative
improvement falls below ``tol``. The env's simulator uses fixed powers and CPU frequencies, so an
agent can apply only the bandwidth (and selection) part of the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cvxpy as _cvxpy
import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar

from agents.optimal.problem import LN2, FloatArray, rate_bps

# cvxpy ships partial type information (no atoms such as rel_entr); treat it as untyped.
cp: Any = _cvxpy


def _array(name: str, value: ArrayLike, n: int | None = None) -> FloatArray:
    arr = np.array(value, dtype=np.float64, copy=True).reshape(-1)
    if n is not None and arr.shape != (n,):
        arr = np.broadcast_to(arr, (n,)).copy() if arr.size == 1 else arr
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if np.any(~np.isfinite(arr) | (arr <= 0)):
        raise ValueError(f"{name} must be finite and > 0")
    return arr


@dataclass(frozen=True)
class EnergyProblem:
    """Inputs of the energy minimisation (arrays over the n participating devices).

    Attributes:
        channel_gain_linear: (n,) g_k.
        noise_psd_w_per_hz: N0, W/Hz.
        tx_power_max_w: (n,) p_max, W.
        compute_cycles: (n,) C_k, cycles.
        cpu_freq_max_hz: (n,) f_max, Hz.
        kappa: Effective capacitance, J/(cycle Hz^2).
        upload_bits: (n,) L_k, bits.
        bandwidth_hz: B, Hz.
        latency_budget_s: T for compute + upload, s.
    """

    channel_gain_linear: FloatArray
    noise_psd_w_per_hz: float
    tx_power_max_w: FloatArray
    compute_cycles: FloatArray
    cpu_freq_max_hz: FloatArray
    kappa: float
    upload_bits: FloatArray
    bandwidth_hz: float
    latency_budget_s: float

    def __post_init__(self) -> None:
        g = _array("channel_gain_linear", self.channel_gain_linear)
        n = len(g)
        object.__setattr__(self, "channel_gain_linear", g)
        for name in ("tx_power_max_w", "compute_cycles", "cpu_freq_max_hz", "upload_bits"):
            object.__setattr__(self, name, _array(name, getattr(self, name), n))
        for name in ("noise_psd_w_per_hz", "kappa", "bandwidth_hz", "latency_budget_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value}")

    @property
    def num_devices(self) -> int:
        return len(self.channel_gain_linear)

    def energy_j(self, bandwidth_hz: ArrayLike, cpu_freq_hz: ArrayLike, tx_power_w: ArrayLike) -> FloatArray:
        """(n,) compute + transmit energy, J."""
        f = np.asarray(cpu_freq_hz, dtype=np.float64)
        p = np.asarray(tx_power_w, dtype=np.float64)
        rate = rate_bps(bandwidth_hz, p * self.channel_gain_linear / self.noise_psd_w_per_hz)
        return np.asarray(self.kappa * self.compute_cycles * f**2 + p * self.upload_bits / rate)

    def latency_s(self, bandwidth_hz: ArrayLike, cpu_freq_hz: ArrayLike, tx_power_w: ArrayLike) -> FloatArray:
        """(n,) compute + upload latency, s."""
        p = np.asarray(tx_power_w, dtype=np.float64)
        rate = rate_bps(bandwidth_hz, p * self.channel_gain_linear / self.noise_psd_w_per_hz)
        return np.asarray(self.compute_cycles / np.asarray(cpu_freq_hz) + self.upload_bits / rate)

    def feasible_alone(self) -> FloatArray:
        """(n,) bool: the device meets the budget with the whole band, f_max and p_max."""
        a = self.tx_power_max_w * self.channel_gain_linear / self.noise_psd_w_per_hz
        lat = self.compute_cycles / self.cpu_freq_max_hz + self.upload_bits / rate_bps(self.bandwidth_hz, a)
        return np.asarray(lat < self.latency_budget_s)


@dataclass(frozen=True)
class EnergyResult:
    """Answer of :func:`minimise_energy` (arrays over the n devices)."""

    bandwidth_hz: FloatArray
    cpu_freq_hz: FloatArray
    tx_power_w: FloatArray
    energy_j: float
    iterations: int


class _BandwidthFrequencyBlock:
    """Block A: power fixed, (b, f) by cvxpy; compiled once, re-solved with new parameters."""

    def __init__(self, n: int) -> None:
        self.snr = cp.Parameter(n, nonneg=True)
        self.compute_energy = cp.Parameter(n, nonneg=True)
        self.tx_energy = cp.Parameter(n, nonneg=True)
        self.compute_time = cp.Parameter(n, nonneg=True)
        self.upload_time = cp.Parameter(n, nonneg=True)
        self.x = cp.Variable(n, nonneg=True)
        self.fh = cp.Variable(n, nonneg=True)
        u = cp.Variable(n, nonneg=True)
        q = -cp.rel_entr(self.x, self.x + self.snr) / LN2
        constraints = [
            u >= cp.inv_pos(q),
            cp.multiply(self.compute_time, cp.inv_pos(self.fh)) + cp.multiply(self.upload_time, u) <= 1.0,
            self.fh <= 1,
            cp.sum(self.x) <= 1,
        ]
        energy = self.compute_energy @ cp.square(self.fh) + self.tx_energy @ u
        self.problem = cp.Problem(cp.Minimize(energy), constraints)

    def solve(self, problem: EnergyProblem, tx_power_w: FloatArray) -> tuple[FloatArray, FloatArray]:
        big_b, t = problem.bandwidth_hz, problem.latency_budget_s
        self.snr.value = tx_power_w * problem.channel_gain_linear / (problem.noise_psd_w_per_hz * big_b)
        self.compute_energy.value = problem.kappa * problem.compute_cycles * problem.cpu_freq_max_hz**2
        self.tx_energy.value = tx_power_w * problem.upload_bits / big_b
        self.compute_time.value = problem.compute_cycles / (problem.cpu_freq_max_hz * t)
        self.upload_time.value = problem.upload_bits / (big_b * t)
        self.problem.solve(solver="CLARABEL")
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or self.x.value is None:
            raise cp.SolverError(f"energy block A ended with status {self.problem.status}")
        assert self.fh.value is not None
        b = np.clip(np.asarray(self.x.value), 1e-12, None) * big_b
        # all of B: for fixed power, more bandwidth only shortens uploads and lowers energy
        return b * (big_b / b.sum()), np.clip(np.asarray(self.fh.value), 1e-9, 1.0) * problem.cpu_freq_max_hz


def best_power_and_frequency(
    problem: EnergyProblem, bandwidth_hz: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Block B: per device, the power (and least CPU frequency) minimising energy for fixed b."""
    n = problem.num_devices
    power, freq = np.empty(n), np.empty(n)
    for k in range(n):
        b, g, bits, cycles = (
            bandwidth_hz[k],
            problem.channel_gain_linear[k],
            problem.upload_bits[k],
            problem.compute_cycles[k],
        )
        f_max, p_max = problem.cpu_freq_max_hz[k], problem.tx_power_max_w[k]
        upload_budget = problem.latency_budget_s - cycles / f_max
        if upload_budget <= 0:
            raise ValueError(f"device {k}: compute alone exceeds latency_budget_s even at f_max")
        needed_rate = bits / upload_budget
        p_lo = (
            (2.0 ** (needed_rate / b) - 1.0) * problem.noise_psd_w_per_hz * b / g
            if needed_rate / b < 1000
            else np.inf
        )
        if p_lo > p_max * (1 + 1e-9):
            raise ValueError(f"device {k}: bandwidth {b:.6g} Hz cannot meet the budget at p_max")
        p_lo = min(p_lo, p_max)

        def energy(p: float, k: int = k, b: float = b) -> float:
            rate = b * math.log2(1.0 + p * problem.channel_gain_linear[k] / (problem.noise_psd_w_per_hz * b))
            upload = problem.upload_bits[k] / rate
            f = min(
                problem.compute_cycles[k] / (problem.latency_budget_s - upload), problem.cpu_freq_max_hz[k]
            )
            return float(problem.kappa * problem.compute_cycles[k] * f**2 + p * upload)

        candidates = [p_lo, p_max]
        if p_max > p_lo * (1 + 1e-12):
            res = minimize_scalar(
                energy, bounds=(p_lo, p_max), method="bounded", options={"xatol": 1e-12 * p_max}
            )
            candidates.append(float(res.x))
        p_best = min(candidates, key=energy)
        rate = b * math.log2(1.0 + p_best * g / (problem.noise_psd_w_per_hz * b))
        power[k] = p_best
        freq[k] = min(cycles / (problem.latency_budget_s - bits / rate), f_max)
    return power, freq


def minimise_energy(problem: EnergyProblem, max_iterations: int = 20, tol: float = 1e-7) -> EnergyResult:
    """Alternate block A (cvxpy) and block B (per-device 1-D) from p = p_max until converged.

    Raises:
        ValueError: a device cannot meet the budget even alone (check :meth:`EnergyProblem.feasible_alone`).
    """
    if not problem.feasible_alone().all():
        raise ValueError("some devices cannot meet latency_budget_s even alone; deselect them first")
    block = _BandwidthFrequencyBlock(problem.num_devices)
    power = problem.tx_power_max_w.copy()
    bandwidth, freq = block.solve(problem, power)
    previous = float(problem.energy_j(bandwidth, freq, power).sum())
    iterations = 1
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - reported
        power, freq = best_power_and_frequency(problem, bandwidth)
        bandwidth, _ = block.solve(problem, power)
        # re-run block B for block A's bandwidth: it never increases the energy and returns an
        # exactly feasible (p, f) for that b
        power, freq = best_power_and_frequency(problem, bandwidth)
        current = float(problem.energy_j(bandwidth, freq, power).sum())
        if previous - current <= tol * previous:
            previous = min(previous, current)
            break
        previous = current
    return EnergyResult(
        bandwidth, freq, power, float(problem.energy_j(bandwidth, freq, power).sum()), iterations
    )
