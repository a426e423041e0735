r"""The uplink of a round: who gets which spectrum, at what rate, and how many tries an upload takes.

Access (``network.access``):

* ``fdma``: device k sends on its real-valued share b_k at ``r_k = b_k log2(1 + p_k g_k / (N0 b_k))``;
* ``ofdma``: R resource blocks of width W; device k owns the set S_k and spreads its power evenly
  over it, ``r_k = sum_{n in S_k} W log2(1 + p_k g_{k,n} / (|S_k| N0 W))`` with g_{k,n} the gain of
  RB n (its own fading draw with ``resource_blocks.fading: independent``, else the wideband gain).
  A decision either names each RB's owner (``RoundDecision.resource_block_owner``) or gives
  bandwidth shares, turned into RB counts by the *proportional allocator*: ``floor(R b_k / B)`` blocks
  each, the leftover blocks to the largest remainders (:func:`channels.allocate_resource_blocks`),
  placed contiguously in device order. A selected device left without a block fails
  (``no-resource-block``).

Packet errors (``network.packet_error``, off by default): a try of device k's upload fails with
Chen et al.'s (IEEE TWC 2021) waterfall probability ``q = 1 - exp(-m / SNR)``, where SNR is the
received SNR over the device's band, ``p g / (N0 b)`` in FDMA; in OFDMA (gains differ per RB) the
SNR of a flat channel giving the same rate, ``2^(r / (|S_k| W)) - 1``. q is evaluated at the channel
of the coherence block in which the try starts. With ARQ (``max_transmissions`` n > 1) a failed try
is re-sent in full right away, up to n tries; each try costs its upload time and transmit energy.
The uniforms deciding the tries are drawn when the job starts, n per starting device in device
order, from their own child of the channel stream, so a seed reproduces every outcome and a
scenario without packet errors draws nothing.

Pure numpy; the simulator (:mod:`fedsimenv.sim.simulator`) schedules the resulting times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from channels import allocate_resource_blocks, shannon_rate_bps
from fedsimenv.config import NetworkConfig
from fedsimenv.sim.timing import transfer_finish_times
from fedsimenv.sim.types import BoolArray, FloatArray, IntArray


def proportional_blocks(bandwidth_hz: FloatArray, total_bandwidth_hz: float, num_blocks: int) -> IntArray:
    """RB owners from bandwidth shares: counts by largest remainder, placed contiguously by device."""
    counts = allocate_resource_blocks(np.clip(bandwidth_hz / total_bandwidth_hz, 0.0, None), num_blocks)
    owner = np.full(num_blocks, -1, dtype=np.int64)
    owner[: int(counts.sum())] = np.repeat(np.arange(len(counts)), counts)
    return owner


def ofdma_rate_bps(
    owner: IntArray,
    rb_bandwidth_hz: float,
    tx_power_w: FloatArray,
    rb_gain_linear: FloatArray,
    noise_psd_w_per_hz: float,
) -> FloatArray:
    """(N,) rate of each device over the RBs it owns, power split evenly over them.

    Args:
        owner: (R,) device of each RB, -1 = unused.
        rb_bandwidth_hz: W.
        tx_power_w: (N,) total power of each device.
        rb_gain_linear: (N, R) gain of each device on each RB.
        noise_psd_w_per_hz: N0 (effective).
    """
    n = rb_gain_linear.shape[0]
    used = np.flatnonzero(owner >= 0)
    dev = owner[used]
    counts = np.bincount(dev, minlength=n)
    per_rb_power = tx_power_w[dev] / counts[dev]
    snr = per_rb_power * rb_gain_linear[dev, used] / (noise_psd_w_per_hz * rb_bandwidth_hz)
    return np.bincount(dev, weights=rb_bandwidth_hz * np.log2(1.0 + snr), minlength=n).astype(np.float64)


def waterfall_error_probability(
    rate_bps: FloatArray, bandwidth_hz: FloatArray, waterfall: float
) -> FloatArray:
    """Per-try failure probability ``1 - exp(-m / SNR)`` with SNR = 2^(r / b) - 1, the SNR of a flat
    channel giving rate r over bandwidth b (1 where nothing gets through)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        snr = np.expm1(np.log(2.0) * rate_bps / bandwidth_hz)
        q = -np.expm1(-waterfall / snr)
    return np.asarray(np.where(snr > 0, np.nan_to_num(q, nan=1.0), 1.0), dtype=np.float64)


@dataclass(frozen=True)
class UploadPlan:
    """When each upload ends and whether it got through (arrays over N devices).

    Attributes:
        finish_s: End of the last try (NaN where no upload).
        delivered: The last try succeeded.
        transmissions: Tries made (0 where no upload).
    """

    finish_s: FloatArray
    delivered: BoolArray
    transmissions: IntArray


