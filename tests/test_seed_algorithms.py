"""The seed systems of part 2 (Sub-FedAvg, FedSparse/NISP, FedDUAP, class-discriminative federated
unlearning) against hand-computed cases, and each through `fedsimenv run tiny --agent NAME`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from agents import AGENTS
from agents.literature.channel_layout import ChannelLayout
from agents.literature.conv_groups import remove_lowest
from agents.literature.fedduap import duap_server_weight, feature_map_ranks, layer_adaptive_rates
from agents.literature.fedsparse import model_nisp_scores, nisp_masks, nisp_scores
from agents.literature.subfedavg import prune_fc_step
from agents.literature.unlearning import tfidf_relevance
from fedsimenv.cli import main

SEEDS = ["sub-fedavg", "fedsparse", "fedduap", "unlearning"]


# -- Sub-FedAvg --------------------------------------------------------------------------------


def test_fc_step_removes_the_smallest_kept_magnitudes() -> None:
    weight = torch.tensor([[0.5, -0.1, 0.9], [-0.05, 0.3, 2.0]])
    keep = torch.tensor([[True, True, True], [False, True, True]])
    # 5 kept, step 0.4 -> ceil(2.0) = 2 removed: |-0.1| and |0.3| (the pruned -0.05 is ignored).
    out = prune_fc_step(weight, keep, 0.4, min_keep=1)
    assert out.tolist() == [[True, False, True], [False, False, True]]
    # The floor on kept entries wins: at most 5 - 4 = 1 removed.
    assert prune_fc_step(weight, keep, 0.4, min_keep=4).sum() == 4


def test_channel_step_keeps_at_least_one() -> None:
    gate = torch.tensor([1.0, 0.0, 1.0, 1.0])
    scores = torch.tensor([0.3, 0.0, 0.1, 0.2])
    assert remove_lowest(gate, scores, 2).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert remove_lowest(gate, scores, 10).tolist() == [1.0, 0.0, 0.0, 0.0]


# -- FedSparse / NISP -----------------------------------------------------------------------------


W1 = torch.tensor([[1.0, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, -1]])
W2 = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.0, 3.0]])
W3 = torch.tensor([[1.0, -1.0], [2.0, 0.0]])


def _mlp() -> nn.Sequential:
    layers = [nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(2, 2)]
    with torch.no_grad():
        for layer, weight in zip(layers, (W1, W2, W3), strict=True):
            layer.weight.copy_(weight)
    return nn.Sequential(nn.Flatten(), layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])


def test_nisp_scores_on_a_three_layer_mlp_by_hand() -> None:
    net = _mlp()
    # s_2 = |W3|^T 1 = [1 + 2, 1 + 0] = [3, 1];
    # s_1 = |W2|^T s_2 = [1*3 + 0.5*1, 2*3 + 0, 0 + 3*1] = [3.5, 6, 3].
    s1, s2 = nisp_scores([W1, W2, W3])
    assert s2.tolist() == [3.0, 1.0]
    assert s1.tolist() == [3.5, 6.0, 3.0]
    layout = ChannelLayout(net, torch.zeros(1, 1, 2, 2))
    by_group = model_nisp_scores(net, layout)
    assert sorted(t.tolist() for t in by_group.values()) == [[3.0, 1.0], [3.5, 6.0, 3.0]]
    # Half of each hidden layer (rounded down): neuron 2 of layer 1 (score 3), neuron 1 of layer 2 (1).
    masks = nisp_masks(net, torch.zeros(1, 1, 2, 2), 0.5)
    assert masks["1.weight"].all(dim=1).tolist() == [True, True, False]
    assert masks["3.weight"].tolist() == [[True, True, False], [False, False, False]]  # row and column
    assert masks["5.weight"][:, 1].any().item() is False


def test_nisp_refuses_a_non_chain() -> None:
    with pytest.raises(ValueError, match="reads 3 inputs"):
        nisp_scores([torch.ones(2, 4), torch.ones(2, 3)])


# -- FedDUAP -------------------------------------------------------------------------------------


def test_fedduap_weight_by_hand() -> None:
    # n0 = 50, n' = 150 -> share 0.25; accuracy 0.6; TV([.5,.5], [.9,.1]) = 0.4 -> 0.25 * 0.4 * 0.6.
    weight = duap_server_weight(50, 150, 0.6, np.array([25.0, 25.0]), np.array([135.0, 15.0]))
    assert weight == pytest.approx(0.06)
    # Monotone as the paper: more server data, lower accuracy, closer distributions -> more weight.
    assert duap_server_weight(100, 150, 0.6, np.array([1.0, 1.0]), np.array([9.0, 1.0])) > weight
    assert duap_server_weight(50, 150, 0.9, np.array([1.0, 1.0]), np.array([9.0, 1.0])) < weight
    assert duap_server_weight(50, 150, 0.6, np.array([1.0, 1.0]), np.array([1.0, 1.0])) > weight
    assert duap_server_weight(50, 150, 1.0, np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_layer_adaptive_rates_and_feature_map_rank() -> None:
    # Redundancy u = [0.5, 0.1, 0.3], mean 0.3: rates 0.3 * u / 0.3 = u.
    assert layer_adaptive_rates([0.5, 0.9, 0.7], 0.3) == pytest.approx([0.5, 0.1, 0.3])
    assert layer_adaptive_rates([1.0, 1.0], 0.3) == [0.3, 0.3]
    # A 1x1 conv copying channel 0 of the input, and channel 0 + 0 * channel 1 (rank 1 input).
    layer = nn.Conv2d(2, 2, kernel_size=1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[1.0]], [[0.0]]], [[[0.0]], [[1.0]]]]))
    conv = nn.Sequential(layer)
    full = torch.eye(4)  # rank 4 on a 4x4 map
    rank1 = torch.ones(4, 4)
    x = torch.stack([full, rank1]).unsqueeze(0)
    assert feature_map_ranks(conv, "0", x).tolist() == [1.0, 0.25]


# -- federated unlearning -------------------------------------------------------------------------


def test_tfidf_relevance_on_a_toy_activation_table() -> None:
    table = np.array([[4.0, 1.0, 5.0], [0.0, 3.0, 5.0]])
    # TF: [.4, .1, .5], [0, .375, .625]; channel means 2, 2, 5 -> df = 1, 1, 2;
    # IDF = ln(3/2) + 1, ln(3/2) + 1, ln(3/3) + 1.
    idf = [math.log(1.5) + 1, math.log(1.5) + 1, 1.0]
    expected = np.array([[0.4, 0.1, 0.5], [0.0, 0.375, 0.625]]) * idf
    np.testing.assert_allclose(tfidf_relevance(table), expected, rtol=1e-12)
    # Class 0's most discriminative channel is 0 (0.562 > 0.5 > 0.141), class 1's is 2.
    assert list(np.argsort(-tfidf_relevance(table)[0])) == [0, 2, 1]
    with pytest.raises(ValueError, match="non-negative"):
        tfidf_relevance(np.array([[-1.0, 1.0]]))


# -- every seed algorithm in the co-simulation -----------------------------------------------------


def test_seed_agents_are_registered() -> None:
    assert set(SEEDS) <= set(AGENTS.names())


EXTRA = {
    "sub-fedavg": "personal_accuracy",
    "fedsparse": None,
    "fedduap": "server_weight",
    "unlearning": "forget_accuracy",
}


#: Default runs: tiny with 4 devices and 1 local epoch (the full `run tiny --rounds 3` is -m slow).
SMALL = ["--set", "cell.num_devices=4", "--set", "learning.local_epochs=1"]


@pytest.mark.parametrize(
    ("name", "small"),
    [(name, True) for name in SEEDS] + [pytest.param(name, False, marks=pytest.mark.slow) for name in SEEDS],
)
def test_cli_runs_every_seed_algorithm_on_tiny(name: str, small: bool, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "tiny", "--agent", name, "--rounds", "3", "--out", str(out), "--quiet"]
    assert main(args + (SMALL if small else [])) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]
    devices = 4 if small else 10
    for row in rows:
        assert {"accuracy", "sim_time_s", "energy_j", "mean_rho", "upload_bits", "min_covering"} <= set(row)
        assert row["num_arrived"] == devices and 0 <= row["accuracy"] <= 1 and row["energy_j"] > 0
        assert 0 <= row["min_covering"] <= row["mean_covering"] <= devices
    extra = EXTRA[name]
    if extra is not None:
        assert all(math.isfinite(r[extra]) for r in rows)
    assert rows[-1]["mean_rho"] > 0  # every one of them has pruned by round 3
    if name == "unlearning":
        assert rows[-1]["forget_accuracy"] < rows[0]["retained_accuracy"]


# -- DWNP table: physically pruned model ------------------------------------------------------------


def test_physically_pruned_model_equals_the_soft_masked_one_without_norms() -> None:
    import copy

    from agents.literature.physical import physically_pruned
    from fedsimenv.learning.models import build_model
    from fedsimenv.learning.pruning import apply_masks, count_parameters

    model = build_model("small-cnn", (1, 8, 8), 10, torch.Generator().manual_seed(0), torch.device("cpu"))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    layout = ChannelLayout(model, x[:1])
    gates = [torch.ones(size) for size in layout.sizes]
    gates[0][:5] = 0.0
    gates[1][3:9] = 0.0
    masks = layout.masks(gates)
    soft = copy.deepcopy(model)
    apply_masks(soft, masks)
    hard = physically_pruned(model, masks, x)
    assert count_parameters(hard) == sum(int(m.sum()) for m in masks.values()) + sum(
        p.numel() for name, p in model.named_parameters() if name not in masks
    )
    torch.testing.assert_close(hard(x), soft(x), rtol=1e-5, atol=1e-6)
