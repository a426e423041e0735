"""The FedAvg-round benchmark's workload, shared by every system so that it is literally the same.

sklearn digits split into train and test as the trainer does (stratified, ``test_fraction`` 0.2, from
the ``partition`` stream of the seed), the training set dealt IID to N clients, the small CNN
(conv16-conv32-pool-fc) initialised from a seeded generator, and each client's sample order for each
round drawn from its own seeded ``torch.Generator``. The hand-written local training loop lives here
too: the plain-loop system and the Flower peer's ``ClientApp`` both call it, as a user would.

Importing this module needs only torch, numpy and fedsimenv (the Flower peer imports it in
``.venv-bench``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedsimenv.learning.allocator import keep_freed_memory
from fedsimenv.learning.data import iid_partition, load_digits, train_test_split
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.models import build_model
from fedsimenv.seeding import EpisodeStreams, child_sequence

State = dict[str, torch.Tensor]

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10
MODEL_NAME = "small-cnn"
# The project's defaults (LearningConfig) for test fraction, batch and learning rate. Momentum 0.9 (as in
# bench/cohort.py) rather than the default 0: it learns faster at small N, and it exercises the momentum
# path of every system (each client starts a fresh optimiser per round, as a user's loop does).
TEST_FRACTION = 0.2
BATCH_SIZE = 16
LEARNING_RATE = 0.05
MOMENTUM = 0.9


@dataclass(frozen=True)
class Workload:
    """Everything a system needs for ``num_clients`` clients; identical for a given seed.

    Attributes:
        seed: The scenario-style seed everything derives from.
        client_x: Each client's inputs, (n_k, 1, 8, 8) float32.
        client_y: Each client's labels, (n_k,).
        test_x: The global test set's inputs.
        test_y: The global test set's labels.
    """

    seed: int
    client_x: tuple[torch.Tensor, ...]
    client_y: tuple[torch.Tensor, ...]
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def num_clients(self) -> int:
        return len(self.client_y)

    @property
    def num_samples(self) -> list[int]:
        return [len(y) for y in self.client_y]

    def initial_model(self) -> nn.Module:
        """A fresh small CNN with the run's initial weights (the same in every process)."""
        return build_model(MODEL_NAME, INPUT_SHAPE, NUM_CLASSES, torch.Generator().manual_seed(self.seed))

    def order(self, round_index: int, client: int) -> torch.Tensor:
        """Client ``client``'s sample order in round ``round_index`` (0-based); see :func:`client_order`."""
        return client_order(self.seed, round_index, client, len(self.client_y[client]))


def build_workload(num_clients: int, seed: int = 0) -> Workload:
    """The digits split and IID partition exactly as ``TorchTrainer.reset`` makes them for ``seed``.

    Also applies fedsimenv's allocator tuning (:func:`keep_freed_memory`) in the calling process, so
    every system, the Flower clients in their Ray workers included, runs with the same allocator.
    """
    keep_freed_memory()
    split_rng = EpisodeStreams(np.random.SeedSequence(seed)).numpy("partition")
    train, test = train_test_split(load_digits(), TEST_FRACTION, split_rng)
    if num_clients > len(train):
        raise ValueError(f"{num_clients} clients cannot share {len(train)} training samples")
    parts = iid_partition(len(train), num_clients, split_rng)
    return Workload(
        seed=seed,
        client_x=tuple(torch.from_numpy(train.x[p]) for p in parts),
        client_y=tuple(torch.from_numpy(train.y[p]) for p in parts),
        test_x=torch.from_numpy(test.x),
        test_y=torch.from_numpy(test.y),
    )


def round_flops(workload: Workload) -> float:
    """One round's dense fp32 work: every training sample's forward and backward (one local epoch,
    3x the forward FLOPs) and the evaluation's forward over the test set."""
    model = workload.initial_model()
    forward = forward_flops_per_sample(model, INPUT_SHAPE)
    return 3 * forward * sum(workload.num_samples) + forward * len(workload.test_y)


def client_order(seed: int, round_index: int, client: int, num_samples: int) -> torch.Tensor:
    """One local epoch's sample order, from a generator seeded by (seed, round, client).

    A pure function of its arguments, so that a Flower client in a Ray worker draws the same order as
    the in-process systems without anything being shipped to it.
    """
    root = child_sequence(np.random.SeedSequence(seed), "bench-orders")
    state = np.random.SeedSequence(root.generate_state(4), spawn_key=(round_index, client))
    torch_seed = int(state.generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)
    return torch.randperm(num_samples, generator=torch.Generator().manual_seed(torch_seed))


def train_client_plain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor) -> nn.Module:
    """One local epoch of minibatch SGD in ``order``, written as a user would (``torch.optim.SGD``).

    Trains ``model`` in place and returns it.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    model.train()
    for start in range(0, len(order), BATCH_SIZE):
        batch = order[start : start + BATCH_SIZE]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return model


@torch.no_grad()
def global_accuracy(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """Centralised evaluation: the global model's accuracy on the whole global test set."""
    model.eval()
    return float((model(test_x).argmax(dim=1) == test_y).float().mean())
