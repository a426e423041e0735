"""The values that cross the plane boundaries: what to do in a round, what it costs, what happened."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedsimenv.numeric import make_frozen

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class RoundDecision:
    """One round's decision, whoever made it (RL policy, optimiser, heuristic).

    Attributes:
        selected: (N,) which devices take part.
        pruning_rate: (N,) fraction of model parameters each device removes, in [0, 1).
        bandwidth_hz: (N,) uplink FDMA bandwidth per device; 0 for unselected devices. In OFDMA mode
            the shares ``bandwidth_hz / B`` set each device's number of resource blocks (largest
            remainder) unless ``resource_block_owner`` is given.
        tx_power_w: (N,) transmit power per device, in (0, device max]; None = every device at its max.
        cpu_freq_hz: (N,) CPU frequency per device, in (0, device max]; None = every device at its max.
        resource_block_owner: (R,) OFDMA only: the device each resource block is given to, -1 = unused;
            None = from the bandwidth shares (see :mod:`fedsimenv.sim.uplink`).
        upload_value_bits: (N,) integer bits per uploaded value of each device (a quantised upload,
            1..32; 32 = full precision); None = the trainer's own encoding. The simulator does not
            read it: the trainer prices each upload at its width (``DeviceWorkload.upload_bits``).
    """

    selected: BoolArray
    pruning_rate: FloatArray
    bandwidth_hz: FloatArray
    tx_power_w: FloatArray | None = None
    cpu_freq_hz: FloatArray | None = None
    resource_block_owner: IntArray | None = None
    upload_value_bits: IntArray | None = None

    def validate(
        self,
        num_devices: int,
        total_bandwidth_hz: float,
        tx_power_max_w: FloatArray | None = None,
        cpu_freq_max_hz: FloatArray | None = None,
        num_resource_blocks: int | None = None,
    ) -> None:
        """Raise ``ValueError`` naming the field if the decision is malformed or infeasible.

        Powers and frequencies are checked against the device maxima when those are given (relative
        tolerance 1e-9); ``resource_block_owner`` needs ``num_resource_blocks`` (OFDMA mode).
        """
        for name in ("selected", "pruning_rate", "bandwidth_hz"):
            shape = np.shape(getattr(self, name))
            if shape != (num_devices,):
                raise ValueError(f"RoundDecision.{name} must have shape ({num_devices},), got {shape}")
        if not self.selected.any():
            raise ValueError("RoundDecision.selected must select at least one device")
        rho, bw = self.pruning_rate, self.bandwidth_hz
        if not np.all(np.isfinite(rho)) or np.any((rho < 0) | (rho >= 1)):
            raise ValueError("RoundDecision.pruning_rate must be finite and in [0, 1)")
        if not np.all(np.isfinite(bw)) or np.any(bw < 0):
            raise ValueError("RoundDecision.bandwidth_hz must be finite and >= 0")
        if self.resource_block_owner is None and np.any(bw[self.selected] <= 0):
            raise ValueError("RoundDecision.bandwidth_hz must be > 0 for every selected device")
        if bw.sum() > total_bandwidth_hz * (1 + 1e-9):
            raise ValueError(
                f"RoundDecision.bandwidth_hz sums to {bw.sum():.6g} Hz, "
                f"above the budget {total_bandwidth_hz:.6g} Hz"
            )
        for name, maximum in (("tx_power_w", tx_power_max_w), ("cpu_freq_hz", cpu_freq_max_hz)):
            self._check_device_setting(name, num_devices, maximum)
        if self.resource_block_owner is not None:
            self._check_owner(num_devices, num_resource_blocks)
        if self.upload_value_bits is not None:
            self._check_value_bits(num_devices)

    def _check_value_bits(self, num_devices: int) -> None:
        bits = np.asarray(self.upload_value_bits)
        if bits.shape != (num_devices,):
            raise ValueError(
                f"RoundDecision.upload_value_bits must have shape ({num_devices},), got {bits.shape}"
            )
        chosen = bits[self.selected]
        if not np.issubdtype(bits.dtype, np.integer) or np.any((chosen < 1) | (chosen > 32)):
            raise ValueError("RoundDecision.upload_value_bits must be integers in [1, 32]")

    def _check_device_setting(self, name: str, num_devices: int, maximum: FloatArray | None) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if np.shape(value) != (num_devices,):
            raise ValueError(f"RoundDecision.{name} must have shape ({num_devices},), got {np.shape(value)}")
        chosen = np.asarray(value)[self.selected]
        if not np.all(np.isfinite(chosen)) or np.any(chosen <= 0):
            raise ValueError(f"RoundDecision.{name} must be finite and > 0 for every selected device")
        if maximum is not None and np.any(chosen > np.asarray(maximum)[self.selected] * (1 + 1e-9)):
            raise ValueError(f"RoundDecision.{name} exceeds a device's maximum (devices.{name} limits)")

    def _check_owner(self, num_devices: int, num_resource_blocks: int | None) -> None:
        owner = self.resource_block_owner
        assert owner is not None
        if num_resource_blocks is None:
            raise ValueError("RoundDecision.resource_block_owner needs network.access: ofdma")
        if np.shape(owner) != (num_resource_blocks,):
            raise ValueError(
                f"RoundDecision.resource_block_owner must have shape ({num_resource_blocks},), "
                f"got {np.shape(owner)}"
            )
        if np.any((owner < -1) | (owner >= num_devices)):
            raise ValueError(f"RoundDecision.resource_block_owner must be in [-1, {num_devices - 1}]")
        if np.any(~self.selected[owner[owner >= 0]]):
            raise ValueError("RoundDecision.resource_block_owner gives a block to an unselected device")


@dataclass(frozen=True)
class DeviceWorkload:
    """The learning plane's cost figures for one round (arrays over all N devices).

    Attributes:
        forward_flops_per_sample: Forward FLOPs of each device's pruned model for one sample.
        upload_bits: Size of each device's upload (pruned weights + index overhead).
        download_bits: Size of the broadcast global model, or (N,) each device's download where
            devices receive models of their own (sub-models, compressed models).
        num_samples: Local training samples per device.
        local_epochs: Local epochs E.
    """

    forward_flops_per_sample: FloatArray
    upload_bits: FloatArray
    download_bits: float | FloatArray
    num_samples: NDArray[np.int64]
    local_epochs: int

    @property
    def training_flops(self) -> FloatArray:
        """E x D_k x 3 x forward FLOPs: the backward pass costs about twice the forward pass."""
        return self.local_epochs * self.num_samples * 3.0 * self.forward_flops_per_sample


#: Per-device outcome of a round (``RoundReport.status``).
STATUS_IDLE = "idle"  # had no job in this round
STATUS_ARRIVED = "arrived"  # update reached the server in this round and is aggregated
STATUS_DROPPED = "dropped"  # the server discarded it (reason: deadline, over-commit)
STATUS_FAILED = "failed"  # the device could not finish (reason: unavailable, went-offline, battery-depleted,
# no-free-bandwidth, no-resource-block, packet-error)
STATUS_IN_FLIGHT = "in-flight"  # async only: still working when the round (aggregation) ended


@dataclass(frozen=True)
class RoundReport:
    """What happened in one simulated round; per-device phase times are NaN where not applicable.

    Times are absolute simulation times in seconds. In the synchronous, deadline and over-commit
    protocols every job starts and ends within its round. In the async protocol a job may span rounds:
    the phase times are those of the device's current or last job, ``staleness`` is the number of
    aggregations between its start and its arrival, and energies count only what was spent within
    this round's time window.
    """

    round_index: int
    start_time_s: float
    end_time_s: float
    selected: BoolArray
    arrived: BoolArray
    channel_gain_linear: FloatArray
    bandwidth_hz: FloatArray
    pruning_rate: FloatArray
    uplink_rate_bps: FloatArray
    downlink_rate_bps: float
    download_start_s: FloatArray
    download_finish_s: FloatArray
    compute_start_s: FloatArray
    compute_finish_s: FloatArray
    upload_start_s: FloatArray
    upload_finish_s: FloatArray
    upload_bits: FloatArray
    compute_energy_j: FloatArray
    transmit_energy_j: FloatArray
    idle_energy_j: FloatArray
    status: NDArray[np.str_]
    reason: NDArray[np.str_]
    staleness: NDArray[np.int64]
    battery_j: FloatArray
    stop_s: FloatArray  # when each job ended in this round (arrival, drop or failure); NaN otherwise
    #: (N,) transmit power and CPU frequency each job ran with (the device maxima unless decided).
    tx_power_w: FloatArray
    cpu_freq_hz: FloatArray
    #: (N,) upload attempts of each job (ARQ; 0 where no upload started, 1 without packet errors).
    transmissions: IntArray
    protocol: str = "synchronous"
    #: (N,) resource blocks of each job (OFDMA); None in FDMA mode.
    resource_blocks: IntArray | None = None

    @property
    def round_latency_s(self) -> float:
        return self.end_time_s - self.start_time_s

    @property
    def energy_j(self) -> float:
        """Total device energy spent in the round (compute + transmit + idle)."""
        # ``np.add.reduce`` is ``ndarray.sum`` (the same reduction) without its Python-level wrapper.
        add = np.add.reduce
        return float(add(self.compute_energy_j) + add(self.transmit_energy_j) + add(self.idle_energy_j))

    @property
    def compute_time_s(self) -> FloatArray:
        return self.compute_finish_s - self.compute_start_s

    @property
    def upload_time_s(self) -> FloatArray:
        return self.upload_finish_s - self.upload_start_s

    def summary(self, energy_j: float | None = None) -> dict[str, Any]:
        """JSON-ready scalars for logs and ``info`` (``energy_j``: :attr:`energy_j` if known)."""
        downlink = self.download_finish_s - self.download_start_s
        arrived, selected, status = self.arrived, self.selected, self.status
        chosen_rates = self.pruning_rate[selected]
        any_arrived = bool(np.logical_or.reduce(arrived))
        # Cheaper equivalents of ``nanmax`` (``fmax.reduce``), ``.sum()`` / ``.mean()`` (``add.reduce``)
        # and ``(x == v).sum()`` (``count_nonzero``), with the same values.
        return {
            "round_latency_s": self.round_latency_s,
            "round_energy_j": self.energy_j if energy_j is None else energy_j,
            "num_selected": int(np.add.reduce(selected)),
            "num_arrived": int(np.add.reduce(arrived)),
            "num_dropped": int(np.count_nonzero(status == STATUS_DROPPED)),
            "num_failed": int(np.count_nonzero(status == STATUS_FAILED)),
            "num_packet_errors": int(np.count_nonzero(self.reason == "packet-error")),
            "downlink_time_s": float(np.fmax.reduce(downlink))
            if np.logical_or.reduce(np.isfinite(downlink))
            else 0.0,
            "upload_bits": float(np.add.reduce(self.upload_bits[arrived])),
            "mean_pruning_rate": float(np.add.reduce(chosen_rates) / len(chosen_rates)),
            "max_staleness": int(np.maximum.reduce(self.staleness[arrived])) if any_arrived else 0,
        }


#: :class:`RoundReport`'s fields, in declaration order (the order its ``__init__`` sets them).
REPORT_FIELDS = tuple(f.name for f in fields(RoundReport))


def make_report(**values: Any) -> RoundReport:
    """``RoundReport(**values)`` with every field given (:func:`make_frozen`; a fast round's
    largest single cost was the frozen constructor's 31 ``object.__setattr__`` calls).

    Raises:
        TypeError: a field is missing or unknown.
    """
    return make_frozen(RoundReport, **values)
