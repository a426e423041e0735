"""SimPy simulation of synchronous federated rounds over an FDMA uplink.

A round, per selected device k (all times from the model in DESIGN.md):

1. downlink broadcast of the global model, common to all, at the rate of the weakest selected device:
   ``t_dl = bits_dl / (B_dl log2(1 + P_bs g_min / (N0 B_dl)))``;
2. local training: ``t_comp_k = E D_k 3 F_fwd_k / (f_k phi_k)`` with the forward FLOPs of the device's
   actual pruned model;
3. upload: ``t_up_k = bits_k / r_k`` with ``r_k = b_k log2(1 + p_k g_k / (N0 b_k))``.

The round is synchronous: it ends when the last selected device has uploaded. Energy per device is
``kappa cycles f_k^2`` for compute plus ``p_k t_up_k`` for transmission. Channel gains are constant
within a round (one fading block per round) and are drawn before the round, so an agent can observe
the CSI it decides on.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from channels import ChannelModel, dbm_to_watt, shannon_rate_bps
from fedsimenv.config import NetworkConfig
from fedsimenv.sim.types import DeviceWorkload, FloatArray, RoundDecision, RoundReport
from fedsimenv.sim.world import DeviceFleet


class RoundSimulator:
    """Owns the SimPy clock, the devices and the channel state; runs one round per call.

    Args:
        fleet: The devices.
        channel: Channel model producing per-block gains.
        network: Bandwidths, noise and powers.
        rng: Stream for the channel's fading draws.
    """

    def __init__(
        self, fleet: DeviceFleet, channel: ChannelModel, network: NetworkConfig, rng: np.random.Generator
    ) -> None:
        self.fleet = fleet
        self.channel = channel
        self.network = network
        self.noise_psd_w_per_hz = float(dbm_to_watt(network.noise_psd_dbm_per_hz))
        self.bs_tx_power_w = float(dbm_to_watt(network.bs_tx_power_dbm))
        self.rng = rng
        self.env = simpy.Environment()
        self.round_index = 0
        self.channel_gain_linear = self._next_block()

    @property
    def now_s(self) -> float:
        """Simulated time elapsed since the start of the episode."""
        return float(self.env.now)

    def _next_block(self) -> FloatArray:
        return self.channel.sample_gain(self.fleet.distance_m, self.fleet.shadowing_db, self.rng)

    def run_round(self, decision: RoundDecision, workload: DeviceWorkload) -> RoundReport:
        """Simulate one synchronous round and advance the clock to its end."""
        fleet, n = self.fleet, self.fleet.num_devices
        decision.validate(n, self.network.bandwidth_hz)
        selected = decision.selected
        gain = self.channel_gain_linear

        uplink_rate = shannon_rate_bps(decision.bandwidth_hz, fleet.tx_power_w, gain, self.noise_psd_w_per_hz)
        downlink_rate = float(
            shannon_rate_bps(
                self.network.downlink_bandwidth_hz,
                self.bs_tx_power_w,
                gain[selected].min(),
                self.noise_psd_w_per_hz,
            )
        )
        cycles = workload.training_flops / fleet.flops_per_cycle
        compute_s = cycles / fleet.cpu_freq_hz
        upload_bits = np.where(selected, workload.upload_bits, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            upload_s = np.where(selected, upload_bits / uplink_rate, np.nan)

        times: dict[str, FloatArray] = {
            key: np.full(n, np.nan)
            for key in ("dl_start", "dl_finish", "comp_start", "comp_finish", "up_start", "up_finish")
        }
        start = self.now_s
        broadcast = self.env.timeout(workload.download_bits / downlink_rate)
        processes = [
            self.env.process(self._device(int(k), broadcast, compute_s[k], upload_s[k], times))
            for k in np.flatnonzero(selected)
        ]
        self.env.run(until=self.env.all_of(processes))

        compute_energy = np.where(selected, fleet.kappa * cycles * fleet.cpu_freq_hz**2, 0.0)
        transmit_energy = np.where(selected, fleet.tx_power_w * np.nan_to_num(upload_s), 0.0)
        report = RoundReport(
            round_index=self.round_index,
            start_time_s=start,
            end_time_s=self.now_s,
            selected=selected.copy(),
            arrived=selected.copy(),  # synchronous: every selected device arrives
            channel_gain_linear=gain.copy(),
            bandwidth_hz=decision.bandwidth_hz.copy(),
            pruning_rate=np.where(selected, decision.pruning_rate, 0.0),
            uplink_rate_bps=uplink_rate,
            downlink_rate_bps=downlink_rate,
            download_start_s=times["dl_start"],
            download_finish_s=times["dl_finish"],
            compute_start_s=times["comp_start"],
            compute_finish_s=times["comp_finish"],
            upload_start_s=times["up_start"],
            upload_finish_s=times["up_finish"],
            upload_bits=upload_bits,
            compute_energy_j=compute_energy,
            transmit_energy_j=transmit_energy,
        )
        self.round_index += 1
        self.channel_gain_linear = self._next_block()
        return report

    def _device(
        self,
        k: int,
        broadcast: simpy.Event,
        compute_s: float,
        upload_s: float,
        times: dict[str, FloatArray],
    ) -> Generator[simpy.Event, Any, None]:
        """One device's round: receive the broadcast, train, upload."""
        times["dl_start"][k] = self.env.now
        yield broadcast
        times["dl_finish"][k] = times["comp_start"][k] = self.env.now
        yield self.env.timeout(compute_s)
        times["comp_finish"][k] = times["up_start"][k] = self.env.now
        yield self.env.timeout(upload_s)
        times["up_finish"][k] = self.env.now
