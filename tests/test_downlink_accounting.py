"""Honest downlink accounting: a device given a model of its own (a server-pruned sub-model or sparse
model) downloads only that model, and the simulator times each device's own download."""

from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import make_simulator, workload

from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.types import RoundDecision


def _trainer(pruning: str) -> TorchTrainer:
    config = load_scenario("tiny", {"learning.pruning": pruning}).learning
    trainer = TorchTrainer(config, 10)
    trainer.reset(EpisodeStreams(np.random.SeedSequence(0)))
    return trainer


def test_heterofl_quarter_width_device_downloads_a_sixteenth_of_the_conv_weights() -> None:
    trainer = _trainer("width")
    # small-cnn on 8x8 digits, by hand: conv1 16x1x3x3 + 16, conv2 32x16x3x3 + 32, linear 512x10 + 10.
    full = {"conv1": 16 * 9 + 16, "conv2": 32 * 16 * 9 + 32, "linear": 512 * 10 + 10}
    assert trainer.total_params == sum(full.values()) == 9930
    # Width 1/4: conv1 4 filters (its 1 input channel stays), conv2 8 x 4 inputs, linear 8 x 16 inputs.
    quarter = {"conv1": 4 * 9 + 4, "conv2": 8 * 4 * 9 + 8, "linear": 8 * 16 * 10 + 10}
    rho = 1 - sum(quarter.values()) / trainer.total_params
    job = trainer.plan_round({3: rho, 4: 0.0}).jobs
    cost = job[3].cost
    assert cost.kept_params == sum(quarter.values())
    assert cost.download_bits == sum(quarter.values()) * 32  # structured: no index overhead
    masks = job[3].masks
    conv2 = next(n for n, m in masks.items() if m.dim() == 4 and m.shape[0] == 32)
    assert int(masks[conv2].sum()) * 16 == masks[conv2].numel()  # exactly 1/16 of conv2's weights
    conv_kept = quarter["conv1"] + quarter["conv2"]
    assert conv_kept / (full["conv1"] + full["conv2"]) == pytest.approx(1 / 16, rel=0.15)
    # An unpruned device downloads the full model (the trainer's broadcast size).
    assert job[4].cost.download_bits is None
    assert trainer.download_bits() == 9930 * 32


def test_sparse_server_masks_download_with_their_mask_and_device_criteria_the_full_model() -> None:
    magnitude = _trainer("magnitude").plan_round({1: 0.5}).jobs[1].cost
    assert magnitude.download_bits == magnitude.upload_bits  # kept x 32 + one mask bit per weight
    # SNIP ranks with the device's own data: the device needs the whole model to compute its mask.
    assert _trainer("snip").plan_round({1: 0.5}).jobs[1].cost.download_bits is None


def test_simulator_times_each_devices_own_download() -> None:
    sim = make_simulator([1e9, 1e9, 1e9])
    load = workload([1e9, 1e9, 1e9], [1e6, 1e6, 1e6])
    load = type(load)(
        forward_flops_per_sample=load.forward_flops_per_sample,
        upload_bits=load.upload_bits,
        download_bits=np.array([4e6, 1e6, 0.0]),
        num_samples=load.num_samples,
        local_epochs=1,
    )
    decision = RoundDecision(np.ones(3, bool), np.zeros(3), np.full(3, 1e6))
    report = sim.run_round(decision, load)
    rate = sim._downlink_rate_bps
    took = report.download_finish_s - report.download_start_s
    np.testing.assert_allclose(took, [4e6 / rate, 1e6 / rate, 0.0])
    # Each device computes (1 s: 1e9 training FLOPs at 1 GHz, 1 FLOP a cycle) right after its download.
    np.testing.assert_allclose(report.compute_finish_s - report.download_finish_s, 1.0)