class Uplink:
    """Rates, RB assignment and packet-error tries of a scenario's uplink.

    Args:
        network: The scenario's network section.
        noise_psd_w_per_hz: Effective noise PSD (noise figure and interference folded in).
    """

    def __init__(self, network: NetworkConfig, noise_psd_w_per_hz: float) -> None:
        self.network = network
        self.noise_psd_w_per_hz = noise_psd_w_per_hz
        rb = network.resource_blocks if network.access == "ofdma" else None
        self.num_blocks: int | None = rb.count if rb is not None else None
        self.rb_bandwidth_hz = rb.bandwidth_hz if rb is not None else 0.0
        self.rb_fading_independent = rb is not None and rb.fading == "independent"
        per = network.packet_error
        self.waterfall = per.waterfall_threshold if per is not None else 0.0
        self.max_transmissions = per.max_transmissions if per is not None else 1

    @property
    def ofdma(self) -> bool:
        return self.num_blocks is not None

    def assign(self, owner: IntArray | None, bandwidth_hz: FloatArray) -> tuple[IntArray | None, FloatArray]:
        """The RB owners (None in FDMA) and each device's bandwidth (its RBs x W in OFDMA)."""
        if self.num_blocks is None:
            return None, bandwidth_hz
        if owner is None:
            owner = proportional_blocks(bandwidth_hz, self.network.bandwidth_hz, self.num_blocks)
        counts = np.bincount(owner[owner >= 0], minlength=len(bandwidth_hz))
        return owner, np.asarray(counts * self.rb_bandwidth_hz, dtype=np.float64)

    def rate_bps(
        self,
        bandwidth_hz: FloatArray,
        tx_power_w: FloatArray,
        gain_linear: FloatArray,
        owner: IntArray | None,
        rb_gain_linear: FloatArray | None,
    ) -> FloatArray:
        """(N,) uplink rates in one coherence block."""
        if owner is None:
            return shannon_rate_bps(bandwidth_hz, tx_power_w, gain_linear, self.noise_psd_w_per_hz)
        gains = rb_gain_linear
        if gains is None:
            gains = np.repeat(gain_linear[:, None], len(owner), 1)
        return ofdma_rate_bps(owner, self.rb_bandwidth_hz, tx_power_w, gains, self.noise_psd_w_per_hz)

    def error_probability(self, rate_bps: FloatArray, bandwidth_hz: FloatArray) -> FloatArray:
        """Per-try failure probability (:func:`waterfall_error_probability`; 0 if off)."""
        if self.waterfall == 0:
            return np.zeros(len(rate_bps))
        return waterfall_error_probability(rate_bps, bandwidth_hz, self.waterfall)

    def draw_tries(self, rng: np.random.Generator | None, num_starting: int) -> FloatArray | None:
        """The uniforms of the starting jobs' tries, (num_starting, n); None without packet errors."""
        if self.waterfall == 0 or rng is None:
            return None
        return rng.random((num_starting, self.max_transmissions))

    def plan(
        self,
        start_s: FloatArray,
        bits: FloatArray,
        rate_in_block: Callable[[int], FloatArray],
        bandwidth_hz: FloatArray,
        coherence_time_s: float,
        uniforms: FloatArray | None,
        idx: IntArray,
    ) -> UploadPlan:
        """Finish times of uploads started at ``start_s`` (NaN = none), with ARQ tries.

        Args:
            start_s: (N,) upload starts.
            bits: (N,) bits per try.
            rate_in_block: Block index -> (N,) rates.
            bandwidth_hz: (N,) band of each device (for the SNR of the error model).
            coherence_time_s: Block length (inf = one block).
            uniforms: (len(idx), n) uniforms of :meth:`draw_tries`, or None.
            idx: The devices with a new job, in the order ``uniforms`` was drawn.
        """
        n = len(start_s)
        finish = transfer_finish_times(start_s, bits, rate_in_block, coherence_time_s)
        has_upload = np.isfinite(start_s)
        transmissions = has_upload.astype(np.int64)
        if uniforms is None:
            return UploadPlan(finish, has_upload.copy(), transmissions)
        u = np.ones((n, uniforms.shape[1]))
        u[idx] = uniforms
        delivered = np.zeros(n, dtype=bool)
        now = np.asarray(start_s, dtype=np.float64)
        pending = has_upload.copy()
        for attempt in range(uniforms.shape[1]):
            if attempt > 0:
                retry_at = np.where(pending, now, np.nan)
                retry = transfer_finish_times(retry_at, bits, rate_in_block, coherence_time_s)
                finish = np.where(pending, retry, finish)
                transmissions[pending] += 1
            q = np.zeros(n)
            for block in np.unique(self._block_of(now[pending], coherence_time_s)):
                here = pending & (self._block_of(now, coherence_time_s) == block)
                q[here] = self.error_probability(rate_in_block(int(block)), bandwidth_hz)[here]
            ok = pending & (u[:, attempt] >= q)
            delivered |= ok
            pending &= ~ok & np.isfinite(finish)
            now = finish
            if not pending.any():
                break
        return UploadPlan(finish, delivered, transmissions)

    @staticmethod
    def _block_of(time_s: FloatArray, coherence_time_s: float) -> IntArray:
        if not np.isfinite(coherence_time_s):
            return np.zeros(len(time_s), dtype=np.int64)
        return np.floor(np.nan_to_num(time_s, nan=0.0) / coherence_time_s).astype(np.int64)
