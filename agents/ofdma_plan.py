"""OFDMA resource blocks for the optimisers: integer blocks, per-RB gains, and the world's rate.

In OFDMA mode (``network.access: ofdma``) the uplink is R resource blocks of width W; a device owns
an integer number of them, splits its power evenly over them, and gets the sum of the per-RB Shannon
rates (:func:`fedsimenv.sim.uplink.ofdma_rate_bps`, the simulator's own formula, with each RB's
gain where the channel draws per-RB fading). A device without a block cannot upload. The continuous
joint problem of :mod:`agents.optimal` knows none of this, so the optimisers plan in three steps
(docs/optimisation.md, "OFDMA"):

1. **At most R devices.** The continuous plan is re-solved with its candidates capped: while it
   selects more than R devices, only the R with the least planned bandwidth per unit weight (the
   cheapest objective per Hz) stay candidates.
2. **Integer blocks, placed on good RBs.** Counts by largest remainder of the planned shares, at
   least one per selected device (:func:`block_counts`); each device, most blocks first, takes the
   free contiguous window with the highest rate on its own per-RB gains (:func:`place_windows`; the
   action's ``rb`` control can express contiguous windows exactly).
3. **Pruning from the exact rate.** Each device's rho is the least grid rate whose exact cost meets
   the deadline at the rate of the blocks it got (:func:`least_grid_rho`); a device that misses it
   even at rho_max is dropped and the blocks are re-placed.

The planned deadline is then the largest latency of the *decoded* decision under the world's rate
(:func:`planned_latency_s`), so the simulated round is never longer when the channel is static
within the round and every upload gets through on its first try. With packet errors and ARQ, a
failed try re-sends the update (one more upload time); :func:`expected_tries` gives the expected
count the agents report beside the deadline. ``optimal-arq`` (:mod:`agents.radio`) budgets every
upload for all tries instead, so its deadline holds with re-sent updates too; choosing power against
the packet error rate is what ``chen-selection`` does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from agents.planning import CostModel, grid_latency_s, step_bound
from channels import ofdma_rate_bps as flat_ofdma_rate_bps
from fedsimenv.sim.types import RoundDecision
from fedsimenv.sim.uplink import ofdma_rate_bps, proportional_blocks, waterfall_error_probability
from fedsimenv.view import SystemView

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def rb_gains(view: SystemView) -> FloatArray:
    """(N, R) gain of each device on each RB: the per-RB draw, or the device's gain on every RB."""
    if view.num_resource_blocks is None:
        raise ValueError("rb_gains needs an OFDMA view (network.access: ofdma)")
    if view.rb_gain_linear is not None:
        return np.asarray(view.rb_gain_linear, dtype=np.float64)
    return np.repeat(np.asarray(view.channel_gain_linear)[:, None], view.num_resource_blocks, 1)


def block_counts(share: FloatArray, selected: NDArray[np.bool_], num_blocks: int) -> IntArray:
    """(N,) integer blocks from shares of the selected devices: largest remainder, then at least one
    each (taken from the device with the most), all R blocks used.

    Raises:
        ValueError: More devices selected than blocks.
    """
    sel = np.asarray(selected, dtype=bool)
    if int(sel.sum()) > num_blocks:
        raise ValueError(f"{int(sel.sum())} devices selected for {num_blocks} resource blocks")
    weights = np.where(sel, np.maximum(np.asarray(share, dtype=np.float64), 0.0), 0.0)
    if weights.sum() <= 0:
        weights = sel.astype(np.float64)
    exact = weights / weights.sum() * num_blocks
    counts = np.floor(exact).astype(np.int64)
    left = num_blocks - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:left]] += 1
    for k in np.flatnonzero(sel & (counts == 0)):
        counts[int(np.argmax(counts))] -= 1
        counts[k] = 1
    return np.asarray(counts, dtype=np.int64)


def place_windows(
    counts: IntArray, rb_gain_linear: FloatArray, view: SystemView
) -> tuple[IntArray, IntArray]:
    """(R,) owners and (N,) first blocks: devices by decreasing count take the free contiguous window
    (no wrap) with the highest rate on their own per-RB gains; where fragmentation leaves no window,
    all devices are laid out back to back instead (always fits: the counts sum to at most R).

    The windows are disjoint, so :func:`fedsimenv.actions.place_resource_blocks` (the action's
    decoder) reproduces them from the first blocks.
    """
    num_blocks = rb_gain_linear.shape[1]
    owner = np.full(num_blocks, -1, dtype=np.int64)
    first = np.zeros(len(counts), dtype=np.int64)
    noise = view.noise_psd_w_per_hz * view.rb_bandwidth_hz
    order = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    for k in order:
        c = int(counts[k])
        per_rb = view.rb_bandwidth_hz * np.log2(1.0 + view.tx_power_w[k] / c * rb_gain_linear[k] / noise)
        best, best_rate = -1, -np.inf
        for start in range(num_blocks - c + 1):
            if np.all(owner[start : start + c] < 0):
                rate = float(per_rb[start : start + c].sum())
                if rate > best_rate:
                    best, best_rate = start, rate
        if best < 0:  # fragmented: back to back in the same order
            owner[:] = -1
            start = 0
            for j in order:
                owner[start : start + int(counts[j])] = j
                first[j] = start
                start += int(counts[j])
            return owner, first
        owner[best : best + c] = k
        first[k] = best
    return owner, first


