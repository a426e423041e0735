"""Learning-plane pieces against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsimenv.learning.aggregation import fedavg, masked_fedavg
from fedsimenv.learning.data import dirichlet_partition, iid_partition, load_digits, train_test_split
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.models import build_model
from fedsimenv.learning.pruning import PRUNING_METHODS, count_parameters, kept_parameters
from fedsimenv.learning.states import StackedStates


def _cnn() -> torch.nn.Module:
    return build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))


def test_small_cnn_parameters_and_flops_by_hand() -> None:
    model = _cnn()
    assert count_parameters(model) == (16 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 10 + 10)
    dense = 2 * (16 * 9 * 64 + 32 * 16 * 9 * 64 + 512 * 10) + 16 * 64 + 32 * 64 + 10
    assert forward_flops_per_sample(model, (1, 8, 8)) == dense
    # Mask out 100 weights of conv2 and 7 of the classifier: each conv2 weight is used at 64 positions.
    masks = {
        "features.2.weight": torch.ones(32, 16, 3, 3, dtype=torch.bool),
        "classifier.weight": torch.ones(10, 512, dtype=torch.bool),
    }
    masks["features.2.weight"].view(-1)[:100] = False
    masks["classifier.weight"].view(-1)[:7] = False
    assert forward_flops_per_sample(model, (1, 8, 8), masks) == dense - 2 * 100 * 64 - 2 * 7


@pytest.mark.parametrize("method", ["magnitude", "random"])
@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5, 0.9])
def test_pruning_removes_the_requested_fraction_of_all_parameters(method: str, rho: float) -> None:
    model = _cnn()
    masks = PRUNING_METHODS.get(method)().masks(model, rho, torch.Generator().manual_seed(1))
    removed = 1 - kept_parameters(model, masks) / count_parameters(model)
    assert removed == pytest.approx(rho, abs=0.01)


def test_magnitude_pruning_keeps_the_largest_weights_of_each_layer() -> None:
    model = _cnn()
    masks = PRUNING_METHODS.get("magnitude")().masks(model, 0.5, torch.Generator())
    for name, param in model.named_parameters():
        if name in masks:
            kept = param.detach().abs()[masks[name]]
            dropped = param.detach().abs()[~masks[name]]
            assert kept.min() >= dropped.max()


def test_fedavg_hand_computed() -> None:
    a = {"w": torch.tensor([1.0, 2.0])}
    b = {"w": torch.tensor([3.0, 6.0])}
    out = fedavg([a, b], [1, 3])
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 5.0]))


def test_masked_fedavg_averages_only_over_devices_that_kept_an_entry() -> None:
    global_state = {"w": torch.tensor([10.0, 20.0, 30.0]), "b": torch.tensor([0.0])}
    states = [
        {"w": torch.tensor([1.0, 0.0, 0.0]), "b": torch.tensor([1.0])},
        {"w": torch.tensor([3.0, 4.0, 0.0]), "b": torch.tensor([2.0])},
    ]
    masks = [{"w": torch.tensor([True, False, False])}, {"w": torch.tensor([True, True, False])}]
    out = masked_fedavg(global_state, states, masks, [1.0, 3.0])
    # entry 0: (1*1 + 3*3)/4; entry 1: only device 2 -> 4; entry 2: nobody -> global 30; b unmasked
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 4.0, 30.0]))
    torch.testing.assert_close(out["b"], torch.tensor([1.75]))
    # Without masks it is exactly FedAvg.
    torch.testing.assert_close(
        masked_fedavg(global_state, states, [{}, {}], [1.0, 3.0])["w"], fedavg(states, [1.0, 3.0])["w"]
    )


def test_stacked_states_behave_as_the_per_device_dicts_and_aggregate_alike() -> None:
    w = torch.tensor([[1.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    b = torch.tensor([[1.0], [2.0]])
    stacked = StackedStates({"w": w, "b": b})
    as_dicts = [{"w": w[0], "b": b[0]}, {"w": w[1], "b": b[1]}]
    assert len(stacked) == 2
    torch.testing.assert_close(stacked[-1]["w"], torch.tensor([3.0, 4.0, 0.0]))
    assert [s["b"].item() for s in stacked] == [1.0, 2.0] and len(stacked[0:1]) == 1
    with pytest.raises(IndexError, match="out of range for 2"):
        stacked[2]
    with pytest.raises(ValueError, match="leading"):
        StackedStates({"w": w, "b": torch.zeros(3, 1)})
    # The same hand-computed results as the dict path (see the two tests above).
    torch.testing.assert_close(fedavg(stacked, [1, 3])["w"], torch.tensor([2.5, 3.0, 0.0]))
    global_state = {"w": torch.tensor([10.0, 20.0, 30.0]), "b": torch.tensor([0.0])}
    masks = [{"w": torch.tensor([True, False, False])}, {"w": torch.tensor([True, True, False])}]
    for states in (stacked, as_dicts):
        out = masked_fedavg(global_state, states, masks, [1.0, 3.0])
        torch.testing.assert_close(out["w"], torch.tensor([2.5, 4.0, 30.0]))
        torch.testing.assert_close(out["b"], torch.tensor([1.75]))


def test_partitions_cover_every_sample_exactly_once() -> None:
    data = load_digits()
    assert data.x.shape == (1797, 1, 8, 8) and data.x.min() >= 0 and data.x.max() <= 1
    train, test = train_test_split(data, 0.2, np.random.default_rng(0))
    assert len(train) + len(test) == 1797
    for parts in (
        dirichlet_partition(train.y, 10, 0.5, np.random.default_rng(0), min_samples_per_device=8),
        iid_partition(len(train), 10, np.random.default_rng(0)),
    ):
        joined = np.sort(np.concatenate(parts))
        np.testing.assert_array_equal(joined, np.arange(len(train)))
        assert min(len(p) for p in parts) >= 8


def test_dirichlet_alpha_controls_label_skew() -> None:
    labels = np.repeat(np.arange(10), 200)

    def mean_classes_per_device(alpha: float) -> float:
        parts = dirichlet_partition(labels, 20, alpha, np.random.default_rng(3))
        return float(np.mean([np.sum(np.bincount(labels[p], minlength=10) >= 5) for p in parts]))

    assert mean_classes_per_device(0.1) < mean_classes_per_device(100.0)
    assert mean_classes_per_device(100.0) == 10.0
