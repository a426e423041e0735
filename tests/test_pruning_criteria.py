"""The pruning criteria of the literature (fedsimenv/learning/pruning: gradual-magnitude, lottery-ticket,
movement, grasp, synflow, global-filter, hessian-group) against hand-computed scores on tiny tensors,
autograd's full Hessian, and Torch-Pruning's own importance; SynFlow's avoidance of layer collapse."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from numpy.typing import NDArray
from torch import nn

from fedsimenv.learning.models import build_model
from fedsimenv.learning.pruning import (
    PRUNING_METHODS,
    GlobalFilterPruning,
    GlobalMagnitudePruning,
    GradualMagnitudePruning,
    HessianGroupPruning,
    LotteryTicketPruning,
    MagnitudePruning,
    MovementPruning,
    SynFlowPruning,
    count_parameters,
    kept_parameters,
    lottery_ticket,
)
from fedsimenv.learning.pruning.group_importance import empirical_fisher_diagonal, global_selection
from fedsimenv.learning.pruning.saliency import GraSPPruning, grasp_scores, synflow_scores
from fedsimenv.learning.pruning.structured import _Graph

NEW_METHODS = [
    "gradual-magnitude",
    "lottery-ticket",
    "movement",
    "grasp",
    "synflow",
    "global-filter",
    "hessian-group",
]


def _linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.8, -1.0], [-1.2, 0.4, 0.5], [0.7, 0.1, 0.9]])
    return x, torch.tensor([0, 1, 1, 0])


def _hand_sgd(
    w: NDArray[Any], x: NDArray[Any], y: NDArray[Any], steps: int, lr: float, mask: NDArray[Any]
) -> NDArray[Any]:
    """Full-batch SGD on the cross-entropy of a bias-free linear classifier, by hand:
    dL/dW = (softmax(x W^T) - onehot(y))^T x / B."""
    w = w.copy()
    onehot = np.eye(w.shape[0])[y]
    for _ in range(steps):
        logits = x @ w.T
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w = (w - lr * (p - onehot).T @ x / len(y)) * mask
    return w


def test_gradual_magnitude_follows_the_cubic_schedule() -> None:
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    method = GradualMagnitudePruning(ramp_rounds=4)
    generator = torch.Generator().manual_seed(0)
    assert kept_parameters(model, method.masks(model, 0.6, generator)) == count_parameters(model)
    method.after_round(model)
    method.after_round(model)  # round 2 of 4: 0.6 (1 - 0.5^3) = 0.525
    expected = MagnitudePruning().masks(model, 0.6 * (1 - 0.5**3), generator)
    got = method.masks(model, 0.6, generator)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    method.reset()
    assert method.rate_at(0.6) == 0.0


def test_lottery_ticket_rewinds_to_step_k_and_prunes_the_trained_magnitudes() -> None:
    weight = [[0.5, -0.2, 0.1], [-0.3, 0.4, 0.05]]
    model = nn.Sequential(_linear(weight))
    x, y = _batch()
    lr, k, t = 0.5, 1, 3
    masks, rewound = lottery_ticket(
        model, 0.5, (x, y), iterations=1, rewind_step=k, train_steps=t, learning_rate=lr
    )
    w0 = np.array(weight)
    w_k = _hand_sgd(w0, x.numpy(), y.numpy(), k, lr, np.ones_like(w0))
    w_t = _hand_sgd(w0, x.numpy(), y.numpy(), t, lr, np.ones_like(w0))
    keep = np.zeros(6, bool)
    keep[np.argsort(np.abs(w_t).ravel())[3:]] = True  # the 3 largest |theta_T| survive
    np.testing.assert_array_equal(masks["0.weight"].numpy().ravel(), keep)
    np.testing.assert_allclose(rewound["0.weight"].numpy(), w_k * keep.reshape(2, 3), atol=1e-6)
    # Two cycles: masks nest, the second ranks the retrained survivors; still rewound to theta_k.
    masks2, rewound2 = lottery_ticket(
        model, 0.5, (x, y), iterations=2, rewind_step=k, train_steps=t, learning_rate=lr
    )
    keep1 = np.zeros(6, bool)
    keep1[np.argsort(np.abs(w_t).ravel())[6 - round(6 * 0.5**0.5) :]] = True
    w_t2 = _hand_sgd(w_k * keep1.reshape(2, 3), x.numpy(), y.numpy(), t - k, lr, keep1.reshape(2, 3))
    keep2 = np.zeros(6, bool)
    scores = np.where(keep1, np.abs(w_t2).ravel(), -1.0)
    keep2[np.argsort(scores, kind="stable")[3:]] = True
    np.testing.assert_array_equal(masks2["0.weight"].numpy().ravel(), keep2)
    np.testing.assert_allclose(rewound2["0.weight"].numpy(), w_k * keep2.reshape(2, 3), atol=1e-6)
    # Without training it is one-shot global magnitude pruning.
    cnn = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(1))
    batch = (torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 3]))
    generator = torch.Generator()
    plain = LotteryTicketPruning(iterations=3, rewind_step=0, train_steps=0).masks(cnn, 0.6, generator, batch)
    reference = GlobalMagnitudePruning().masks(cnn, 0.6, generator)
    assert all(torch.equal(plain[key], reference[key]) for key in reference)
    with pytest.raises(ValueError, match="rewind_step"):
        lottery_ticket(model, 0.5, (x, y), iterations=1, rewind_step=4, train_steps=3, learning_rate=lr)


def test_movement_scores_are_the_accumulated_w_times_dw() -> None:
    layer = _linear([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    model = nn.Sequential(layer)
    method = MovementPruning()
    history = [
        np.array([[0.5, -0.2, 0.1], [-0.3, 0.4, 0.05]]),
        np.array([[0.6, -0.1, 0.1], [-0.1, 0.5, 0.2]]),
        np.array([[0.7, -0.1, 0.0], [0.1, 0.45, 0.3]]),
    ]
    for w in history:
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
        method.after_round(model)
    expected = history[0] * (history[1] - history[0]) + history[1] * (history[2] - history[1])
    np.testing.assert_allclose(method.scores["0.weight"].numpy(), expected, atol=1e-7)
    masks = method.masks(model, 0.5, torch.Generator())  # no batch: movement so far only
    keep = np.zeros(6, bool)
    keep[np.argsort(expected.ravel(), kind="stable")[3:]] = True
    np.testing.assert_array_equal(masks["0.weight"].numpy().ravel(), keep)
    # With a batch the coming step's -W g is added (g by hand: (p - y)^T x / B).
    x, y = _batch()
    w = history[2]
    logits = x.numpy() @ w.T
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    g = (p - np.eye(2)[y.numpy()]).T @ x.numpy() / 4
    scores = method.movement_scores(model, (x, y))["0.weight"].numpy()
    np.testing.assert_allclose(scores, expected - w * g, atol=1e-6)
    restored = MovementPruning()  # a checkpoint carries the scores and the last weights seen
    restored.load_state_dict(method.state_dict())
    torch.testing.assert_close(restored.movement_scores(model, (x, y)), method.movement_scores(model, (x, y)))
    method.reset()
    assert method.scores == {}


def test_grasp_scores_match_autograds_full_hessian() -> None:
    weight = [[0.5, -0.2, 0.1], [-0.3, 0.4, 0.05]]
    model = nn.Sequential(_linear(weight))
    x, y = _batch()

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(x @ flat.view(2, 3).T, y)

    theta = torch.tensor(weight).flatten()
    g = torch.autograd.functional.jacobian(loss, theta)  # type: ignore[no-untyped-call]
    h = torch.autograd.functional.hessian(loss, theta)  # type: ignore[no-untyped-call]
    expected = -theta * (h @ g)
    np.testing.assert_allclose(
        grasp_scores(model, (x, y))["0.weight"].flatten().numpy(), expected.numpy(), rtol=1e-5, atol=1e-9
    )
    masks = GraSPPruning().masks(model, 0.5, torch.Generator(), (x, y))
    removed = np.argsort(-expected.numpy(), kind="stable")[:3]  # the highest S go
    keep = np.ones(6, bool)
    keep[removed] = False
    np.testing.assert_array_equal(masks["0.weight"].numpy().ravel(), keep)


def test_synflow_scores_by_hand_and_no_layer_collapse() -> None:
    w1 = [[0.5, -0.2, 0.1], [-0.3, 0.4, 0.05]]
    w2 = [[1.0, -2.0]]
    model = nn.Sequential(_linear(w1), nn.ReLU(), _linear(w2))
    scores = synflow_scores(model, (3,))
    a1, a2 = np.abs(np.array(w1)), np.abs(np.array(w2))
    # R = 1^T |W2| |W1| 1: dR/dW1_ij = (1^T |W2|)_i, dR/dW2_ki = (|W1| 1)_i.
    np.testing.assert_allclose(scores["0.weight"].numpy(), a2.sum(0)[:, None] * a1)
    np.testing.assert_allclose(scores["2.weight"].numpy(), a2 * a1.sum(1)[None, :])

    # A middle layer of small weights: global magnitude removes all of it at 99%, SynFlow does not.
    gen = torch.Generator().manual_seed(0)
    layers = [nn.Linear(20, 100, bias=False), nn.Linear(100, 100, bias=False), nn.Linear(100, 10, bias=False)]
    deep = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
        layers[1].weight.mul_(0.01)
    batch = (torch.zeros(1, 20), torch.zeros(1, dtype=torch.long))
    magnitude = GlobalMagnitudePruning().masks(deep, 0.99, gen)
    assert int(magnitude["2.weight"].sum()) == 0  # collapsed
    synflow = SynFlowPruning(iterations=100).masks(deep, 0.99, gen, batch)
    assert kept_parameters(deep, synflow) == count_parameters(deep) - round(0.99 * count_parameters(deep))
    assert all(int(m.sum()) > 0 for m in synflow.values())
    single_shot = SynFlowPruning(iterations=1).masks(deep, 0.99, gen, batch)
    assert kept_parameters(deep, single_shot) == kept_parameters(deep, synflow)


def test_global_selection_ranks_channels_over_all_groups_by_hand() -> None:
    importances = [torch.tensor([0.5, 2.0, 0.1]), torch.tensor([1.0, 0.2]), torch.tensor([3.0, 0.05])]
    # 7 channels, ratio 0.5 -> 3 go: 0.05 (g2), 0.1 (g0), 0.2 (g1); each group keeps one.
    assert global_selection(importances, 0.5) == [[2], [1], [1]]
    # 0.9 -> 6 wanted, but every group keeps its best channel: only 4 can go.
    assert global_selection(importances, 0.9) == [[0, 2], [1], [1]]


def test_global_filter_prunes_layers_unevenly_to_the_rate() -> None:
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    batch = (torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3]))
    method = GlobalFilterPruning()
    graph = _Graph(method, model, torch.Generator(), batch)
    ratio = 0.5
    selection = graph.selection(ratio)
    # The same channels go as a global ranking of Torch-Pruning's mean-normalised group L1 scores.
    assert selection == global_selection([g.importance for g in graph.groups], ratio)
    total = sum(g.channels for g in graph.groups)
    assert sum(len(s) for s in selection) == int(ratio * total)
    masks = method.masks(model, 0.5, torch.Generator(), batch)
    assert 1 - kept_parameters(model, masks) / count_parameters(model) == pytest.approx(0.5, abs=0.05)


def test_hessian_group_importance_is_torch_prunings_obd_with_the_mean_fisher() -> None:
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    model.eval()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, 4, 7])
    # Empirical Fisher = mean of per-sample squared gradients (torch.func, an independent route).
    params = {k: v.detach() for k, v in model.named_parameters()}

    def sample_loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, p, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    fisher = empirical_fisher_diagonal(model, (x, y))
    for name in params:
        torch.testing.assert_close(fisher[name], (per_sample[name] ** 2).mean(0), rtol=1e-4, atol=1e-10)

    # On one sample (where Torch-Pruning's accumulate_grad is exact) our group scores are
    # Torch-Pruning's own, used as its documentation shows.
    one = (x[:1], y[:1])
    graph = _Graph(HessianGroupPruning(), model, torch.Generator(), one)
    reference = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    reference.eval()
    dg = tp.DependencyGraph().build_dependency(reference, example_inputs=x[:1])
    scorer = tp.importance.GroupHessianImportance()
    scorer.zero_grad()
    reference.zero_grad()
    F.cross_entropy(reference(x[:1]), y[:1]).backward()  # type: ignore[no-untyped-call]
    scorer.accumulate_grad(reference)
    modules = dict(reference.named_modules())
    for group in graph.groups:
        root = modules[group.root_name]
        handler = dg.get_pruner_of_module(root).prune_out_channels
        tp_group = dg.get_pruning_group(root, handler, list(range(group.channels)))
        expected = scorer(tp_group).double()
        torch.testing.assert_close(group.importance, expected, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_every_new_criterion_prunes_a_cnn_to_the_rate(name: str) -> None:
    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0))
    batch = (torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 10)
    method = PRUNING_METHODS.get(name)()
    if name == "gradual-magnitude":
        for _ in range(20):
            method.after_round(model)  # past the ramp: the final rate
    masks = method.masks(model, 0.5, torch.Generator().manual_seed(0), batch)
    achieved = 1 - kept_parameters(model, masks) / count_parameters(model)
    tolerance = 0.05 if method.structured else 1e-3
    assert achieved == pytest.approx(0.5, abs=tolerance)
