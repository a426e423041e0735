"""bench.env_steps --phases: the work a real-training step records and the compute floor from it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from bench.env_steps import phase_breakdown, print_floor

#: Small CNN on 8x8 digits, forward FLOPs per sample, by hand: conv1 1->16 and conv2 16->32 (3x3, 64
#: positions) and linear 512->10 at 2 FLOPs per MAC, plus one add per bias entry and position.
SMALL_CNN_FORWARD = 2 * (16 * 9 * 64 + 32 * 16 * 9 * 64 + 512 * 10) + 16 * 64 + 32 * 64 + 10


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_phases_record_each_local_training_and_the_floor_follows_from_the_flops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = 2
    per_step_ms, phases, work, env = phase_breakdown(steps)
    trainer = env.trainer
    sizes = set(int(n) for n in trainer.num_samples)
    epochs = env.config.learning.local_epochs
    # Every recorded job is one device's whole local training: its samples times the epochs.
    assert work.jobs and all(samples % epochs == 0 and samples // epochs in sizes for samples, _ in work.jobs)
    assert work.test_samples == steps * len(trainer._test_y)  # type: ignore[attr-defined]
    assert per_step_ms > 0 and phases["  local training (forward/backward/optimizer)"] > 0
    best = print_floor(per_step_ms, phases, work, env, steps, peak_gflops=100.0)
    train_samples = sum(samples for samples, _ in work.jobs)
    flops_per_step = SMALL_CNN_FORWARD * (3 * train_samples + work.test_samples) / steps
    assert best == pytest.approx(100e9 / flops_per_step)
    printed = capsys.readouterr().out
    assert "compute floor" in printed and "target 40" in printed
