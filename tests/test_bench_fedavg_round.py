"""The FedAvg-round benchmark: its systems agree with each other, and its quick version runs.

Flower is not needed here (it lives in .venv-bench); its peer is exercised by the benchmark itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench import fedavg_flower, fedavg_paired, fedavg_results, fedavg_round, fedavg_systems
from bench.compute import ComputeFloor
from bench.fedavg_paired import FLOWER_CONFIGS, ProcessRun
from bench.fedavg_round import SECTION, collect
from bench.fedavg_systems import BATCHED, PLAIN, BatchedSystem, FloorRun, PlainLoopSystem, SystemRun
from bench.fedavg_workload import build_workload, client_order, round_flops
from bench.memory import TreeMemory, TreeMemorySampler
from bench.report import figure


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


def test_fedavg_round_keeps_its_probe_flag_in_process(tmp_path: Path) -> None:
    # The hidden `--probe` of `python -m bench.fedavg_round` does what the probe's own process does.
    assert fedavg_round.main(["--probe", "none", "--clients", "3", "--json", str(tmp_path / "p.json")]) == 0
    result = json.loads((tmp_path / "p.json").read_text())
    assert math.isnan(result["first_round_s"]) and result["peak_rss_mib"] > 50


def _process_run(round_ms: float, wall_s: float, run: SystemRun) -> ProcessRun:
    return ProcessRun(
        wall_s,
        wall_s / 2,
        dataclasses.replace(run, round_ms=(round_ms,)),
        0.5,
        TreeMemory(300.0, 250.0, 3, 10),
    )


def test_process_ratios_are_formed_pair_by_pair(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Every system as a whole process, A B A B: each ratio's samples are the per-pair quotients.
    out = fedavg_results.SectionResults()
    measured = fedavg_round._measure_in_process(4, 3, out)
    batched = measured.runs[BATCHED]
    rounds = {BATCHED: [10.0, 20.0], PLAIN: [60.0, 80.0], **{key: [400.0, 1000.0] for key in FLOWER_CONFIGS}}
    fake = {name: [_process_run(ms, 3 * ms, batched) for ms in values] for name, values in rounds.items()}
    monkeypatch.setattr(fedavg_round, "run_pairs", lambda systems, *args: {s: fake[s] for s in systems})
    fedavg_round._measure_processes(4, 3, 2, True, tmp_path, measured, out)
    fedavg_results._add_figures(4, measured, out)
    process_ratios = [r for r in out.ratios if "processes A B A B" in r.name]
    assert len(process_ratios) == 3
    for ratio in out.ratios:
        assert ratio.is_paired and ratio.numerator in out.figures and ratio.denominator in out.figures
    assert process_ratios[0].samples == (6.0, 4.0)  # plain loop: 60 / 10 and 80 / 20, not 70 / 15
    assert process_ratios[1].samples == (40.0, 50.0)
    wall = [r for r in out.ratios if r.name.startswith("whole process")]
    assert [r.samples for r in wall] == [(6.0, 4.0), (40.0, 50.0), (40.0, 50.0)]
    assert measured.startup_s[PLAIN] == 0.5 and ": agree" in out.notes[-1]


def test_pairs_alternate_the_order_of_the_systems(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[str] = []

    def fake_run(name: str, *args: object) -> str:
        calls.append(name)
        return name

    monkeypatch.setattr(fedavg_paired, "run_system", fake_run)
    runs = fedavg_paired.run_pairs(["A", "B", "C"], 4, 3, 3, tmp_path)
    assert calls == ["A", "B", "C", "C", "B", "A", "A", "B", "C"]
    assert list(runs) == ["A", "B", "C"] and all(runs[name] == [name] * 3 for name in runs)  # type: ignore[comparison-overlap]
    with pytest.raises(ValueError, match="pairs"):
        fedavg_paired.run_pairs(["A"], 4, 3, 0, tmp_path)


def test_a_system_process_is_timed_from_outside_and_returns_its_weights(tmp_path: Path) -> None:
    result = fedavg_paired.run_in_process_system(BATCHED, 4, 2, tmp_path)
    assert len(result.run.round_ms) == 1 and len(result.run.accuracies) == 2  # one warm-up round
    assert result.wall_s > result.run.round_ms[0] / 1e3 and result.cpu_s > 0
    reference = BatchedSystem(build_workload(4, fedavg_systems.SEED), rounds=2)
    reference.run_round(0)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(result.run.first_state[key], value, rtol=0, atol=0)


def _one_round(system: PlainLoopSystem) -> SystemRun:
    accuracy = system.run_round(0)
    state = {k: v.clone() for k, v in system.model.state_dict().items()}
    return SystemRun((1.0,), (accuracy,), state, state)


def test_agreement_check_flags_a_workload_that_differs_by_one_client_order() -> None:
    workload = build_workload(num_clients=10, seed=0)
    same, changed = PlainLoopSystem(workload, rounds=1), PlainLoopSystem(workload, rounds=1)
    changed.orders[0][0] = changed.orders[0][0].flip(0)  # one client visits its samples backwards
    reference = _one_round(PlainLoopSystem(workload, rounds=1))
    note, ok = fedavg_results._agreement(10, {PLAIN: reference, BATCHED: _one_round(same)})
    assert ok and note.endswith("agree")
    note, ok = fedavg_results._agreement(10, {PLAIN: reference, BATCHED: _one_round(changed)})
    assert not ok and "MISMATCH" in note


def test_compute_floor_counts_the_round_s_flops_by_hand_and_judges_the_targets() -> None:
    # Small CNN on 8x8 digits, per sample forward: conv1 1->16 3x3 and conv2 16->32 3x3 at 64
    # positions, linear 512->10; 2 FLOPs per MAC plus one add per bias entry and position.
    forward = 2 * (16 * 9 * 64 + 32 * 16 * 9 * 64 + 512 * 10) + 16 * 64 + 32 * 64 + 10
    workload = build_workload(50)
    flops = round_flops(workload)
    assert flops == 3 * forward * sum(workload.num_samples) + forward * len(workload.test_y)
    floor = ComputeFloor(flops=2e9, peak_gflops=100.0)
    assert floor.seconds == pytest.approx(0.02) and floor.best_ratio(0.1) == pytest.approx(5.0)
    assert "UNREACHABLE" in floor.verdict("x", 5.0, 6.0) and "within" in floor.verdict("x", 7.0, 6.0)
    # Plain loop 100 ms and Flower 1,000 ms per round over a 20 ms floor: at most 5x and 50x.
    out = fedavg_results.SectionResults()
    dummy = SystemRun((10.0,), (0.5,), {}, {})
    measured = fedavg_results.Measured({BATCHED: dummy, PLAIN: dummy}, {})
    measured.process_rounds = {"Flower (num_cpus=1)": figure(SECTION, "flower", "ms/round", [1000.0])}
    out.figures += measured.process_rounds.values()  # as _measure_processes reports it
    run = FloorRun(2e9, (100.0, 50.0), {BATCHED: (25.0, 60.0), PLAIN: (100.0, 200.0)})
    assert run.floor_ms == pytest.approx((20.0, 40.0))
    fedavg_results._add_floor(50, run, measured, out)
    # batched / floor and plain / floor pair each round with the peak sample taken just before it.
    assert [(r.samples, r.target, r.is_paired) for r in out.ratios] == [
        ((1.25, 1.5), None, True),
        ((5.0, 5.0), 6.0, True),
        ((1000.0 / 30.0,), 30.0, False),  # Flower: ratio of medians (floor median 30 ms)
    ]
    assert all(r.numerator in out.figures and r.denominator in out.figures for r in out.ratios)
    assert "UNREACHABLE" in out.notes[0] and "within" in out.notes[1]
