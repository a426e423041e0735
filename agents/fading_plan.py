"""Planning under fast fading: the round latency of a decision averaged over the fading distribution.

Where fading is redrawn within a round (a coherence time, e.g. ``vehicular``), no planner knows the
realisation: the snapshot it sees is stale within milliseconds. What a device can know is its
large-scale gain and the fading distribution. :func:`sampled_round_latency` draws i.i.d. coherence
blocks from that distribution (the view's quantile table, the agent's own seeded stream) over the
large-scale gains and times the round as the simulator does (:func:`fedsimenv.sim.timing.
transfer_finish_times`: broadcast at the weakest selected device's rate per block, then compute,
then the upload at each block's rate). Ignored: the blocks' time correlation and the large-scale
drift within the round (mobility, LOS changes), which only widen the spread.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from agents.optimal.problem import FloatArray, rate_bps
from fedsimenv.sim.timing import transfer_finish_times
from fedsimenv.view import SystemView

#: Fading realisations a planner averages over.
FADING_SAMPLES = 32


def fast_fading(view: SystemView) -> bool:
    """Whether the view's channel is redrawn within a round (and carries its distribution)."""
    return (
        view.coherence_time_s is not None
        and view.fading_quantiles is not None
        and view.large_scale_gain_linear is not None
    )


def sampled_round_latency(
    view: SystemView,
    selected: NDArray[np.bool_],
    compute_s: FloatArray,
    upload_bits: FloatArray,
    bandwidth_hz: FloatArray,
    seed: int,
    samples: int = FADING_SAMPLES,
) -> FloatArray:
    """(samples,) round latency (slowest selected device) over i.i.d. fading draws, s (see
    :func:`sampled_finish_times`)."""
    finish = sampled_finish_times(view, selected, compute_s, upload_bits, bandwidth_hz, seed, samples)
    return np.asarray(finish.max(axis=1)) if finish.size else np.zeros(samples)


def sampled_finish_times(
    view: SystemView,
    selected: NDArray[np.bool_],
    compute_s: FloatArray,
    upload_bits: FloatArray,
    bandwidth_hz: FloatArray,
    seed: int,
    samples: int = FADING_SAMPLES,
) -> FloatArray:
    """(samples, m) upload finish time of each of the m selected devices (index order) from the
    round's start over i.i.d. fading draws, s.

    Args:
        view: A view with :func:`fast_fading`.
        selected: (N,) who takes part.
        compute_s: (N,) compute latency of each device's job, s.
        upload_bits: (N,) its upload, bits.
        bandwidth_hz: (N,) its uplink bandwidth, Hz.
        seed: Seed of the draws (equal seeds: common random numbers across decisions).
    """
    assert view.fading_quantiles is not None and view.large_scale_gain_linear is not None
    assert view.coherence_time_s is not None
    idx = np.flatnonzero(selected)
    if idx.size == 0:
        return np.zeros((samples, 0))
    tc = float(view.coherence_time_s)
    quantiles = view.fading_quantiles
    large = view.large_scale_gain_linear[idx]
    rng = np.random.default_rng(seed)
    blocks: dict[int, FloatArray] = {}

    def gains(block: int) -> FloatArray:  # (samples, m) gains of block ``block``, drawn once
        if block not in blocks:
            blocks[block] = large * quantiles[rng.integers(0, len(quantiles), (samples, idx.size))]
        return blocks[block]

    noise = view.noise_psd_w_per_hz

    def downlink_rate(block: int) -> FloatArray:
        g_min = gains(block).min(axis=1)
        bw = view.downlink_bandwidth_hz
        return np.asarray(rate_bps(bw, view.bs_tx_power_w * g_min / noise))

    start = np.zeros(samples)
    dl_finish = transfer_finish_times(start, np.full(samples, view.download_bits), downlink_rate, tc)
    a = view.tx_power_w[idx] / noise
    b = bandwidth_hz[idx]

    def uplink_rate(block: int) -> FloatArray:
        return np.asarray(rate_bps(b, a * gains(block))).reshape(-1)

    up_start = (dl_finish[:, None] + compute_s[idx][None, :]).reshape(-1)
    bits = np.broadcast_to(upload_bits[idx], (samples, idx.size)).reshape(-1)
    return transfer_finish_times(up_start, bits, uplink_rate, tc).reshape(samples, idx.size)


def expected_objective(
    view: SystemView,
    selected: NDArray[np.bool_],
    pruning_rate: FloatArray,
    bandwidth_hz: FloatArray,
    compute_s: FloatArray,
    upload_bits: FloatArray,
    deadline_s: float,
    exclusion_penalty: float,
    seed: int,
) -> float:
    """The joint problem's J realised under fading, averaged over draws: a selected device that
    misses ``deadline_s`` pays the exclusion cost like an unselected one."""
    weight = view.num_samples / view.num_samples.sum()
    idx = np.flatnonzero(selected)
    finish = sampled_finish_times(view, selected, compute_s, upload_bits, bandwidth_hz, seed)
    on_time = finish <= deadline_s
    paid = np.where(on_time, weight[idx] * pruning_rate[idx], exclusion_penalty * weight[idx])
    outside = exclusion_penalty * float(weight[~selected].sum())
    return float(np.mean(paid.sum(axis=1)) + outside)
