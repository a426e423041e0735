"""The read-only system view an optimiser decides on: the coming round's CSI and the unpruned costs.

Optimisers (closed forms, cvxpy, literature allocation schemes) need more than the RL observation:
linear channel gains, powers, noise, the unpruned compute latency and upload size of every device.
:meth:`fedsimenv.env.WirelessFLEnv.system_view` builds one :class:`SystemView` per round; agents get
it through :attr:`agents.AgentContext.system_view`. Its arrays are copies marked read-only, so an
agent cannot change the simulation through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from channels import shannon_rate_bps
from fedsimenv.config import ScenarioConfig

if TYPE_CHECKING:
    from fedsimenv.sim import RoundSimulator

FloatArray = NDArray[np.float64]


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

    def __post_init__(self) -> None:
        if self.rb_gain_linear is not None:
            object.__setattr__(self, "rb_gain_linear", _frozen(self.rb_gain_linear))
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


def build_system_view(
    config: ScenarioConfig,
    sim: RoundSimulator,
    num_samples: NDArray[np.int64],
    unpruned_forward_flops_per_sample: float,
    unpruned_upload_bits: float,
    download_bits: float,
) -> SystemView:
    """The :class:`SystemView` of ``sim``'s coming round (a pure function of its arguments).

    Unpruned compute latency ``A_k = E D_k 3 F_fwd / (f_k phi_k)`` (backward ~ 2x forward) and the
    downlink time at device k's own rate; the round's downlink is the maximum over the selected.
    """
    fleet = sim.fleet
    samples = num_samples.astype(np.float64)
    cycles = config.learning.local_epochs * samples * 3.0 * unpruned_forward_flops_per_sample
    cycles = cycles / fleet.flops_per_cycle
    gain = sim.channel_gain_linear
    downlink_rate = shannon_rate_bps(
        config.network.downlink_bandwidth_hz, sim.bs_tx_power_w, gain, sim.noise_psd_w_per_hz
    )
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
