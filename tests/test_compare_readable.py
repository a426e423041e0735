"""Fair and readable comparisons: same model by default, agent notes, 1-based rounds, plot helpers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from agents.base import configure_for_agent, learning_changes
from fedsimenv.experiments.compare import learning_flags, summary_markdown
from fedsimenv.experiments.plots import seed_band, wide_spread
from fedsimenv.experiments.session import run_episode
from fedsimenv.experiments.summary import summarise_rows
from fedsimenv.gantt import plot_gantt_side_by_side
from fedsimenv.scenario import load_scenario


def test_same_model_withholds_the_model_but_keeps_the_algorithm() -> None:
    config = load_scenario("tiny")
    # DWNP switches to LayerNorm: withheld under same_model, applied without it
    assert configure_for_agent(config, "dwnp", same_model=True).learning.norm == config.learning.norm
    assert configure_for_agent(config, "dwnp").learning.norm == "layer"
    # FedMP's pruning and aggregation are its algorithm: applied either way
    fedmp = configure_for_agent(config, "fedmp", same_model=True).learning
    assert (fedmp.pruning, fedmp.aggregation) == ("l1-filter", "r2sp")
    assert learning_changes(config, "dwnp", same_model=True) == {
        "applied": {},
        "withheld": {"learning.norm": "layer"},
    }
    flags = learning_flags(config, ["optimal", "dwnp", "fedmp"], same_model=True)
    assert set(flags) == {"dwnp", "fedmp"} and "withheld" in flags["dwnp"]


def test_summary_counts_drops_fallbacks_and_weights_rho_by_selected_devices() -> None:
    rows = [
        {"round": 1, "accuracy": 0.5, "sim_time_s": 1.0, "energy_j": 1.0, "round_latency_s": 1.0,
         "num_selected": 4, "num_arrived": 3, "mean_rho": 0.5, "agent_note": ""},
        {"round": 2, "accuracy": 0.6, "sim_time_s": 2.0, "energy_j": 2.0, "round_latency_s": 1.0,
         "num_selected": 1, "num_arrived": 1, "mean_rho": 0.0, "agent_note": "fell back"},
    ]  # fmt: skip
    summary = summarise_rows(rows, None)
    # hand computation: (4 x 0.5 + 1 x 0.0) / 5 selected device-rounds
    assert summary["mean_rho"] == pytest.approx(0.4)
    assert summary["mean_dropped"] == pytest.approx(0.5)
    assert summary["note_rounds"] == 1 and summary["agent_notes"] == "fell back"
    text = summary_markdown(
        ["a"], [{"agent": "a", "status": "ok", **summary}], 0.9, {"a": "learning.norm=layer"}
    )
    assert "Agent fallbacks" in text and "fell back" in text and "learning.norm=layer" in text


def test_metrics_and_timeline_carry_one_based_rounds_and_the_agent_note(tmp_path: Path) -> None:
    config = load_scenario("tiny", {"trainer": "surrogate", "episode.max_rounds": 2})
    rows = run_episode(config, "optimal", 0, tmp_path / "run", timeline=True)
    assert [r["round"] for r in rows] == [1, 2]
    assert all("agent_note" in r and "num_dropped" in r for r in rows)
    records = [json.loads(line) for line in (tmp_path / "run" / "timeline.jsonl").read_text().splitlines()]
    assert {r["round"] for r in records} == {1, 2}
    # every timeline record of a round carries that round's note from metrics.jsonl
    assert all(r["agent_note"] == rows[r["round"] - 1]["agent_note"] for r in records)


def test_seed_band_is_the_mean_and_range_of_step_curves() -> None:
    seeds = [
        [{"t": 1.0, "accuracy": 0.2}, {"t": 2.0, "accuracy": 0.4}, {"t": 4.0, "accuracy": 0.8}],
        [{"t": 1.0, "accuracy": 0.4}, {"t": 3.0, "accuracy": 0.6}],
    ]
    x, mean, low, high = seed_band(seeds, "t", points=5)
    # common grid from 1 to the shortest end (3): at x = 3, seed 1 is at 0.4 (round 2), seed 2 at 0.6
    assert x[0] == 1.0 and x[-1] == pytest.approx(3.0)
    assert mean[-1] == pytest.approx(0.5) and low[-1] == 0.4 and high[-1] == 0.6
    assert mean[0] == pytest.approx(0.3)
    assert wide_spread([0.01, 1.0]) and not wide_spread([1.0, 10.0]) and not wide_spread([0.0, 5.0])


def test_side_by_side_gantt_respects_the_height_cap(tmp_path: Path) -> None:
    record = {
        "device": 0,
        "status": "arrived",
        "reason": "",
        "stop_s": 1.0,
        "phases": {
            "download": {"start_s": 0.0, "finish_s": 0.1},
            "compute": {"start_s": 0.1, "finish_s": 0.5},
            "upload": {"start_s": 0.5, "finish_s": 1.0},
        },
    }
    many = [{**record, "device": k} for k in range(30)]
    path = tmp_path / "g.png"
    plot_gantt_side_by_side({f"agent{i}": many for i in range(3)}, "t", path, max_height_in=8.0)
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # PNG IHDR
    assert height <= 8.0 * 110 + 1 and width > 0
    assert np.isfinite(height)
