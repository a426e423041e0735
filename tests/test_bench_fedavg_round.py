"""The FedAvg-round benchmark: its systems agree with each other, and its quick version runs.

Flower is not needed here (it lives in .venv-bench); its peer is exercised by the benchmark itself.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench import fedavg_flower, fedavg_round, fedavg_systems
from bench.fedavg_flower import FlowerRun
from bench.fedavg_round import SECTION, collect
from bench.fedavg_systems import BATCHED, PLAIN, BatchedSystem, PlainLoopSystem, SystemRun
from bench.fedavg_workload import build_workload, client_order
from bench.memory import TreeMemory, TreeMemorySampler


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Correctness, not speed: one thread keeps these tests fast when other processes load the machine
    # (two OpenMP threads then wait for each other, and a tiny round can take seconds).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_plain_loop_and_batched_give_the_same_global_weights_after_one_round() -> None:
    # Two independent implementations (torch.optim.SGD per client + a hand-written weighted mean, and
    # train_batched's grouped-layout cohort + fedsimenv's fedavg) from the same initial weights, data
    # and sample orders.
    workload = build_workload(num_clients=5, seed=3)
    plain, batched = PlainLoopSystem(workload, rounds=1), BatchedSystem(workload, rounds=1)
    initial = {k: v.clone() for k, v in plain.model.state_dict().items()}
    plain.run_round(0)
    batched.run_round(0)
    moved = max(float((plain.model.state_dict()[k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-2  # the round really trained
    for key, value in plain.model.state_dict().items():
        torch.testing.assert_close(batched.model.state_dict()[key], value, rtol=0, atol=1e-5)


def test_workload_is_reproducible_and_partitions_the_training_set() -> None:
    a, b = build_workload(7, seed=1), build_workload(7, seed=1)
    assert sum(a.num_samples) + len(a.test_y) == 1797  # digits, split into train and test
    assert max(a.num_samples) - min(a.num_samples) <= 1  # IID: near-equal parts
    for ma, mb in zip(a.initial_model().parameters(), b.initial_model().parameters(), strict=True):
        assert torch.equal(ma, mb)
    order = client_order(1, 2, 3, 40)
    assert torch.equal(order, client_order(1, 2, 3, 40))
    assert sorted(order.tolist()) == list(range(40))
    assert not torch.equal(order, client_order(1, 3, 3, 40))  # another round, another order


def test_quick_collect_runs_and_reports_positive_times_and_accuracies() -> None:
    figures, ratios, notes = collect(quick=True)
    assert figures and all(f.section == SECTION for f in figures)
    times = [f for f in figures if f.unit == "ms/round"]
    assert {f.name for f in times} == {f"round time: {BATCHED}, N=10", f"round time: {PLAIN}, N=10"}
    assert all(s > 0 for f in times for s in f.samples)
    accuracies = [f for f in figures if f.name.startswith("final accuracy")]
    assert len(accuracies) == 2 and all(0.0 <= f.median <= 1.0 for f in accuracies)
    assert [(r.paired, r.is_paired) for r in ratios] == [(True, True)]  # alternated round by round
    assert all(r.numerator in figures and r.denominator in figures for r in ratios)
    assert any("Flower skipped" in note for note in notes)
    assert any(": agree" in note for note in notes)


def test_flower_is_skipped_with_a_hint_when_the_bench_env_is_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(fedavg_flower, "BENCH_PYTHON", tmp_path / ".venv-bench" / "bin" / "python")
    monkeypatch.setattr(fedavg_flower, "REPO_ROOT", tmp_path)
    reason = fedavg_flower.flower_unavailable()
    assert reason is not None and "make bench-env" in reason and "\n" not in reason


def test_tree_memory_sampler_sees_a_child_allocation() -> None:
    # A child holding 150 MiB of touched memory: the tree's peak RSS must include it.
    code = "import time; b = bytearray(150 * 2**20); time.sleep(1.0)"
    process = subprocess.Popen([sys.executable, "-c", code])
    sampler = TreeMemorySampler(process.pid, period_s=0.05)
    sampler.start()
    process.wait(timeout=30)
    memory = sampler.stop()
    assert memory.samples > 0 and memory.max_processes >= 1
    assert 150 <= memory.peak_rss_mib < 400
    assert math.isfinite(memory.peak_pss_mib)


def test_probe_measures_a_fresh_process(tmp_path: Path) -> None:
    result = fedavg_systems.probe(BATCHED, 4, tmp_path)
    assert result.first_round_s > 0
    assert result.memory.peak_rss_mib > 50  # torch alone is more than that


def test_fedavg_round_keeps_its_probe_flag_in_process(tmp_path: Path) -> None:
    # The hidden `--probe` of `python -m bench.fedavg_round` does what the probe's own process does.
    assert fedavg_round.main(["--probe", "none", "--clients", "3", "--json", str(tmp_path / "p.json")]) == 0
    result = json.loads((tmp_path / "p.json").read_text())
    assert math.isnan(result["first_round_s"]) and result["peak_rss_mib"] > 50


def test_flower_ratios_are_ratios_of_medians_over_the_reported_batched_figure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Flower's rounds are as many as the batched ones but not alternated with them: never paired.
    out = fedavg_round.SectionResults()
    measured = fedavg_round._measure_in_process(4, 3, True, tmp_path, out)
    batched = measured.runs[BATCHED]
    info = {"flwr": "test", "ray": "test", "ray_num_cpus": 2, "client_torch_threads": 1}
    fake = FlowerRun(
        {
            **info,
            "accuracies": batched.accuracies,
            "round_ms": [500.0, 40.0, 60.0],
            "launch_to_first_round_end_s": 2.0,
        },
        TreeMemory(300.0, 250.0, 3, 10),
        batched.first_state,
        batched.final_state,
    )
    monkeypatch.setattr(fedavg_round, "run_flower", lambda *args: fake)
    fedavg_round._measure_flower(4, 3, tmp_path, measured, out)
    fedavg_round._add_figures(4, measured, out)
    flower = out.ratios[1:]
    assert [r.name for r in flower] == [f"{c} / fedsimenv batched, N=4" for c in fedavg_round.FLOWER_CONFIGS]
    for ratio in flower:
        assert ratio.paired is False and not ratio.is_paired
        assert ratio.denominator is measured.round_figures[BATCHED] and ratio.denominator in out.figures
        assert len(ratio.numerator.samples) == len(ratio.denominator.samples) == 2
        assert ratio.samples == (50.0 / ratio.denominator.median,)


def _one_round(system: PlainLoopSystem) -> SystemRun:
    accuracy = system.run_round(0)
    state = {k: v.clone() for k, v in system.model.state_dict().items()}
    return SystemRun((1.0,), (accuracy,), state, state)


def test_agreement_check_flags_a_workload_that_differs_by_one_client_order() -> None:
    workload = build_workload(num_clients=10, seed=0)
    same, changed = PlainLoopSystem(workload, rounds=1), PlainLoopSystem(workload, rounds=1)
    changed.orders[0][0] = changed.orders[0][0].flip(0)  # one client visits its samples backwards
    reference = _one_round(PlainLoopSystem(workload, rounds=1))
    note, ok = fedavg_round._agreement(10, {PLAIN: reference, BATCHED: _one_round(same)})
    assert ok and note.endswith("agree")
    note, ok = fedavg_round._agreement(10, {PLAIN: reference, BATCHED: _one_round(changed)})
    assert not ok and "MISMATCH" in note
