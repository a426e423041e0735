"""Round timelines: per-device phase records (JSONL) and a Gantt chart (PNG)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fedsimenv.atomic import replacing
from fedsimenv.sim.types import RoundReport

#: Phases of a job, with the report fields holding their start and finish.
PHASES = (
    ("download", "download_start_s", "download_finish_s"),
    ("compute", "compute_start_s", "compute_finish_s"),
    ("upload", "upload_start_s", "upload_finish_s"),
)
_COLORS = {"download": "#9e9e9e", "compute": "#1f77b4", "upload": "#ff7f0e"}


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def timeline_records(report: RoundReport) -> list[dict[str, Any]]:
    """One record per device that had a job in the round: status, reason, phase times, energy, bits.

    Phase times are as planned; ``stop_s`` is when the job actually ended in this round (arrival,
    drop or failure; null while still in flight).
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
                "round": report.round_index,
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


def plot_gantt(report: RoundReport, path: Path, max_devices: int = 60) -> None:
    """Draw the round as a Gantt chart (one row per device with a job) and save it as a PNG atomically.

    Bars are clipped to the round's end; a cross marks where a dropped or failed device stopped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = timeline_records(report)
    shown = records[:max_devices]
    end = report.end_time_s
    fig, ax = plt.subplots(figsize=(9, 0.3 * max(len(shown), 4) + 1.5))
    try:
        for row, record in enumerate(shown):
            stop = end if record["stop_s"] is None else min(record["stop_s"], end)
            for name, phase in record["phases"].items():
                start, finish = phase["start_s"], phase["finish_s"]
                if start is None or finish is None:
                    continue
                finish = min(finish, stop)
                if finish > start:
                    ax.barh(
                        row,
                        finish - start,
                        left=start,
                        color=_COLORS[name],
                        height=0.7,
                        label=name if row == 0 else None,
                    )
            if record["status"] in ("dropped", "failed"):
                ax.plot([stop], [row], marker="x", color="red")
        ax.axvline(end, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(range(len(shown)), [f"dev {r['device']} ({r['status']})" for r in shown], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("simulated time (s); x = dropped or failed, dashed = round end")
        more = f", first {len(shown)} of {len(records)} devices" if len(records) > len(shown) else ""
        ax.set_title(f"round {report.round_index} ({report.protocol}{more}): {report.round_latency_s:.3f} s")
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8)
        fig.tight_layout()
        with replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
