"""Random instances of the joint problem shared by the agent tests (not a test module)."""

from __future__ import annotations

import numpy as np

from agents.optimal import JointProblem

NOISE_PSD_W_PER_HZ = 10 ** (-174 / 10) / 1000


def random_problem(num_devices: int, rng: np.random.Generator, deep_fade_fraction: float = 0.1) -> JointProblem:
    """A macro-cell-like instance: gains -130..-80 dB, some devices 40-80 dB deeper (deep fades)."""
    gain_db = rng.uniform(-130.0, -80.0, num_devices)
    deep = rng.random(num_devices) < deep_fade_fraction
    gain_db[deep] -= rng.uniform(40.0, 80.0, int(deep.sum()))
    snr_bandwidth_hz = 0.01 * 10 ** (gain_db / 10) / NOISE_PSD_W_PER_HZ
    weight = rng.uniform(0.5, 2.0, num_devices)
    return JointProblem(
        snr_bandwidth_hz=snr_bandwidth_hz,
        compute_latency_s=rng.uniform(0.05, 0.5, num_devices),
        upload_bits=3e5 * rng.uniform(0.5, 2.0, num_devices),
        weight=weight / weight.sum(),
        bandwidth_hz=20e6,
        deadline_s=float(rng.uniform(0.4, 1.0)),
        downlink_time_s=0.01,
        rho_max=0.9,
        exclusion_penalty=float(rng.choice([0.9, 1.0, 2.0])),
    )
