"""The read-only system view an optimiser decides on: the coming round's CSI and the unpruned costs.

Optimisers (closed forms, cvxpy, literature allocation schemes) need more than the RL observation:
linear channel gains, powers, noise, the unpruned compute latency and upload size of every device.
:meth:`fedsimenv.env.WirelessFLEnv.system_view` builds one :class:`SystemView` per round; agents get
it through :attr:`agents.AgentContext.system_view`. Its arrays are copies marked read-only, so an
agent cannot change the simulation through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from channels import shannon_rate_bps
from fedsimenv.config import ScenarioConfig

if TYPE_CHECKING:
    from fedsimenv.sim import RoundSimulator

FloatArray = NDArray[np.float64]

#: Pruning rates at which the env asks the trainer for the exact cost of the coming round's model
#: (evenly spaced over ``[0, rho_max]``; see :class:`CostCurve`).
COST_CURVE_POINTS = 21


@dataclass(frozen=True)
class CostCurve:
    """Exact cost of the coming round's global model pruned by the scenario's method, on a grid of rho.

    What the simulator charges a device pruning at ``pruning_rate[i]`` (``Trainer.cost_at``): forward
    FLOPs per sample and upload bits, including what pruning does not remove (an unstructured mask's
    bit per prunable weight, unprunable layers). Entry 0 is the unpruned model (rho = 0, no mask);
    entry 1 is the pruned model at the smallest positive rate (rho -> 0+, mask included), so the
    curve is non-increasing from entry 1 on for every pruning method here. Planners bound the cost
    between two grid points by the value at the left one (:mod:`agents.planning`).

    Attributes:
        pruning_rate: (K,) increasing, from 0 to rho_max; entries 0 and 1 are 0 and 0+ (see above).
        forward_flops_per_sample: (K,) FLOPs of one forward pass of the pruned model.
        upload_bits: (K,) size of the pruned model's upload, bits.
        download_bits: (K,) what a device pruning at that rate downloads, bits, where the trainer
            sends pruned devices their own model (a server-side mask: the pruned model, mask
            included); ``None``: every device receives the full broadcast (entry 0).
    """

    pruning_rate: FloatArray
    forward_flops_per_sample: FloatArray
    upload_bits: FloatArray
    download_bits: FloatArray | None = None

    def __post_init__(self) -> None:
        names = ["pruning_rate", "forward_flops_per_sample", "upload_bits"]
        names += [] if self.download_bits is None else ["download_bits"]
        for name in names:
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        k = len(self.pruning_rate)
        if k < 2 or any(getattr(self, name).shape != (k,) for name in names):
            raise ValueError("CostCurve arrays must all have the same length K >= 2")
        if not (np.all(np.isfinite(self.forward_flops_per_sample)) and np.all(self.upload_bits > 0)):
            raise ValueError("CostCurve costs must be finite, upload_bits > 0")
        if self.download_bits is not None and not np.all(self.download_bits > 0):
            raise ValueError("CostCurve download_bits must be > 0")

    @property
    def flops_ratio(self) -> FloatArray:
        """(K,) forward FLOPs relative to the unpruned model."""
        return np.asarray(self.forward_flops_per_sample / self.forward_flops_per_sample[0])

    @property
    def bits_ratio(self) -> FloatArray:
        """(K,) upload bits relative to the unpruned model."""
        return np.asarray(self.upload_bits / self.upload_bits[0])

    @property
    def download_ratio(self) -> FloatArray:
        """(K,) download bits relative to the full broadcast (ones where every device gets it)."""
        if self.download_bits is None:
            return np.ones(len(self.pruning_rate))
        return np.asarray(self.download_bits / self.download_bits[0])


def linear_cost_curve(rho_max: float, points: int = COST_CURVE_POINTS) -> CostCurve:
    """The linear cost model ``(1 - rho)`` x unpruned (unit unpruned costs): what planners assume
    where a view carries no exact curve."""
    rho = np.concatenate([[0.0], np.linspace(0.0, rho_max, points - 1)])
    return CostCurve(rho, 1.0 - rho, 1.0 - rho)


def cost_curve_grid(rho_max: float, points: int = COST_CURVE_POINTS) -> FloatArray:
    """The pruning rates a :class:`CostCurve` is evaluated at: 0, 0+, then evenly up to rho_max.

    0+ is the least rate a float32 action carries (2^-20, far below any pruned parameter): it prices
    the mask of a pruned upload at the smallest pruning.
    """
    tiny = 2.0**-20
    return np.concatenate([[0.0, tiny], np.linspace(0.0, rho_max, points - 1)[1:]])


def _frozen(values: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.float64]:
    out = np.array(values, dtype=np.float64, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class SystemView:
    """What the coming round will cost, per device (arrays over all N devices).

    Attributes:
        round_index: Index of the coming round (0-based).
        channel_gain_linear: (N,) uplink power gain of the coming round (one fading block per round).
        tx_power_w: (N,) uplink transmit power p_k, W.
        noise_psd_w_per_hz: Noise power spectral density N0, W/Hz.
        bandwidth_hz: Shared uplink bandwidth B, Hz.
        compute_latency_s: (N,) unpruned local-training latency A_k = E D_k 3 F_fwd / (f_k phi_k), s.
        compute_cycles: (N,) CPU cycles of the unpruned local training, cycles.
        cpu_freq_hz: (N,) CPU frequency f_k, Hz.
        kappa: Effective switched capacitance (compute energy = kappa cycles f^2), J/(cycle Hz^2).
        upload_bits: (N,) size of the unpruned model upload, bits.
        download_bits: Size of the broadcast global model, bits.
        downlink_time_s: (N,) broadcast time if device k were the weakest selected device, s; the
            round's downlink time is the maximum over the selected devices.
        num_samples: (N,) local training samples D_k.
        rho_max: Largest pruning rate an action can encode.
        num_resource_blocks: OFDMA resource blocks R (None in FDMA mode).
        rb_bandwidth_hz: Bandwidth of one resource block W, Hz (0 in FDMA mode).
        rb_gain_linear: (N, R) gain of each device on each RB in the coming round, where the channel
            draws per-RB fading (``resource_blocks.fading: independent``); None otherwise.
        packet_error_waterfall: m of the world's packet-error model ``q = 1 - exp(-m / SNR)``; None
            when uploads never fail.
        max_transmissions: ARQ tries per upload (1 without retransmissions).
        cost_curve_source: Computes :attr:`cost_curve` (on first access, once: asking the trainer
            for a curve costs a few model evaluations); ``None``: no exact curve.
        planning_gain_linear: (N,) the gain a device can plan its round on: the snapshot
            ``channel_gain_linear`` where the channel is static within a round; where fading is
            redrawn within the round (a coherence time), the large-scale gain times the fading's
            geometric mean ``exp(E ln |h|^2)``, whose rate is a lower bound on the ergodic rate
            (Jensen). ``None``: the snapshot.
        planning_downlink_time_s: (N,) broadcast time at ``planning_gain_linear``; ``None``:
            ``downlink_time_s``.
        large_scale_gain_linear: (N,) path loss x shadowing (no fading) where fading is redrawn
            within a round; ``None`` otherwise.
        fading_quantiles: (Q,) quantiles of the fading power gain at probabilities ``(i + 1/2)/Q``
            (its distribution, for planners that average over it); ``None`` with a static channel.
        coherence_time_s: Fading block length within a round, s; ``None``: one block per round.
        downlink_bandwidth_hz: Broadcast bandwidth, Hz.
        bs_tx_power_w: Base-station transmit power, W.
    """

    round_index: int
    channel_gain_linear: FloatArray
    tx_power_w: FloatArray
    noise_psd_w_per_hz: float
    bandwidth_hz: float
    compute_latency_s: FloatArray
    compute_cycles: FloatArray
    cpu_freq_hz: FloatArray
    kappa: float
    upload_bits: FloatArray
    download_bits: float
    downlink_time_s: FloatArray
    num_samples: FloatArray
    rho_max: float
    num_resource_blocks: int | None = None
    rb_bandwidth_hz: float = 0.0
    rb_gain_linear: FloatArray | None = None
    packet_error_waterfall: float | None = None
    max_transmissions: int = 1
    cost_curve_source: Callable[[], CostCurve] | None = field(default=None, compare=False, repr=False)
    planning_gain_linear: FloatArray | None = None
    planning_downlink_time_s: FloatArray | None = None
    large_scale_gain_linear: FloatArray | None = None
    fading_quantiles: FloatArray | None = None
    coherence_time_s: float | None = None
    downlink_bandwidth_hz: float = 0.0
    bs_tx_power_w: float = 0.0

    def __post_init__(self) -> None:
        if self.rb_gain_linear is not None:
            object.__setattr__(self, "rb_gain_linear", _frozen(self.rb_gain_linear))
        for name in (
            "planning_gain_linear",
            "planning_downlink_time_s",
            "large_scale_gain_linear",
            "fading_quantiles",
        ):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in (
            "channel_gain_linear",
            "tx_power_w",
            "compute_latency_s",
            "compute_cycles",
            "cpu_freq_hz",
            "upload_bits",
            "downlink_time_s",
            "num_samples",
        ):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def num_devices(self) -> int:
        return len(self.channel_gain_linear)

    @property
    def snr_bandwidth_hz(self) -> FloatArray:
        """(N,) ``a_k = p_k g_k / N0`` in Hz: the rate is ``b log2(1 + a_k / b)``."""
        return np.asarray(self.tx_power_w * self.channel_gain_linear / self.noise_psd_w_per_hz)

    def reference_latency_s(self) -> float:
        """Median over devices of the unpruned round latency with an equal share ``B / N`` (downlink +
        compute + upload), s: the optimisers' default deadline and the time unit of episodic rewards."""
        share = self.bandwidth_hz / self.num_devices
        rate = share * np.log1p(self.snr_bandwidth_hz / share) / np.log(2.0)
        upload = self.upload_bits / np.maximum(rate, 1e-30)
        return float(np.median(self.downlink_time_s + self.compute_latency_s + upload))

    @functools.cached_property
    def cost_curve(self) -> CostCurve | None:
        """Exact costs of the coming round's model as a function of rho (what the simulator will
        charge); ``None``: planners assume the linear model ``(1 - rho)`` x unpruned."""
        return None if self.cost_curve_source is None else self.cost_curve_source()

    @property
    def planning_snr_bandwidth_hz(self) -> FloatArray:
        """(N,) ``a_k`` at :attr:`planning_gain_linear`: what planners should decide on."""
        gain = self.channel_gain_linear if self.planning_gain_linear is None else self.planning_gain_linear
        return np.asarray(self.tx_power_w * gain / self.noise_psd_w_per_hz)

    @property
    def planning_downlink(self) -> FloatArray:
        """(N,) :attr:`downlink_time_s` at :attr:`planning_gain_linear`, s."""
        return (
            self.downlink_time_s if self.planning_downlink_time_s is None else self.planning_downlink_time_s
        )


