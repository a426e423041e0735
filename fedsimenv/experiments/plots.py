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


def plot_accuracy_curves(
    runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
    x_key: str,
    xlabel: str,
    path: Path,
    target_accuracy: float | None = None,
) -> None:
    """Accuracy against a cumulative quantity (``sim_time_s``, ``energy_j``); one line per seed.

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
    for index, (agent, seeds) in enumerate(runs.items()):
        color = colors[index % len(colors)]
        for seed_index, rows in enumerate(seeds):
            # Start at the origin of the episode (x = 0) so curves are comparable from the first round.
            x = [0.0, *(float(r[x_key]) for r in rows)]
            y = [np.nan, *(float(r["accuracy"]) for r in rows)]
            ax.plot(x, y, color=color, alpha=0.85, linewidth=1.2, label=agent if seed_index == 0 else None)
    if target_accuracy is not None:
        ax.axhline(target_accuracy, color="black", linestyle="--", linewidth=0.8, label="target")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def plot_distributions(
    values: Mapping[str, NDArray[np.float64]], ylabel: str, title: str, path: Path
) -> None:
    """Box plots, one per agent, of a per-device-and-round quantity (rho, bandwidth)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(values) + 2), 4.5))
    names = list(values)
    data = [np.asarray(values[n], dtype=np.float64) if len(values[n]) else np.array([np.nan]) for n in names]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
