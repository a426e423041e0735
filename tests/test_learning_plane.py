"""Issue 5's learning plane against independent references: Torch-Pruning's counters, hand-computed
aggregation, files written in the datasets' own formats, and the sequential training path."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from fedsimenv.config import LearningConfig
from fedsimenv.learning.aggregation import heterofl_aggregate, masked_fedavg, r2sp_fedavg, width_slice
from fedsimenv.learning.cohort import (
    Engine,
    LocalJob,
    SGDConfig,
    draw_orders,
    train_batched,
    train_sequential,
)
from fedsimenv.learning.data import device_test_split, load_digits, natural_partition, shard_partition
from fedsimenv.learning.datasets import DatasetNotFoundError, DatasetSpec, load_dataset
from fedsimenv.learning.flops import forward_flops_per_sample, layer_costs
from fedsimenv.learning.models import MODELS, build_model
from fedsimenv.learning.pruning import PRUNING_METHODS, apply_masks, count_parameters, kept_parameters
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.seeding import EpisodeStreams

SHAPE = (3, 16, 16)


def _model(name: str, shape: tuple[int, int, int] = SHAPE, norm: str | None = None) -> nn.Module:
    model = build_model(name, shape, 10, torch.Generator().manual_seed(0), norm=norm)
    return model.eval()


def _batch(shape: tuple[int, int, int] = SHAPE) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn((8, *shape), generator=g), torch.randint(0, 10, (8,), generator=g)


# -- models, FLOPs and parameters against Torch-Pruning ------------------------------------------


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_runs_with_every_norm(name: str) -> None:
    for norm in ("batch", "layer", "none"):
        assert _model(name, norm=norm)(torch.zeros(2, *SHAPE)).shape == (2, 10)


@pytest.mark.parametrize("name", ["small-cnn", "resnet20", "mobilenetv2", "vgg11"])
def test_flops_and_params_match_torch_pruning_dense_and_hard_pruned(name: str) -> None:
    dense = _model(name)
    hard = PRUNING_METHODS.get("l1-filter")().hard(dense, 0.5, torch.Generator(), _batch()).eval()
    for model in (dense, hard):
        _, params, tp_layer_ops, _ = tp.utils.count_ops_and_params(
            model, torch.zeros(1, *SHAPE), layer_wise=True
        )
        assert count_parameters(model) == params
        modules = dict(model.named_modules())
        for layer, cost in layer_costs(model, SHAPE).items():
            assert cost.ops == tp_layer_ops[modules[layer]], layer


def test_flops_follow_a_model_changed_in_place() -> None:
    # The layer geometry is cached per model object; the count must follow layers slimmed in place
    # (as Torch-Pruning does) and a layer replaced by one with the same weight shapes but another
    # stride (reference: Torch-Pruning's own counter, after each change).
    model = _model("small-cnn")

    def matches_torch_pruning() -> float:
        _, _, tp_ops, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, *SHAPE), layer_wise=True)
        modules = dict(model.named_modules())
        costs = layer_costs(model, SHAPE)
        assert [cost.ops for cost in costs.values()] == [tp_ops[modules[layer]] for layer in costs]
        return forward_flops_per_sample(model, SHAPE)

    features = model.get_submodule("features")
    assert isinstance(features, nn.Sequential)
    first, second = features[0], features[2]
    assert isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d)
    dense = matches_torch_pruning()
    tp.prune_conv_out_channels(first, idxs=[0, 1, 2, 3])
    tp.prune_conv_in_channels(second, idxs=[0, 1, 2, 3])
    slimmed = matches_torch_pruning()
    features[2] = nn.Conv2d(second.in_channels, second.out_channels, 3, stride=2, padding=1)
    # the feature map is a quarter of the size now
    model.classifier = nn.Linear(second.out_channels * 4 * 4, 10)
    strided = matches_torch_pruning()
    assert dense > slimmed > strided


def test_magnitude_masks_follow_weights_changed_in_place() -> None:
    # The sort of each layer is reused across calls while the weights are equal; after an in-place
    # change (a round's training) the masks must rank the new values (reference: numpy's stable sort).
    model = _model("small-cnn")
    pruner = PRUNING_METHODS.get("magnitude")()
    pruner.masks(model, 0.3, torch.Generator())
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())))
    for rho in (0.3, 0.6):
        masks = pruner.masks(model, rho, torch.Generator())
        assert set(masks) == {"features.0.weight", "features.2.weight", "classifier.weight"}
        for name, param in model.named_parameters():
            if name in masks:
                values = param.detach().abs().flatten().numpy()
                removed = int((~masks[name]).sum())
                expected = np.ones(values.size, dtype=bool)
                expected[np.argsort(values, kind="stable")[:removed]] = False
                assert removed > 0
                np.testing.assert_array_equal(masks[name].flatten().numpy(), expected)


@pytest.mark.parametrize("method", ["l1-filter", "taylor", "random-filter", "width"])
@pytest.mark.parametrize("name", ["small-cnn", "resnet20"])
def test_soft_and_hard_pruning_agree_on_outputs_params_and_flops(method: str, name: str) -> None:
    model, batch = _model(name), _batch()
    pruner = PRUNING_METHODS.get(method)()
    masks = pruner.masks(model, 0.5, torch.Generator().manual_seed(1), batch)
    hard = pruner.hard(model, 0.5, torch.Generator().manual_seed(1), batch).eval()
    soft = copy.deepcopy(model)
    apply_masks(soft, masks)
    torch.testing.assert_close(soft(batch[0]), hard(batch[0]), atol=1e-5, rtol=1e-5)
    assert kept_parameters(model, masks) == count_parameters(hard)
    assert forward_flops_per_sample(model, SHAPE, masks) == forward_flops_per_sample(hard, SHAPE)


@pytest.mark.parametrize(
    ("name", "rho"), [("resnet20", 0.3), ("resnet20", 0.5), ("resnet20", 0.8), ("vgg11", 0.5)]
)
def test_structured_rho_maps_to_channel_ratio_within_one_percent(name: str, rho: float) -> None:
    model = _model(name)
    masks = PRUNING_METHODS.get("l1-filter")().masks(model, rho, torch.Generator(), _batch())
    assert 1 - kept_parameters(model, masks) / count_parameters(model) == pytest.approx(rho, abs=0.01)


def test_width_pruning_keeps_leading_channels() -> None:
    model = _model("small-cnn", (1, 8, 8))
    masks = PRUNING_METHODS.get("width")().masks(model, 0.5, torch.Generator(), _batch((1, 8, 8)))
    kept_out = masks["features.0.weight"].flatten(1).any(1)
    assert kept_out[: int(kept_out.sum())].all()  # a prefix is kept


@pytest.mark.parametrize("method", ["global-magnitude", "snip"])
@pytest.mark.parametrize("rho", [0.3, 0.8])
def test_global_unstructured_methods_remove_rho(method: str, rho: float) -> None:
    model = _model("small-cnn", (1, 8, 8))
    masks = PRUNING_METHODS.get(method)().masks(model, rho, torch.Generator(), _batch((1, 8, 8)))
    assert 1 - kept_parameters(model, masks) / count_parameters(model) == pytest.approx(rho, abs=0.01)


def test_global_magnitude_keeps_the_largest_weights_overall() -> None:
    model = _model("small-cnn", (1, 8, 8))
    masks = PRUNING_METHODS.get("global-magnitude")().masks(model, 0.5, torch.Generator())
    params = dict(model.named_parameters())
    kept = torch.cat([params[k].detach().abs()[m] for k, m in masks.items()])
    dropped = torch.cat([params[k].detach().abs()[~m] for k, m in masks.items()])
    assert kept.min() >= dropped.max()


# -- aggregation against hand-computed tensors ---------------------------------------------------


def test_r2sp_recovers_pruned_entries_from_the_global_model() -> None:
    global_state = {"w": torch.tensor([10.0, 20.0, 30.0])}
    states = [{"w": torch.tensor([1.0, 0.0, 0.0])}, {"w": torch.tensor([3.0, 4.0, 0.0])}]
    masks = [{"w": torch.tensor([True, False, False])}, {"w": torch.tensor([True, True, False])}]
    out = r2sp_fedavg(global_state, states, masks, [1.0, 3.0])
    # entry 0: (1*1 + 3*3)/4; entry 1: (1*20 + 3*4)/4 (device 1 contributes the global 20); entry 2: 30
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 8.0, 30.0]))


def test_heterofl_averages_each_slice_over_the_clients_holding_it() -> None:
    global_state = {"w": torch.full((3, 2), 9.0)}
    small = {"w": torch.tensor([[1.0]])}
    large = {"w": torch.tensor([[3.0, 5.0], [7.0, 11.0]])}
    out = heterofl_aggregate(global_state, [small, large])
    expected = torch.tensor([[2.0, 5.0], [7.0, 11.0], [9.0, 9.0]])
    torch.testing.assert_close(out["w"], expected)
    assert width_slice(out, {"w": torch.Size([1, 2])})["w"].tolist() == [[2.0, 5.0]]
    # The same rule as masked FedAvg over zero-padded states with leading-slice masks.
    mask_small = torch.zeros(3, 2, dtype=torch.bool)
    mask_small[:1, :1] = True
    mask_large = torch.zeros(3, 2, dtype=torch.bool)
    mask_large[:2, :2] = True
    padded = [{"w": torch.zeros(3, 2)} for _ in range(2)]
    padded[0]["w"][:1, :1], padded[1]["w"][:2, :2] = small["w"], large["w"]
    same = masked_fedavg(global_state, padded, [{"w": mask_small}, {"w": mask_large}], [1.0, 1.0])
    torch.testing.assert_close(same["w"], expected)


# -- datasets and partitions -----------------------------------------------------------------------


def _write_cifar(path: Path, n: int, label_key: str, rng: np.random.Generator) -> None:
    blob = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key.encode(): list(range(n))}
    path.write_bytes(pickle.dumps(blob))


def test_cifar_loaders_read_the_python_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _write_cifar(tmp_path / f"data_batch_{i}", 4, "labels", rng)
    _write_cifar(tmp_path / "test_batch", 3, "labels", rng)
    train, test = load_dataset("cifar10", DatasetSpec(data_dir=tmp_path))
    assert train.x.shape == (20, 3, 32, 32) and test is not None and test.x.shape == (3, 3, 32, 32)
    assert train.num_classes == 10 and train.y.tolist()[:5] == [0, 1, 2, 3, 0]
    _write_cifar(tmp_path / "train", 6, "fine_labels", rng)
    _write_cifar(tmp_path / "test", 2, "fine_labels", rng)
    train100, _ = load_dataset("cifar100", DatasetSpec(data_dir=tmp_path))
    assert train100.num_classes == 100 and len(train100) == 6


def test_femnist_loader_reads_leaf_json_and_keeps_writers(tmp_path: Path) -> None:
    for split, users in (("train", ["f_a", "f_b"]), ("test", ["f_a"])):
        (tmp_path / split).mkdir()
        blob = {
            "users": users,
            "num_samples": [2] * len(users),
            "user_data": {u: {"x": [[0.5] * 784, [0.25] * 784], "y": [1, 61]} for u in users},
        }
        (tmp_path / split / "all_data_0.json").write_text(json.dumps(blob))
    train, test = load_dataset("femnist", DatasetSpec(data_dir=tmp_path))
    assert train.x.shape == (4, 1, 28, 28) and train.num_classes == 62 and test is not None
    assert train.groups is not None and sorted(set(train.groups.tolist())) == [0, 1]
    parts = natural_partition(train.groups, 2, np.random.default_rng(0))
    assert sorted(len(set(train.groups[p].tolist())) for p in parts) == [1, 1]


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "femnist"])
def test_absent_dataset_says_which_files_to_put_where(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)) as info:
        load_dataset(name, DatasetSpec(data_dir=tmp_path))
    assert "put" in str(info.value)


def test_synthetic_task_has_the_configured_shape() -> None:
    spec = DatasetSpec(num_samples=50, num_classes=4, input_shape=(2, 5, 5), noise_std=0.1)
    data, test = load_dataset("synthetic", spec)
    assert data.x.shape == (50, 2, 5, 5) and test is None and set(data.y.tolist()) <= {0, 1, 2, 3}


def test_shards_give_each_device_at_most_k_classes() -> None:
    labels = np.repeat(np.arange(10), 100)
    parts = shard_partition(labels, 20, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    assert max(len(np.unique(labels[p])) for p in parts) <= 2


def test_device_test_split_follows_the_device_label_mix() -> None:
    test_labels = np.repeat(np.arange(4), 50)
    train_labels = np.array([0] * 30 + [2] * 10)
    idx = device_test_split(test_labels, train_labels, 20, 4, np.random.default_rng(0))
    assert np.bincount(test_labels[idx], minlength=4).tolist() == [15, 0, 5, 0]


# -- batched cohort training -----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["grouped", "vmap"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_batched_and_sequential_cohort_training_give_the_same_weights(
    momentum: float, engine: Engine
) -> None:
    data = load_digits()
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    jobs = []
    for k, n in enumerate([23, 40, 16, 57, 9]):  # unequal sizes, ragged last batches
        idx = torch.arange(60 * k, 60 * k + n)
        masks = PRUNING_METHODS.get("magnitude")().masks(model, 0.2 * k, g) if k else {}
        jobs.append(
            LocalJob(
                torch.from_numpy(data.x)[idx], torch.from_numpy(data.y)[idx], masks, draw_orders(n, 2, g)
            )
        )
    sgd = SGDConfig(learning_rate=0.05, momentum=momentum, batch_size=16)
    for a, b, job in zip(
        train_sequential(model, jobs, sgd), train_batched(model, jobs, sgd, engine), jobs, strict=True
    ):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
            if key in job.masks:
                assert torch.all(b[key][~job.masks[key]] == 0)


# -- the whole chain on digits ---------------------------------------------------------------------


def _accuracy_after(rho: float, rounds: int, **overrides: object) -> float:
    config = LearningConfig.model_validate(
        {
            "partition": {"method": "iid"},
            "momentum": 0.9,
            "learning_rate": 0.05,
            "local_epochs": 2,
            **overrides,
        }
    )
    trainer = TorchTrainer(config, num_devices=5)
    trainer.reset(EpisodeStreams(np.random.SeedSequence(0)))
    result = None
    for _ in range(rounds):
        plan = trainer.plan_round(dict.fromkeys(range(5), rho))
        result = trainer.train_round(plan, list(range(5)))
    assert result is not None
    return result.accuracy


def test_fedavg_on_digits_and_pruning_sanity() -> None:
    # 5 devices, IID, 2 local epochs, 6 rounds; magnitude pruning from the global weights each round.
    dense = _accuracy_after(0.0, 6)
    half = _accuracy_after(0.5, 6)
    extreme = _accuracy_after(0.95, 6)
    assert dense >= 0.95
    assert abs(dense - half) <= 0.03
    assert extreme < dense - 0.1


def test_structured_pruning_and_r2sp_through_the_trainer() -> None:
    config = LearningConfig.model_validate(
        {
            "pruning": "l1-filter",
            "aggregation": "r2sp",
            "partition": {"method": "shards", "per_device_test": True},
        }
    )
    trainer = TorchTrainer(config, num_devices=5)
    trainer.reset(EpisodeStreams(np.random.SeedSequence(1)))
    plan = trainer.plan_round({0: 0.0, 1: 0.5})
    costs = plan.costs
    assert costs[1].forward_flops_per_sample < 0.7 * costs[0].forward_flops_per_sample
    assert costs[1].upload_bits == costs[1].kept_params * 32  # structured: no index overhead
    result = trainer.train_round(plan, [0, 1])
    assert result.num_trained == 2 and len(result.device_accuracy) == 5
