"""Closed-form timing and energy of the phases of a round, vectorised over devices (pure numpy).

The SimPy processes in :mod:`fedsimenv.sim.simulator` schedule timeouts at the times computed here,
so the event count per round is O(N) and never O(N^2) (no re-sharing of the band on every event).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedsimenv.sim.types import FloatArray

#: A transfer that has not finished after this many coherence blocks is reported as never finishing.
MAX_BLOCKS_PER_TRANSFER = 10_000_000


def transfer_finish_times(
    start_s: FloatArray,
    bits: FloatArray,
    rate_in_block: Callable[[int], FloatArray],
    coherence_time_s: float,
) -> FloatArray:
    """Finish times of transfers whose rate changes at every coherence-block boundary.

    Block ``j`` spans ``[j Tc, (j + 1) Tc)`` and device k sends at ``rate_in_block(j)[k]`` bit/s in it,
    so a transfer of ``bits[k]`` started at ``start_s[k]`` advances piecewise: in each block it sends
    ``rate x time spent in the block`` until the bits are exhausted. The loop runs over blocks, not
    devices (each iteration is one numpy operation over all devices).

    Args:
        start_s: (N,) start times in seconds; NaN = no transfer.
        bits: (N,) bits to send.
        rate_in_block: Block index -> (N,) rates in bit/s.
        coherence_time_s: Block length Tc in seconds.

    Returns:
        (N,) finish times in seconds (NaN where there was no transfer, inf where the rate stayed 0).
    """
    start_s = np.asarray(start_s, dtype=np.float64)
    if not np.isfinite(coherence_time_s):
        return _one_block_finish_times(start_s, np.asarray(bits, dtype=np.float64), rate_in_block)
    finish = np.full(start_s.shape, np.nan)
    pending = np.isfinite(start_s)
    zero = pending & (np.asarray(bits) <= 0)
    finish[zero] = start_s[zero]
    pending &= ~zero
    if not pending.any():
        return finish
    remaining = np.where(pending, bits, 0.0).astype(np.float64)
    now = np.where(pending, start_s, np.inf)
    block = int(np.floor(np.min(now[pending]) / coherence_time_s))
    for _ in range(MAX_BLOCKS_PER_TRANSFER):
        block_end = (block + 1) * coherence_time_s
        active = pending & (now < block_end)
        if active.any():
            rate = np.asarray(rate_in_block(block), dtype=np.float64)[active]
            span = block_end - now[active]
            sent = rate * span
            done_here = sent >= remaining[active]
            idx = np.flatnonzero(active)
            with np.errstate(divide="ignore", invalid="ignore"):
                finish[idx[done_here]] = now[idx[done_here]] + remaining[idx[done_here]] / rate[done_here]
            carry = idx[~done_here]
            remaining[carry] -= sent[~done_here]
            now[carry] = block_end
            pending[idx[done_here]] = False
        if not pending.any():
            return finish
        block += 1
    finish[pending] = np.inf
    return finish


def _one_block_finish_times(
    start_s: FloatArray, bits: FloatArray, rate_in_block: Callable[[int], FloatArray]
) -> FloatArray:
    """:func:`transfer_finish_times` without a coherence time: what its loop computes in its first
    block (which never ends), in a few array operations: ``start + bits / rate`` (inf if the rate is
    0), the start for transfers of no bits, NaN where there is no transfer."""
    pending = np.isfinite(start_s)
    finish = np.where(pending, start_s, np.nan)
    sending = pending & ~(bits <= 0)
    if sending.any():
        idx = np.flatnonzero(sending)
        rate = np.asarray(rate_in_block(0), dtype=np.float64)[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            finish[idx] = np.where(rate > 0, start_s[idx] + bits[idx] / rate, np.inf)
    return finish


def nan_to_zero(values: FloatArray) -> FloatArray:
    """``np.nan_to_num(values)`` of a float array (NaN -> 0, +-inf -> the largest finite floats),
    without its per-call overhead in the usual case of no infinities (the hot path of every round)."""
    out = np.where(np.isnan(values), 0.0, values)
    if not np.logical_and.reduce(np.isfinite(out)):  # ``.all()`` without the method's wrapper
        return np.asarray(np.nan_to_num(out), dtype=np.float64)
    return out


def compute_power_w(kappa: float, cpu_freq_hz: FloatArray) -> FloatArray:
    """Dynamic CPU power ``kappa f^3`` in W: energy ``kappa cycles f^2`` spread over ``cycles / f`` s."""
    return kappa * np.asarray(cpu_freq_hz, dtype=np.float64) ** 3


def depletion_time(
    battery_j: FloatArray,
    segments: list[tuple[FloatArray, FloatArray, FloatArray]],
) -> FloatArray:
    """When a device's battery runs out, given consecutive constant-power segments.

    Args:
        battery_j: (N,) energy left at the start of the first segment, J.
        segments: ``(start_s, end_s, power_w)`` triples of (N,) arrays, in time order, contiguous.

    Returns:
        (N,) time at which the cumulative energy reaches ``battery_j`` (inf if it never does).
    """
    left = np.asarray(battery_j, dtype=np.float64).copy()
    result = np.full(left.shape, np.inf)
    for start, end, power in segments:
        duration = nan_to_zero(np.asarray(end) - np.asarray(start))
        energy = power * duration
        runs_out = np.isinf(result) & (energy > left) & (power > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            result = np.where(runs_out, start + left / power, result)
        left = np.where(np.isinf(result), left - energy, left)
    return result
