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
    """One record per device that had a job in the round: status, reason, phase times, energy, bits.

    Phase times are as planned; ``stop_s`` is when the job actually ended in this round (arrival,
    drop or failure; null while still in flight). ``round`` is 1-based, as in ``metrics.jsonl``.
    """
    records = []
    for k in range(len(report.status)):
        if report.status[k] == "idle":
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
                "phases": phases,
            }
        )
    return records
