"""Episode summaries and their statistics over seeds (pure functions of metric rows).

:func:`summarise_rows` turns one episode's ``metrics.jsonl`` rows into a flat summary (final values,
cost to reach the target accuracy, per-round means); :func:`mean_std` and :func:`format_mean_std`
aggregate a column over seeds for the compare and sweep tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Target accuracy for "time / energy to target" when neither the option nor the scenario gives one.
DEFAULT_TARGET_ACCURACY = 0.9

#: Columns of a job summary, in table order (simulated quantities only: reproducible across engines).
SUMMARY_KEYS = (
    "rounds",
    "final_accuracy",
    "final_top5_accuracy",
    "sim_time_s",
    "energy_j",
    "time_to_target_s",
    "energy_to_target_j",
    "rounds_to_target",
    "mean_round_latency_s",
    "mean_selected",
    "mean_arrived",
    "mean_dropped",
    "mean_rho",
    "note_rounds",
    "agent_notes",
)

#: Distinct fallback notes kept per episode summary.
MAX_NOTES = 3


def summarise_rows(rows: Sequence[Mapping[str, Any]], target_accuracy: float | None) -> dict[str, Any]:
    """Episode summary from metric rows: final values, cost to reach the target, per-round means.

    ``final_top5_accuracy`` is None when the rows carry no ``top5_accuracy`` (tasks with 5 classes
    or fewer, the surrogate). ``time_to_target_s``, ``energy_to_target_j`` and ``rounds_to_target``
    are None if the target was never reached (or none was given). ``mean_rho`` is the mean over
    every selected device and round (each round's mean weighted by its selected devices), the
    definition of the rho distribution plot's mean. ``mean_dropped`` counts the selected devices
    that did not arrive (dropped or failed) per round; ``note_rounds`` the rounds in which the agent
    fell back from its own solution (``agent_note``), ``agent_notes`` the first distinct notes.
    """
    if not rows:
        raise ValueError("no rounds to summarise")
    reached = next(
        (r for r in rows if target_accuracy is not None and float(r["accuracy"]) >= target_accuracy), None
    )
    n = len(rows)
    notes = [str(r["agent_note"]) for r in rows if r.get("agent_note")]
    return {
        "rounds": n,
        "final_accuracy": float(rows[-1]["accuracy"]),
        "final_top5_accuracy": None if "top5_accuracy" not in rows[-1] else float(rows[-1]["top5_accuracy"]),
        "sim_time_s": float(rows[-1]["sim_time_s"]),
        "energy_j": float(rows[-1]["energy_j"]),
        "time_to_target_s": None if reached is None else float(reached["sim_time_s"]),
        "energy_to_target_j": None if reached is None else float(reached["energy_j"]),
        "rounds_to_target": None if reached is None else int(reached["round"]),
        "mean_round_latency_s": sum(float(r["round_latency_s"]) for r in rows) / n,
        "mean_selected": sum(float(r["num_selected"]) for r in rows) / n,
        "mean_arrived": sum(float(r["num_arrived"]) for r in rows) / n,
        "mean_dropped": sum(float(r["num_selected"]) - float(r["num_arrived"]) for r in rows) / n,
        "mean_rho": _selected_mean_rho(rows),
        "note_rounds": len(notes),
        "agent_notes": " | ".join(list(dict.fromkeys(notes))[:MAX_NOTES]),
    }


def _selected_mean_rho(rows: Sequence[Mapping[str, Any]]) -> float:
    selected = sum(float(r["num_selected"]) for r in rows)
    if selected <= 0:
        return 0.0
    return sum(float(r["mean_rho"]) * float(r["num_selected"]) for r in rows) / selected


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the non-None values."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return math.nan, math.nan, 0
    mean = sum(kept) / len(kept)
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)) if len(kept) > 1 else 0.0
    return mean, std, len(kept)


def format_mean_std(values: Sequence[float | None], digits: int = 3) -> str:
    mean, std, count = mean_std(values)
    if count == 0:
        return "—"
    text = (
        f"{mean:.{digits}g} ± {std:.2g}"
        if abs(mean) >= 10 ** (digits + 1)
        else f"{mean:.{digits}f} ± {std:.{digits}f}"
    )
    return text + (f" ({count}/{len(values)})" if count < len(values) else "")
