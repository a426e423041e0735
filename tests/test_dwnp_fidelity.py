"""DWNP reproduction fidelity: Alg. 1's intra-round schedule and its traffic, the training recipe, the
TinyImageNet loader and top-5 accuracy, each against a hand-computed case."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from agents import AgentContext, configure_for_agent, make_agent
from agents.literature.common import StrategyAgent
from agents.literature.dwnp.interleave import (
    hn_averaged_steps,
    hn_state_bits,
    hn_step_iterations,
    hn_traffic_bits,
)
from agents.literature.dwnp.strategy import DWNPStrategy
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.aggregation import masked_fedavg
from fedsimenv.learning.cohort import draw_orders
from fedsimenv.learning.datasets import (
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetSpec,
    load_tiny_imagenet,
)
from fedsimenv.learning.local_sgd import (
    PeriodicAveraging,
    PeriodicFedAvg,
    PeriodicSGD,
    intra_round_syncs,
    sync_iterations,
    train_periodic,
)
from fedsimenv.learning.recipe import TrainingRecipe, random_crop_flip, scheduled_learning_rate
from fedsimenv.learning.topk import topk_accuracy, topk_correct
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.scenario import load_scenario

# -- Alg. 1's schedule -----------------------------------------------------------------------------


def test_w_is_averaged_every_r_w_iterations_before_the_devices_last() -> None:
    assert sync_iterations(12, 5) == [5, 10]
    assert sync_iterations(10, 5) == [5]  # k = 10 is the device's last: the round's own upload
    assert [intra_round_syncs(k, 5) for k in (1, 4, 5, 6, 10, 11, 46)] == [0, 0, 0, 1, 1, 2, 9]


def test_hn_steps_and_their_averagings_follow_alg_1() -> None:
    assert hn_step_iterations(46, 10) == [10, 20, 30, 40]
    assert hn_step_iterations(9, 10) == []
    # k_HN starts at 0 and the states are averaged when k_HN % r_theta == 0: 1st, 3rd, 5th step.
    assert hn_averaged_steps(5, 2) == [0, 2, 4]
    # 5 steps: 3 averagings (up + down each), no final upload (the last step was averaged), the
    # round's first download: 3 up, 4 down. 4 steps: 2 averagings + the final upload: 3 up, 3 down.
    assert hn_traffic_bits(50, 10, 2, 1.0) == (3.0, 4.0)
    assert hn_traffic_bits(40, 10, 2, 1.0) == (3.0, 3.0)
    assert hn_traffic_bits(9, 10, 2, 7.0) == (0.0, 0.0)


def _reference_periodic(
    start: nn.Linear,
    data: list[tuple[torch.Tensor, torch.Tensor]],
    sgd: PeriodicSGD,
    generator: torch.Generator,
) -> list[torch.Tensor]:
    """Alg. 1's weight part written out by hand for a bias-free linear model: per device, SGD with
    momentum and weight decay (buf = m buf + g + wd w; w -= lr buf); at k % r_W == 0 the devices with
    iterations left get the sample-weighted mean of their weights."""
    weights = [start.weight.detach().clone() for _ in data]
    buffers: list[torch.Tensor | None] = [None for _ in data]
    batches = []
    for x, _ in data:
        orders = draw_orders(len(x), 1, generator)
        batches.append([o[s : s + sgd.batch_size] for o in orders for s in range(0, len(o), sgd.batch_size)])
    counts = [len(b) for b in batches]
    for k in range(1, max(counts) + 1):
        for j, (x, y) in enumerate(data):
            if k > counts[j]:
                continue
            w = weights[j].clone().requires_grad_(True)
            index = batches[j][k - 1]
            loss = nn.functional.cross_entropy(x[index] @ w.T, y[index])
            (grad,) = torch.autograd.grad(loss, w)
            grad = grad + sgd.recipe.weight_decay * weights[j]
            previous = buffers[j]
            buffer = grad if previous is None else sgd.momentum * previous + grad
            buffers[j] = buffer
            weights[j] = weights[j] - sgd.learning_rate * buffer
        if k % sgd.r_w == 0:
            staying = [j for j in range(len(data)) if counts[j] > k]
            if staying:
                total = sum(len(data[j][1]) for j in staying)
                mean = torch.stack([len(data[j][1]) * weights[j] for j in staying]).sum(0) / total
                for j in staying:
                    weights[j] = mean.clone()
    return weights


def test_periodic_local_sgd_matches_the_hand_written_schedule() -> None:
    torch.manual_seed(0)  # test data only; the library draws from the generators passed in
    model = nn.Linear(3, 2, bias=False)
    data = [(torch.randn(n, 3), torch.randint(0, 2, (n,))) for n in (7, 12, 3)]
    sgd = PeriodicSGD(0.3, 0.9, 1, r_w=5, recipe=TrainingRecipe(weight_decay=0.01))
    syncs: list[tuple[int, bool]] = []

    def record(k: int, models: Sequence[nn.Module]) -> None:
        first, second = (m.state_dict()["weight"] for m in models[:2])
        syncs.append((k, bool(torch.equal(first, second))))

    states = train_periodic(
        model,
        data,
        [{}, {}, {}],
        [7.0, 12.0, 3.0],
        sgd,
        1,
        torch.Generator().manual_seed(4),
        masked_fedavg,
        record,
    )
    expected = _reference_periodic(model, data, sgd, torch.Generator().manual_seed(4))
    for state, weight in zip(states, expected, strict=True):
        torch.testing.assert_close(state["weight"], weight, rtol=1e-5, atol=1e-6)
    # Devices 0 and 1 hold the same weights right after k = 5 only (device 0 leaves after k = 7).
    assert [k for k, same in syncs if same] == [5]


def test_learning_rate_phases_restart_the_schedule() -> None:
    periodic = PeriodicAveraging(5, TrainingRecipe(lr_schedule="cosine")).with_phases(4, 2)
    # Phase 1 (4 rounds): 0.1 (1 + cos(pi t / 4)) / 2; phase 2 (2 rounds) restarts at 0.1.
    expected = [0.1, 0.0853553, 0.05, 0.0146447, 0.1, 0.05, 0.05]
    assert [periodic.learning_rate(0.1, r) for r in range(7)] == pytest.approx(expected, rel=1e-5)


def _dwnp_round(max_rounds: int) -> tuple[DWNPStrategy, TorchTrainer, WirelessFLEnv, StrategyAgent]:
    overrides = {"episode.max_rounds": max_rounds, "cell.num_devices": 5}
    env = WirelessFLEnv(configure_for_agent(load_scenario("tiny", overrides), "dwnp"))
    assert isinstance(env.action_space, spaces.Box) and isinstance(env.trainer, TorchTrainer)
    agent = make_agent("dwnp", AgentContext.from_scenario(env.config, env.action_space, env.system_view), 0)
    assert isinstance(agent, StrategyAgent)
    agent.bind(env)
    assert isinstance(agent.strategy, DWNPStrategy)
    return agent.strategy, env.trainer, env, agent


def test_dwnp_round_interleaves_hn_steps_and_charges_their_traffic() -> None:
    strategy, trainer, env, agent = _dwnp_round(2)  # 1 training round, the HN trains from round 0
    observation, info = env.reset(seed=0)
    # tiny, 5 devices, seed 0: 360, 329, 203, 302, 244 samples, batch 16, 2 local epochs.
    assert trainer.num_samples.tolist() == [360, 329, 203, 302, 244]
    iterations = [2 * math.ceil(n / 16) for n in trainer.num_samples]
    assert iterations == [46, 42, 26, 38, 32]
    assert strategy.periodic is not None and strategy.periodic.r_w == 5 and strategy.hn_trains_this_round
    plan = trainer.plan_round(dict.fromkeys(range(5), 0.0))  # rho = 0: no HN masks yet (agent.rates())
    unit = trainer.download_bits()  # dense before the HN's first step: the full model both ways
    hn_bits = 3 * sum(p.numel() for p in strategy.hn.parameters()) * 32
    assert hn_state_bits(strategy.hn, 32) == hn_bits
    # Device 0: K = 46 -> 9 intra-round W averagings (k = 5 .. 45) + the round's own transfer; HN
    # steps at k = 10, 20, 30, 40 (k_HN 0..3), averaged after k_HN 0 and 2, final upload after 3.
    assert plan.jobs[0].cost.upload_bits == 10 * unit + 3 * hn_bits
    assert plan.jobs[0].cost.download_bits == 10 * unit + 3 * hn_bits
    # Device 2: K = 26 -> 5 W averagings; HN steps at k = 10, 20 (averaged after the 1st only).
    assert plan.jobs[2].cost.upload_bits == 6 * unit + 2 * hn_bits
    assert plan.jobs[2].cost.download_bits == 6 * unit + 2 * hn_bits
    env.step(agent.act(observation, info))
    assert strategy.last_interleaving == [
        (10, 0, [0, 1, 2, 3, 4], True),
        (20, 1, [0, 1, 2, 3, 4], False),
        (30, 2, [0, 1, 3, 4], True),
        (40, 3, [0, 1], False),
    ]
    assert strategy.hn_steps_done == 4


def _round_states(
    method: str, rounds: int
) -> tuple[list[dict[str, torch.Tensor]], DWNPStrategy, TorchTrainer]:
    """The global weights after each of the first ``rounds`` rounds of ``method`` (tiny, 3 devices,
    one local epoch of batch 32 (K >= r_HN = 10), 6-round episode: 3 training rounds, the HN from
    round 0, Alg. 1 with r_W = 5), seed 0."""
    overrides = {
        "episode.max_rounds": 6,
        "cell.num_devices": 3,
        "learning.local_epochs": 1,
        "learning.batch_size": 32,
    }
    env = WirelessFLEnv(configure_for_agent(load_scenario("tiny", overrides), method))
    assert isinstance(env.action_space, spaces.Box) and isinstance(env.trainer, TorchTrainer)
    agent = make_agent(method, AgentContext.from_scenario(env.config, env.action_space, env.system_view), 0)
    assert isinstance(agent, StrategyAgent)
    agent.bind(env)
    assert isinstance(agent.strategy, DWNPStrategy)
    observation, info = env.reset(seed=0)
    states = []
    for _ in range(rounds):
        observation, _, _, _, info = env.step(agent.act(observation, info))
        states.append({k: v.clone() for k, v in env.trainer.model.state_dict().items()})
    return states, agent.strategy, env.trainer


def test_fedosp_and_dwnp_share_w_until_dwnp_trains_under_its_masks() -> None:
    # Regression guard for the exact fedosp/dwnp tie of the CPU table (seeds 0 and 1, 16 rounds):
    # it was a tie of per-device accuracies, not of models. Round 1: DWNP takes its HN steps inside
    # the round with W frozen and no masks yet, FedOSP trains dense without an HN, so W must be
    # bitwise the same (the HN steps touch neither W, its momentum nor the batch orders). Round 2:
    # DWNP trains under its HN's sub-networks, FedOSP still dense, so W must differ.
    osp, osp_strategy, _ = _round_states("fedosp", 2)
    dw, dw_strategy, trainer = _round_states("dwnp", 2)
    assert osp_strategy.hn_steps_done == 0 and dw_strategy.hn_steps_done > 0
    for name in osp[0]:
        assert torch.equal(osp[0][name], dw[0][name]), name
    assert dw_strategy.device_masks(trainer, 0), "DWNP trains under its sub-networks from round 2"
    assert any(not torch.equal(osp[1][name], dw[1][name]) for name in osp[1])


def test_async_protocol_is_refused_with_one_line_naming_the_field() -> None:
    # Alg. 1's in-round W / HN averaging (and every scheduled strategy) needs synchronous rounds.
    overrides = {"protocol.name": "async", "protocol.target_updates": 3, "cell.num_devices": 3}
    env = WirelessFLEnv(configure_for_agent(load_scenario("tiny", overrides), "dwnp"))
    assert isinstance(env.action_space, spaces.Box) and isinstance(env.trainer, TorchTrainer)
    agent = make_agent("dwnp", AgentContext.from_scenario(env.config, env.action_space, env.system_view), 0)
    assert isinstance(agent, StrategyAgent)
    expected = (
        "protocol.name: 'async' is not supported by DWNPAgent (its server-side strategy, e.g. DWNP's "
        "in-round r_W / r_HN averaging, needs synchronous rounds); allowed values: deadline, "
        "over-commit, synchronous"
    )
    with pytest.raises(ValueError) as error:
        agent.bind(env)
    assert str(error.value) == expected and env.trainer.strategy is None
    # A strategy installed directly (library use) is refused by the trainer at the first update.
    env.trainer.use_strategy(PeriodicFedAvg(PeriodicAveraging(5)))
    env.reset(seed=0)
    refused = r"PeriodicFedAvg .* needs synchronous rounds; protocol\.name 'async'"
    with pytest.raises(ValueError, match=refused):
        for _ in range(4):  # the first aggregation comes at the 3rd arrival
            env.step(np.ones(env.action_space.shape, dtype=np.float32))


# -- training recipe -------------------------------------------------------------------------------


def test_crop_flip_is_seeded_and_moves_pixels_as_drawn() -> None:
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4) + 1.0
    out = random_crop_flip(x, torch.Generator().manual_seed(3), padding=1)
    assert out.shape == x.shape
    assert torch.equal(out, random_crop_flip(x, torch.Generator().manual_seed(3), padding=1))
    draws = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 3, (2, 2), generator=draws)
    flips = torch.rand(2, generator=draws) < 0.5
    for b in range(2):
        padded = torch.zeros(1, 5, 6)
        padded[:, 1:4, 1:5] = x[b]
        r, c = int(offsets[b, 0]), int(offsets[b, 1])
        crop = padded[:, r : r + 3, c : c + 4]
        assert torch.equal(out[b], crop.flip(-1) if flips[b] else crop)
    seeds = [random_crop_flip(x, torch.Generator().manual_seed(s), padding=1) for s in range(8)]
    assert any(not torch.equal(seeds[0], other) for other in seeds[1:])


def test_horizontal_flip_by_hand() -> None:
    image = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])  # (1, 1, 2, 3)
    flipped = torch.tensor([[[[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]]])
    outcomes = {
        random_crop_flip(image, torch.Generator().manual_seed(s), padding=0).flatten().tolist().__str__()
        for s in range(20)
    }
    # Without padding the crop is the image: each draw is the image or its mirror, and both occur.
    assert outcomes == {str(image.flatten().tolist()), str(flipped.flatten().tolist())}


def test_learning_rate_schedules_by_hand() -> None:
    cosine = [scheduled_learning_rate(0.1, "cosine", t, 4) for t in range(4)]
    assert cosine == pytest.approx([0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])
    step = [scheduled_learning_rate(0.1, "step", t, 8) for t in range(8)]
    assert step == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    assert scheduled_learning_rate(0.1, "constant", 3, 4) == 0.1
    with pytest.raises(ValueError, match="lr_schedule 'linear' is unknown; allowed values"):
        TrainingRecipe(lr_schedule="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="augmentation"):
        TrainingRecipe(augmentation="mixup")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight_decay"):
        TrainingRecipe(weight_decay=-1.0)


# -- TinyImageNet and top-5 ------------------------------------------------------------------------


def _write_tiny_imagenet(root: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(0)
    images: dict[str, np.ndarray] = {}
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for c, wnid in enumerate(["n02", "n01"]):  # wnids.txt order, not sorted order
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", format="PNG")  # lossless
            images[f"train/{wnid}/{i}"] = pixels
        pixels = np.full((64, 64, 3), 10 * c, dtype=np.uint8)
        Image.fromarray(pixels).save(root / "val" / "images" / f"val_{c}.JPEG", format="PNG")
        lines.append(f"val_{c}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "wnids.txt").write_text("n02\nn01\n")
    return images


def test_tiny_imagenet_loader_reads_the_standard_layout(tmp_path: Path) -> None:
    images = _write_tiny_imagenet(tmp_path)
    train, test = load_tiny_imagenet(DatasetSpec(data_dir=tmp_path))
    assert test is not None
    assert train.x.shape == (4, 3, 64, 64) and train.y.tolist() == [0, 0, 1, 1] and train.num_classes == 2
    mean = np.array([0.4802, 0.4481, 0.3975], dtype=np.float32)[:, None, None]
    std = np.array([0.2302, 0.2265, 0.2262], dtype=np.float32)[:, None, None]
    expected = (images["train/n01/1"].transpose(2, 0, 1) / 255.0 - mean) / std
    np.testing.assert_allclose(train.x[3], expected, rtol=1e-5, atol=1e-5)
    assert test.y.tolist() == [0, 1]
    np.testing.assert_allclose(test.x[1, 0, 0, 0], (10 / 255.0 - 0.4802) / 0.2302, rtol=1e-5)


def test_tiny_imagenet_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        load_tiny_imagenet(DatasetSpec(data_dir=tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"learning\.data_dir"):
        load_tiny_imagenet(DatasetSpec())
    _write_tiny_imagenet(tmp_path)
    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\n")
    with pytest.raises(DatasetFormatError, match=r"val_annotations\.txt:1"):
        load_tiny_imagenet(DatasetSpec(data_dir=tmp_path))


def test_tiny_imagenet_npz_layout(tmp_path: Path) -> None:
    x = np.zeros((3, 64, 64, 3), dtype=np.uint8)
    np.savez(
        tmp_path / "tiny-imagenet-200.npz", x_train=x, y_train=np.array([0, 4, 2]), x_val=x[:1], y_val=[1]
    )
    train, test = load_tiny_imagenet(DatasetSpec(data_dir=tmp_path))
    assert test is not None and train.num_classes == 5 and train.x.shape == (3, 3, 64, 64)
    assert test.y.tolist() == [1]


def test_top5_by_hand() -> None:
    logits = torch.tensor(
        [
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # top-5: classes 6, 5, 4, 3, 2
            [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0],  # top-5: classes 0..4
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # ties: the lower indices 0..4
        ]
    )
    labels = torch.tensor([2, 5, 4])
    assert topk_correct(logits, labels, 5).tolist() == [True, False, True]
    assert topk_correct(logits, labels, 1).tolist() == [False, False, False]

    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return logits[x.long().flatten()]

    assert topk_accuracy(Fixed(), torch.arange(3.0)[:, None], labels, 5) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="k must be in"):
        topk_correct(logits, labels, 8)


def test_top5_is_a_general_metric_where_the_task_has_over_5_classes() -> None:
    from fedsimenv.experiments.replay import RoundRecord, record_round
    from fedsimenv.experiments.rundir import metric_row
    from fedsimenv.experiments.summary import summarise_rows

    def one_round(overrides: dict[str, object]) -> tuple[WirelessFLEnv, dict[str, Any], np.ndarray]:
        env = WirelessFLEnv(
            load_scenario("tiny", {"cell.num_devices": 3, "episode.max_rounds": 1, **overrides})
        )
        assert isinstance(env.action_space, spaces.Box)
        env.reset(seed=0)
        action = np.ones(env.action_space.shape, dtype=np.float32)
        info = env.step(action)[4]
        return env, info, action

    env, info, action = one_round({})  # digits: 10 classes
    trainer = env.trainer
    assert isinstance(trainer, TorchTrainer)
    with torch.no_grad():
        trainer.model.eval()
        logits = trainer.model(trainer._test_x)
    # By hand: a label is in the top 5 when fewer than 5 classes score above it.
    above = (logits > logits.gather(1, trainer._test_y[:, None])).sum(dim=1)
    expected = float((above < 5).float().mean())
    row = metric_row(info, 0.0)
    assert row["top5_accuracy"] == pytest.approx(expected) and row["top5_accuracy"] >= row["accuracy"]
    assert summarise_rows([row], None)["final_top5_accuracy"] == row["top5_accuracy"]
    # A resumed run replays it from the checkpoint's record (older records without it still load).
    record = record_round(env, action)
    assert record.extra == {"top5_accuracy": row["top5_accuracy"]}
    data = {k: getattr(record, k) for k in RoundRecord.__dataclass_fields__}
    assert RoundRecord.from_dict(data) == record
    assert RoundRecord.from_dict({k: v for k, v in data.items() if k != "extra"}).extra == {}

    _, info, _ = one_round({"learning.dataset": "synthetic", "learning.synthetic.num_classes": 5})
    row = metric_row(info, 0.0)
    assert "top5_accuracy" not in row and summarise_rows([row], None)["final_top5_accuracy"] is None


def test_table_base_follows_the_papers_protocol_and_reports_top5() -> None:
    from scenarios.dwnp_table import base_rounds, table

    # The paper: base 200 epochs; methods 200 training + 200 fine-tuning.
    assert base_rounds(400) == 200 and base_rounds(16) == 8
    row = {"acc": 0.6, "top5": 0.9, "acc_physical": 0.55, "flops_d": 0.5, "flops_s": 0.2}
    text = table({"dwnp": [row]}, [0.5], [0.8])
    assert "| Base Top-5 | delta-Top-5 |" in text
    assert "| dwnp | 50.00% | +10.00% (sd 0.00) | 60.00% | 55.00% | 80.00% | +10.00% | 50% | 20% |" in text
    assert "Top-5" not in table({"dwnp": [row]}, [0.5], [float("nan")])
