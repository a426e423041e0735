"""Round timelines: per-device phase records (one JSON object per device and round).

Drawing them is :mod:`fedsimenv.gantt`'s job (this timing-plane module imports no matplotlib)."""

from __future__ import annotations

import math
from typing import Any

from fedsimenv.sim.types import RoundReport

#: Phases of a job, with the report fields holding their start and finish.
PHASES = (
    ("download", "download_start_s", "download_finish_s"),
    ("compute", "compute_start_s", "compute_finish_s"),
    ("upload", "upload_start_s", "upload_finish_s"),
)


def _number(value: float) -> float | None:
    """A time as JSON: null where there is none (NaN) or it never comes (inf), so the file is strict JSON."""
    return float(value) if math.isfinite(value) else None


def timeline_records(report: RoundReport) -> list[dict[str, Any]]:
    """One record per device that had a job in the round, or idled at a cost: status, reason, phase
    times, energy, bits, power, CPU frequency, upload tries.

    Phase times are as planned; ``stop_s`` is when the job actually ended in this round (arrival,
    drop or failure; null while still in flight). A device without a job that drew idle power gets a
    record with status ``idle``, no phases and its idle energy, so the records' energies add up to
    the round energy of ``metrics.jsonl`` (:attr:`RoundReport.energy_j`). ``round`` is 1-based, as in
    ``metrics.jsonl``.
    """
    records = []
    for k in range(len(report.status)):
        if report.status[k] == "idle" and not report.idle_energy_j[k] > 0:
            continue
        phases = {
            name: {"start_s": _number(getattr(report, a)[k]), "finish_s": _number(getattr(report, b)[k])}
            for name, a, b in PHASES
        }
        records.append(
            {
                "round": report.round_index + 1,  # 1-based, as in metrics.jsonl
                "device": k,
                "status": str(report.status[k]),
                "reason": str(report.reason[k]),
                "staleness": int(report.staleness[k]),
                "pruning_rate": float(report.pruning_rate[k]),
                "bandwidth_hz": float(report.bandwidth_hz[k]),
                "upload_bits": float(report.upload_bits[k]),
                "compute_energy_j": float(report.compute_energy_j[k]),
                "transmit_energy_j": float(report.transmit_energy_j[k]),
                "idle_energy_j": float(report.idle_energy_j[k]),
                "stop_s": _number(report.stop_s[k]),
                **_controls(report, k),
                "phases": phases,
            }
        )
    return records


def _controls(report: RoundReport, k: int) -> dict[str, Any]:
    """The radio and CPU settings of device k's job (where the report has them)."""
    out: dict[str, Any] = {
        "tx_power_w": float(report.tx_power_w[k]),
        "cpu_freq_hz": float(report.cpu_freq_hz[k]),
        "transmissions": int(report.transmissions[k]),
    }
    if report.resource_blocks is not None:
        out["resource_blocks"] = int(report.resource_blocks[k])
    return out
