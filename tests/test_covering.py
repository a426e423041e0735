"""The covering index (CoRR 2022 unifying framework) on hand-made masks, and its metrics.jsonl column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedsimenv.cli import main
from fedsimenv.learning.covering import covering_counts, covering_index


def _t(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def test_hand_made_masks() -> None:
    # A model of 10 parameters: "a" (4 entries, masked), "b" (3, masked by one device), 3 never masked.
    masks = [
        {"a": _t(1, 1, 0, 0), "b": _t(1, 0, 0)},
        {"a": _t(1, 0, 1, 0)},
        {"a": _t(1, 1, 1, 0)},
    ]
    counts = covering_counts(masks)
    assert counts["a"].tolist() == [3, 2, 2, 0]
    assert counts["b"].tolist() == [3, 2, 2]  # devices 2 and 3 keep "b" whole
    minimum, mean = covering_index(masks, total_params=10)
    assert minimum == 0  # a[3] is kept by nobody
    # (3 + 2 + 2 + 0) + (3 + 2 + 2) + 3 * 3 unmasked = 23 over 10 parameters.
    assert mean == pytest.approx(2.3)


def test_full_coverage_and_edge_cases() -> None:
    assert covering_index([{}, {}], total_params=5) == (2, 2.0)
    assert covering_index([], total_params=5) == (0, 0.0)
    # Every parameter masked: the minimum is over masked entries only.
    assert covering_index([{"w": _t(1, 1)}, {"w": _t(0, 1)}], total_params=2) == (1, 1.5)
    with pytest.raises(ValueError, match="shapes"):
        covering_index([{"w": _t(1, 1)}, {"w": _t(1, 1, 1)}], total_params=10)
    with pytest.raises(ValueError, match="parameters"):
        covering_index([{"w": _t(1, 1, 1)}], total_params=2)


def test_metrics_jsonl_logs_the_covering_index(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "tiny", "--agent", "random", "--rounds", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        # Magnitude masks differ per device: some parameters are kept by fewer than all arrived.
        assert 0 <= row["min_covering"] <= row["mean_covering"] <= row["num_arrived"]
        assert row["min_covering"] < row["num_arrived"]


def test_parameters_no_started_device_keeps_are_left_out() -> None:
    # Three devices started with a shared pruned entry w[2]; device 3 did not arrive.
    planned = [{"w": _t(1, 1, 0, 1)}, {"w": _t(1, 0, 0, 1)}, {"w": _t(0, 1, 0, 0)}]
    arrived = planned[:2]
    # Over w[0], w[1], w[3] (w[2] is out of the model) and 2 unmasked parameters:
    # counts 2, 1, 2 and 2, 2 -> min 1, mean 9 / 5.
    assert covering_index(arrived, total_params=6, planned=planned) == pytest.approx((1, 9 / 5))
    # Without the planned masks w[2] counts as covered by nobody.
    assert covering_index(arrived, total_params=6) == pytest.approx((0, 9 / 6))
    # An entry kept only by the device that did not arrive counts 0.
    first, second = {"w": _t(1, 0, 0, 0)}, {"w": _t(0, 1, 0, 0)}
    assert covering_index([first], 4, planned=[first, second]) == pytest.approx((0, 1 / 2))