def minmax_block_counts(view: SystemView, num_blocks: int) -> IntArray:
    """(N,) blocks for the unpruned min-max-latency split: the (up to) R devices with the least
    latency on one block get one each, then each further block goes to the currently slowest device
    (the greedy is optimal for min-max when each device's latency falls with its blocks). Rates are
    planned on each device's mean per-RB gain (the placement then picks its best window)."""
    gain = rb_gains(view).mean(axis=1)
    fixed = view.planning_downlink + view.compute_latency_s

    def latency(blocks: FloatArray) -> FloatArray:
        rate = flat_ofdma_rate_bps(
            blocks, view.rb_bandwidth_hz, view.tx_power_w, gain, view.noise_psd_w_per_hz
        )
        return np.asarray(fixed + view.upload_bits / rate)

    ones = np.ones(view.num_devices)
    chosen = np.argsort(latency(ones), kind="stable")[:num_blocks]
    counts = np.zeros(view.num_devices, dtype=np.int64)
    counts[chosen] = 1
    for _ in range(num_blocks - len(chosen)):
        current = np.where(counts > 0, latency(np.maximum(counts, 1).astype(np.float64)), -np.inf)
        counts[int(np.argmax(current))] += 1
    return counts


def world_owner(view: SystemView, decision: RoundDecision) -> IntArray:
    """The RB owners the simulator will use for ``decision`` (the action's, or the proportional
    contiguous layout when the action has no ``rb`` control)."""
    if decision.resource_block_owner is not None:
        return np.asarray(decision.resource_block_owner, dtype=np.int64)
    assert view.num_resource_blocks is not None
    return proportional_blocks(decision.bandwidth_hz, view.bandwidth_hz, view.num_resource_blocks)


def owner_rates_bps(view: SystemView, owner: IntArray, tx_power_w: FloatArray | None = None) -> FloatArray:
    """(N,) uplink rates over the owned RBs, by the simulator's formula."""
    power = view.tx_power_w if tx_power_w is None else tx_power_w
    return ofdma_rate_bps(
        owner,
        view.rb_bandwidth_hz,
        np.asarray(power, dtype=np.float64),
        rb_gains(view),
        view.noise_psd_w_per_hz,
    )


def least_grid_rho(
    view: SystemView, costs: CostModel, rate_bps: FloatArray, downlink_time_s: float, deadline_s: float
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """(N,) least grid rho whose exact latency at ``rate_bps`` meets the deadline, and whether one
    does (rho_max where none)."""
    latency = grid_latency_s(costs, view.compute_latency_s, view.upload_bits, rate_bps, downlink_time_s)
    ok = latency <= deadline_s
    meets: NDArray[np.bool_] = np.asarray(ok.any(axis=1), dtype=bool)
    rho = np.where(meets, costs.curve.pruning_rate[np.argmax(ok, axis=1)], view.rho_max)
    return np.asarray(rho, dtype=np.float64), meets


def planned_latency_s(view: SystemView, costs: CostModel, decision: RoundDecision) -> FloatArray:
    """(N,) latency of each selected device under ``decision`` in the world (first tries; inf where
    a selected device has no block), NaN for the others."""
    owner = world_owner(view, decision)
    power = decision.tx_power_w if decision.tx_power_w is not None else view.tx_power_w
    rate = owner_rates_bps(view, owner, power)
    curve = costs.curve
    flops = step_bound(curve, curve.flops_ratio, decision.pruning_rate)
    bits = step_bound(curve, curve.bits_ratio, decision.pruning_rate)
    download = step_bound(curve, curve.download_ratio, decision.pruning_rate)
    compute = view.compute_latency_s
    if decision.cpu_freq_hz is not None:
        compute = compute * view.cpu_freq_hz / decision.cpu_freq_hz  # latency scales as 1 / f
    sel = decision.selected
    downlink = float(view.planning_downlink[sel].max())
    with np.errstate(divide="ignore"):
        upload = np.where(rate > 0, view.upload_bits * bits / np.where(rate > 0, rate, 1.0), np.inf)
    return np.where(sel, downlink * download + compute * flops + upload, np.nan)


def expected_tries(view: SystemView, decision: RoundDecision) -> FloatArray:
    """(N,) expected upload tries under ARQ, ``(1 - q^n) / (1 - q)`` with the per-try error rate q of
    the world's waterfall model at each device's rate (1 without packet errors)."""
    m = view.packet_error_waterfall
    n_max = view.max_transmissions
    if not m or n_max <= 1:
        return np.ones(view.num_devices)
    owner = world_owner(view, decision)
    power = decision.tx_power_w if decision.tx_power_w is not None else view.tx_power_w
    rate = owner_rates_bps(view, owner, power)
    counts = np.bincount(owner[owner >= 0], minlength=view.num_devices)
    bandwidth = np.asarray(counts * view.rb_bandwidth_hz, dtype=np.float64)
    q = np.clip(waterfall_error_probability(rate, bandwidth, m), 0.0, 1.0)
    tries = np.where(q < 1.0, (1.0 - q**n_max) / np.where(q < 1.0, 1.0 - q, 1.0), float(n_max))
    return np.asarray(tries, dtype=np.float64)