def build_system_view(
    config: ScenarioConfig,
    sim: RoundSimulator,
    num_samples: NDArray[np.int64],
    unpruned_forward_flops_per_sample: float,
    unpruned_upload_bits: float,
    download_bits: float,
    cost_curve: Callable[[], CostCurve] | None = None,
) -> SystemView:
    """The :class:`SystemView` of ``sim``'s coming round (a pure function of its arguments).

    Unpruned compute latency ``A_k = E D_k 3 F_fwd / (f_k phi_k)`` (backward ~ 2x forward) and the
    downlink time at device k's own rate; the round's downlink is the maximum over the selected.
    Where the scenario has a coherence time (fading redrawn within a round) the planning gain is the
    large-scale gain times the fading's geometric mean (see :attr:`SystemView.planning_gain_linear`).
    """
    fleet = sim.fleet
    samples = num_samples.astype(np.float64)
    cycles = config.learning.local_epochs * samples * 3.0 * unpruned_forward_flops_per_sample
    cycles = cycles / fleet.flops_per_cycle
    gain = sim.channel_gain_linear
    downlink_rate = shannon_rate_bps(
        config.network.downlink_bandwidth_hz, sim.bs_tx_power_w, gain, sim.noise_psd_w_per_hz
    )
    planning_gain = planning_downlink = large_scale = quantiles = None
    typical = getattr(sim.channel, "typical_gain_linear", None)
    if sim.coherence_time_s is not None and typical is not None:
        planning_gain = np.asarray(typical(), dtype=np.float64)
        large_scale = np.asarray(getattr(sim.channel, "large_scale_gain_linear"), dtype=np.float64)  # noqa: B009 - not in the protocol
        quantiles = np.asarray(getattr(sim.channel, "fading_quantiles")(), dtype=np.float64)  # noqa: B009
        planning_rate = shannon_rate_bps(
            config.network.downlink_bandwidth_hz, sim.bs_tx_power_w, planning_gain, sim.noise_psd_w_per_hz
        )
        planning_downlink = download_bits / planning_rate
    return SystemView(
        round_index=sim.round_index,
        channel_gain_linear=gain,
        tx_power_w=fleet.tx_power_w,
        noise_psd_w_per_hz=sim.noise_psd_w_per_hz,
        bandwidth_hz=config.network.bandwidth_hz,
        compute_latency_s=cycles / fleet.cpu_freq_hz,
        compute_cycles=cycles,
        cpu_freq_hz=fleet.cpu_freq_hz,
        kappa=fleet.kappa,
        upload_bits=np.full(len(gain), unpruned_upload_bits),
        download_bits=download_bits,
        downlink_time_s=download_bits / downlink_rate,
        num_samples=samples,
        rho_max=config.action.rho_max,
        cost_curve_source=cost_curve,
        planning_gain_linear=planning_gain,
        planning_downlink_time_s=planning_downlink,
        large_scale_gain_linear=large_scale,
        fading_quantiles=quantiles,
        coherence_time_s=sim.coherence_time_s,
        downlink_bandwidth_hz=config.network.downlink_bandwidth_hz,
        bs_tx_power_w=sim.bs_tx_power_w,
        **_radio_fields(config, sim),
    )


def _radio_fields(config: ScenarioConfig, sim: RoundSimulator) -> dict[str, Any]:
    """OFDMA and packet-error fields of the view (additive; defaults in FDMA without errors)."""
    rb, per = config.network.resource_blocks, config.network.packet_error
    out: dict[str, Any] = {}
    if config.network.access == "ofdma" and rb is not None:
        out["num_resource_blocks"] = rb.count
        out["rb_bandwidth_hz"] = rb.bandwidth_hz
        out["rb_gain_linear"] = sim.blocks.rb_gain(sim.blocks.index_at(sim.now_s))
    if per is not None:
        out["packet_error_waterfall"] = per.waterfall_threshold
        out["max_transmissions"] = per.max_transmissions
    return out
