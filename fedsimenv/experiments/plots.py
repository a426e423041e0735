"""Comparison plots (PNG, written atomically): accuracy curves and distributions (side-by-side Gantt
charts: :func:`fedsimenv.gantt.plot_gantt_side_by_side`).

Every function takes plain per-agent data (metric rows, arrays), so the plots can be
redrawn from the JSONL files of run directories without re-running anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedsimenv.atomic import replacing


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def save_figure_atomic(fig: Any, path: Path, dpi: int = 110) -> None:
    """Save ``fig`` as PNG via a temporary file and rename, then close it."""
    try:
        with replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        _pyplot().close(fig)


#: A positive axis spanning more than this ratio (max / min) is drawn on a log scale.
LOG_SPREAD = 30.0


def wide_spread(values: Sequence[float] | NDArray[np.float64]) -> bool:
    """Whether positive ``values`` span more than :data:`LOG_SPREAD` (max / min)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    return bool(v.size >= 2 and v.max() / v.min() > LOG_SPREAD)


def seed_band(
    seeds: Sequence[Sequence[Mapping[str, Any]]], x_key: str, points: int = 200
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Accuracy of each seed as a step function of the cumulative ``x_key`` (the accuracy after the
    last round that ended by x), on a common grid up to the shortest seed's end: ``(x, mean, low,
    high)`` over seeds (low/high = the range)."""
    ends = [float(rows[-1][x_key]) for rows in seeds if rows]
    starts = [float(rows[0][x_key]) for rows in seeds if rows]
    if not ends:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    lo, hi = min(starts), min(ends)
    grid = np.geomspace(lo, hi, points) if lo > 0 and hi > lo else np.linspace(lo, hi, points)
    curves = []
    for rows in seeds:
        xs = np.array([float(r[x_key]) for r in rows])
        ys = np.array([float(r["accuracy"]) for r in rows])
        index = np.searchsorted(xs, grid, side="right") - 1
        curves.append(np.where(index >= 0, ys[np.maximum(index, 0)], np.nan))
    stack = np.vstack(curves)
    with np.errstate(all="ignore"):
        return grid, np.nanmean(stack, axis=0), np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)


def plot_accuracy_curves(
    runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
    x_key: str,
    xlabel: str,
    path: Path,
    target_accuracy: float | None = None,
) -> None:
    """Accuracy against a cumulative quantity (``sim_time_s``, ``energy_j``): one colour per agent,
    the mean over seeds as a line and their range as a band (markers at each seed's rounds when
    there is one seed); log x axis when the agents' values span more than :data:`LOG_SPREAD`.

    Args:
        runs: ``{agent: [rows of seed 1, rows of seed 2, ...]}``.
        x_key: Metric row key for the x axis.
        xlabel: Axis label with unit.
        path: Output PNG.
        target_accuracy: Drawn as a dashed horizontal line when given.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_x = [float(r[x_key]) for seeds in runs.values() for rows in seeds for r in rows]
    for index, (agent, seeds) in enumerate(runs.items()):
        color = colors[index % len(colors)]
        seeds = [rows for rows in seeds if rows]
        if not seeds:
            continue
        if len(seeds) == 1:
            rows = seeds[0]
            ax.plot(
                [float(r[x_key]) for r in rows],
                [float(r["accuracy"]) for r in rows],
                color=color,
                linewidth=1.3,
                marker=".",
                markersize=3,
                label=agent,
            )
            continue
        grid, mean, low, high = seed_band(seeds, x_key)
        ax.plot(grid, mean, color=color, linewidth=1.4, label=f"{agent} (mean of {len(seeds)} seeds)")
        ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
    if target_accuracy is not None:
        ax.axhline(target_accuracy, color="black", linestyle="--", linewidth=0.8, label="target")
    if wide_spread(all_x):
        ax.set_xscale("log")
        xlabel += " (log scale)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def plot_distributions(
    values: Mapping[str, NDArray[np.float64]], ylabel: str, title: str, path: Path, log_if_wide: bool = True
) -> None:
    """Box plots, one per agent, of a per-device-and-round quantity (rho, bandwidth); the triangle is
    the mean over every selected device and round (the summary table's definition); log y axis when
    the values span more than :data:`LOG_SPREAD`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(values) + 2), 4.5))
    names = list(values)
    data = [np.asarray(values[n], dtype=np.float64) if len(values[n]) else np.array([np.nan]) for n in names]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    if log_if_wide and wide_spread(np.concatenate(data)):
        ax.set_yscale("log")
        ylabel += " (log scale)"
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
