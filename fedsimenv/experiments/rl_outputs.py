"""What ``fedsimenv train`` writes besides the policies: ``train.json``, ``config.yaml``, the curves'
CSV files and the learning-curve plot (surrogate episode returns beside the real-training
evaluations and the reference agents' returns), each written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsimenv.atomic import replacing, write_text_atomic
from fedsimenv.config import ScenarioConfig
from fedsimenv.scenario import dump_scenario

if TYPE_CHECKING:
    from fedsimenv.experiments.rl_settings import TrainSettings


def write_outputs(
    out_dir: Path,
    meta: dict[str, Any],
    train_config: ScenarioConfig,
    settings: TrainSettings,
    curve: list[dict[str, float]],
    evaluations: list[dict[str, Any]],
    references: dict[str, dict[str, Any]],
) -> None:
    """train.json, config.yaml, the curves' CSV files and the learning-curve plot (atomically)."""
    config = train_config
    write_text_atomic(out_dir / "train.json", json.dumps(meta, indent=1) + "\n")
    if (out_dir / "checkpoints").is_dir():  # so that ppo:DIR/checkpoints/step_K.zip replays too
        write_text_atomic(out_dir / "checkpoints" / "train.json", json.dumps(meta, indent=1) + "\n")
    write_text_atomic(
        out_dir / "config.yaml", dump_scenario(train_config.model_copy(update={"seed": settings.seed}))
    )
    write_text_atomic(
        out_dir / "learning_curve.csv", _csv(curve, ["episode", "timesteps", "return", "length"])
    )
    eval_fields = [
        "timesteps",
        "wall_s",
        "return",
        "final_accuracy",
        "reached",
        "episodes",
        "time_to_target_s",
    ]
    write_text_atomic(
        out_dir / "evaluations.csv",
        _csv(evaluations, [*eval_fields, "mean_selected", "mean_rho", "kl_to_clone"]),
    )
    title = f"{settings.algo.upper()}/{settings.policy} on {config.name}: reward {train_config.reward.name}"
    _plot_curve(
        curve,
        evaluations,
        references,
        out_dir / "learning_curve.png",
        title,
        train_config.trainer,
        settings.eval_trainer,
    )


def summary_line(row: dict[str, Any]) -> str:
    """One line of an evaluation summary (:func:`fedsimenv.experiments.rl_eval.summarise`)."""
    time_s = row.get("time_to_target_s")
    return (
        f"return {row['return']:.3f}, final accuracy {row['final_accuracy']:.4f}, target reached "
        f"{row['reached']}/{row['episodes']}, time to target "
        f"{'never' if time_s is None else f'{time_s:.3f} s'}, mean selected {row['mean_selected']:.1f}, "
        f"mean rho {row['mean_rho']:.2f}"
        + (f", KL to the cloned start {row['kl_to_clone']:.3f}" if "kl_to_clone" in row else "")
    )


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plot_curve(
    curve: list[dict[str, float]],
    evaluations: list[dict[str, Any]],
    references: dict[str, dict[str, Any]],
    path: Path,
    title: str,
    trainer: str,
    eval_trainer: str,
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if curve:
        steps = np.array([row["timesteps"] for row in curve])
        returns = np.array([row["return"] for row in curve])
        ax.plot(steps, returns, ".", alpha=0.15, color="tab:blue", label=f"episode return ({trainer})")
        window = max(1, len(returns) // 20)
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"mean of {window} ({trainer})")
    if evaluations:
        ax.plot(
            [e["timesteps"] for e in evaluations],
            [e["return"] for e in evaluations],
            "o-",
            color="tab:red",
            label=f"policy evaluated on {eval_trainer} training",
        )
    for i, (name, ref) in enumerate(references.items()):
        ax.axhline(ref["return"], ls="--", lw=1, color=f"C{i + 2}", label=f"{name} ({eval_trainer})")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("timesteps (rounds)")
    ax.set_ylabel("episode return")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with replacing(path, ".png") as tmp:
        fig.savefig(tmp)
