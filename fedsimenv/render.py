"""``render_mode="rgb_array"``: the cell (devices coloured by selection and pruning) and the last
round's timeline, drawn with matplotlib's Agg canvas (no display, no pyplot global state)."""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Circle
from numpy.typing import NDArray

from fedsimenv.gantt import draw_gantt
from fedsimenv.sim import RoundReport
from fedsimenv.sim.timeline import timeline_records

#: Frame size in pixels (width, height) at the default dpi.
FRAME_SIZE_PX = (960, 420)
_DPI = 80


def render_frame(
    position_m: NDArray[np.float64],
    radius_m: float,
    report: RoundReport | None,
    rho_max: float,
    title: str,
    max_timeline_devices: int = 40,
) -> NDArray[np.uint8]:
    """An (H, W, 3) uint8 frame.

    Left: the cell, base station at the centre; grey = not selected last round, colour = pruning rate
    of a selected device (viridis over [0, rho_max]), red edge = selected but its update was lost.
    Right: the last round's download/compute/upload bars per device with a job (empty before the
    first round).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = FRAME_SIZE_PX
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    canvas = FigureCanvasAgg(fig)
    cell, timeline = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})

    n = len(position_m)
    selected = report.selected if report is not None else np.zeros(n, dtype=bool)
    lost = selected & ~report.arrived if report is not None else np.zeros(n, dtype=bool)
    rho = report.pruning_rate if report is not None else np.zeros(n)
    cell.add_patch(_circle(radius_m))
    cell.plot([0.0], [0.0], marker="^", color="black", markersize=10)
    idle = ~selected
    cell.scatter(position_m[idle, 0], position_m[idle, 1], s=18, color="#c8c8c8", edgecolors="#909090")
    if selected.any():
        points = cell.scatter(
            position_m[selected, 0],
            position_m[selected, 1],
            s=36,
            c=rho[selected],
            cmap="viridis",
            vmin=0.0,
            vmax=max(rho_max, 1e-9),
            edgecolors=np.where(lost[selected], "red", "black"),
        )
        fig.colorbar(points, ax=cell, fraction=0.046, pad=0.04, label="pruning rate")
    cell.set_xlim(-1.05 * radius_m, 1.05 * radius_m)
    cell.set_ylim(-1.05 * radius_m, 1.05 * radius_m)
    cell.set_aspect("equal")
    cell.set_title(title, fontsize=9)
    cell.tick_params(labelsize=7)

    if report is not None:
        draw_gantt(
            timeline,
            timeline_records(report),
            end_s=report.end_time_s,
            max_devices=max_timeline_devices,
            fontsize=6,
        )
        timeline.set_title(
            f"round {report.round_index + 1}: {report.round_latency_s:.3f} s "
            "(grey download, blue compute, orange upload)",
            fontsize=9,
        )
    timeline.set_xlabel("simulated time (s)", fontsize=8)
    timeline.tick_params(labelsize=7)
    fig.tight_layout()
    canvas.draw()  # type: ignore[no-untyped-call]
    frame = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()  # type: ignore[no-untyped-call]
    return frame


def _circle(radius_m: float) -> Circle:
    return Circle((0.0, 0.0), radius_m, fill=False, linestyle="--", color="#606060")
