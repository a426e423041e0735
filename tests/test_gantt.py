"""fedsimenv.gantt: the one Gantt drawer, checked on hand-made timeline records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from fedsimenv.gantt import PHASE_COLORS, draw_gantt, plot_gantt_side_by_side


def _record(device: int, status: str, stop_s: float | None, times: list[float | None]) -> dict[str, Any]:
    names = ("download", "compute", "upload")
    phases = {name: {"start_s": times[2 * i], "finish_s": times[2 * i + 1]} for i, name in enumerate(names)}
    return {"round": 0, "device": device, "status": status, "stop_s": stop_s, "phases": phases}


RECORDS = [
    # arrived: all three phases, nothing clipped
    _record(0, "arrived", 3.0, [0.0, 1.0, 1.0, 2.0, 2.0, 3.0]),
    # dropped during compute at 1.5 s: compute clipped, upload never drawn
    _record(1, "dropped", 1.5, [0.0, 0.5, 0.5, 2.5, 2.5, 4.0]),
    # still in flight (no stop): the upload is clipped at the round end 4.0 s
    _record(2, "in_flight", None, [0.0, 1.0, 1.0, 3.0, 3.0, 6.0]),
    # failed after the round end: clipped at the end, the cross at the end
    _record(3, "failed", 5.0, [0.0, 2.0, 2.0, 4.5, None, None]),
]
END_S = 4.0

# (row, phase, x, width) expected, in drawing order
EXPECTED_BARS = [
    (0, "download", 0.0, 1.0),
    (0, "compute", 1.0, 1.0),
    (0, "upload", 2.0, 1.0),
    (1, "download", 0.0, 0.5),
    (1, "compute", 0.5, 1.0),
    (2, "download", 0.0, 1.0),
    (2, "compute", 1.0, 2.0),
    (2, "upload", 3.0, 1.0),
    (3, "download", 0.0, 2.0),
    (3, "compute", 2.0, 2.0),
]


def _axes() -> Any:
    return Figure().subplots()


def test_draw_gantt_bars_are_the_phase_intervals_clipped_at_stop_and_round_end() -> None:
    ax = _axes()
    rows = draw_gantt(ax, RECORDS, end_s=END_S, label_status=True)
    assert rows == 4
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == len(EXPECTED_BARS)
    for bar, (row, phase, x, width) in zip(bars, EXPECTED_BARS, strict=True):
        assert bar.get_x() == pytest.approx(x)
        assert bar.get_width() == pytest.approx(width)
        assert bar.get_y() + bar.get_height() / 2 == pytest.approx(row)
        assert bar.get_facecolor() == pytest.approx(to_rgba(PHASE_COLORS[phase]))
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "dev 0 (arrived)",
        "dev 1 (dropped)",
        "dev 2 (in_flight)",
        "dev 3 (failed)",
    ]
    assert ax.yaxis_inverted()


def test_draw_gantt_marks_dropped_and_failed_devices_and_the_round_end() -> None:
    ax = _axes()
    draw_gantt(ax, RECORDS, end_s=END_S)
    lines: list[Line2D] = list(ax.lines)
    crosses = [
        (np.asarray(ln.get_xdata()).tolist(), np.asarray(ln.get_ydata()).tolist(), ln.get_color())
        for ln in lines
        if ln.get_marker() == "x"
    ]
    assert crosses == [([1.5], [1], "red"), ([END_S], [3], "red")]
    dashed = [ln for ln in lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.asarray(dashed[0].get_xdata()).tolist() == [END_S, END_S]


def test_draw_gantt_without_round_end_clips_at_stop_only_and_caps_rows() -> None:
    ax = _axes()
    rows = draw_gantt(ax, RECORDS, max_devices=3)
    assert rows == 3
    widths = [round(p.get_width(), 9) for p in ax.patches if isinstance(p, Rectangle)]
    assert widths == [1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 2.0, 3.0]  # dev 2's upload runs to 6.0 s
    assert not [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dev 0", "dev 1", "dev 2"]


def test_plot_gantt_side_by_side_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "gantt.png"
    plot_gantt_side_by_side({"a": RECORDS, "b": RECORDS[:2]}, "round 1", path)
    assert path.read_bytes().startswith(b"\x89PNG")
