"""Gantt charts of round timelines: the one drawer and the one colour table.

:func:`draw_gantt` draws timeline records (the dicts of :func:`fedsimenv.sim.timeline.timeline_records`)
onto a matplotlib Axes; :func:`plot_gantt` (one round, one PNG), :func:`plot_gantt_side_by_side` (one
panel per agent) and the ``rgb_array`` frame of :mod:`fedsimenv.render` are all built on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedsimenv.atomic import replacing
from fedsimenv.sim.timeline import timeline_records
from fedsimenv.sim.types import RoundReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Bar colour of each phase (:data:`fedsimenv.sim.timeline.PHASES`); the only colour table.
PHASE_COLORS: dict[str, str] = {"download": "#9e9e9e", "compute": "#1f77b4", "upload": "#ff7f0e"}
#: Marker colour where a dropped or failed device stopped.
STOP_COLOR = "red"
_STOPPED = ("dropped", "failed")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _min(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def draw_gantt(
    ax: Axes,
    records: Sequence[Mapping[str, Any]],
    *,
    end_s: float | None = None,
    max_devices: int = 60,
    label_status: bool = False,
    fontsize: float = 7,
) -> int:
    """Draw one row per record (the first ``max_devices``) and return the number of rows drawn.

    Each phase is a bar from its start to its finish, clipped at the record's ``stop_s`` (when the
    job ended) and at ``end_s`` (the round's end). A red x marks where a dropped or failed device
    stopped; a dashed vertical line marks ``end_s`` when given. Bars carry the phase name as label
    once per Axes (for ``ax.legend()``). The y axis lists ``dev K`` (``dev K (status)`` with
    ``label_status``) top to bottom.
    """
    shown = [r for r in records if r["status"] != "idle"][:max_devices]  # idle rows have no bars
    labelled: set[str] = set()
    for row, record in enumerate(shown):
        limit = _min(record.get("stop_s"), end_s)
        for name, phase in record["phases"].items():
            start, finish = phase["start_s"], phase["finish_s"]
            if start is None or finish is None:
                continue
            finish = _min(finish, limit)
            assert finish is not None
            if finish > start:
                ax.barh(
                    row,
                    finish - start,
                    left=start,
                    color=PHASE_COLORS[name],
                    height=0.7,
                    label=None if name in labelled else name,
                )
                labelled.add(name)
        if record["status"] in _STOPPED and limit is not None:
            ax.plot([limit], [row], marker="x", color=STOP_COLOR, linestyle="none")
    if end_s is not None:
        ax.axvline(end_s, color="black", linewidth=0.8, linestyle="--")
    labels = [f"dev {r['device']} ({r['status']})" if label_status else f"dev {r['device']}" for r in shown]
    ax.set_yticks(range(len(shown)), labels, fontsize=fontsize)
    ax.invert_yaxis()
    return len(shown)


def _phase_legend_handles() -> list[Any]:
    from matplotlib.patches import Rectangle

    return [Rectangle((0, 0), 1, 1, color=c) for c in PHASE_COLORS.values()]


def plot_gantt(report: RoundReport, path: Path, max_devices: int = 60) -> None:
    """Draw the round as a Gantt chart (one row per device with a job) and save it as a PNG atomically.

    Bars are clipped to the round's end; a cross marks where a dropped or failed device stopped.
    """
    plt = _pyplot()
    records = [r for r in timeline_records(report) if r["status"] != "idle"]
    rows = min(len(records), max_devices)
    fig, ax = plt.subplots(figsize=(9, 0.3 * max(rows, 4) + 1.5))
    try:
        shown = draw_gantt(ax, records, end_s=report.end_time_s, max_devices=max_devices, label_status=True)
        ax.set_xlabel("simulated time (s); x = dropped or failed, dashed = round end")
        more = f", first {shown} of {len(records)} devices" if len(records) > shown else ""
        ax.set_title(
            f"round {report.round_index + 1} ({report.protocol}{more}): {report.round_latency_s:.3f} s"
        )
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8)
        fig.tight_layout()
        with replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def plot_gantt_side_by_side(
    records_by_agent: Mapping[str, Sequence[Mapping[str, Any]]],
    title: str,
    path: Path,
    max_devices: int = 40,
    max_height_in: float = 24.0,
) -> None:
    """One Gantt panel per agent for the same round and seed (same channel realisation), as a PNG.

    Each panel has its own time axis (one agent's round can be 100x another's) and the figure is at
    most ``max_height_in`` inches tall (rows per panel shrink to fit).

    Args:
        records_by_agent: ``{agent: timeline records of one round}`` (see
            :func:`fedsimenv.sim.timeline.timeline_records`).
        title: Figure title.
        path: Output PNG (written atomically).
        max_devices: Rows drawn per panel at most.
    """
    plt = _pyplot()
    panels = max(len(records_by_agent), 1)
    # rows per panel so that the figure stays within the height cap (at least 8 rows each)
    fit = int(((max_height_in - 0.8) / panels - 1.3) / 0.22)
    max_devices = max(8, min(max_devices, fit))
    rows = max([min(len(r), max_devices) for r in records_by_agent.values()] + [4])
    height = min((0.22 * rows + 1.3) * panels + 0.8, max_height_in)
    fig, axes = plt.subplots(panels, 1, figsize=(9, height), squeeze=False, sharex=False)
    try:
        for ax, (agent, records) in zip(axes[:, 0], records_by_agent.items(), strict=True):
            shown = draw_gantt(ax, records, max_devices=max_devices, fontsize=6)
            more = f", first {shown} shown" if len(records) > shown else ""
            ax.set_title(f"{agent}: {len(records)} devices{more}", fontsize=9)
            ax.set_xlabel("simulated time (s)", fontsize=7)
        fig.legend(_phase_legend_handles(), list(PHASE_COLORS), loc="lower center", ncol=3, fontsize=8)
        axes[-1, 0].set_xlabel("simulated time (s); x = dropped or failed", fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        with replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
