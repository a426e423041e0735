"""Local SGD with the weights averaged every ``r_W`` local iterations inside a round (DWNP's Alg. 1).

A co-simulation round is one download, local training and one upload. DWNP (Gao et al., Alg. 1)
averages the weights W more often: every ``r_W`` local iterations (``r_W = 5`` in the paper). Here a
round's devices train in lockstep, iteration ``k = 1, 2, ...``; device ``j`` takes ``K_j`` iterations
(``local_epochs * ceil(n_j / batch)``, its own data as in the ordinary round), and at every ``k`` with
``k % r_W == 0`` the devices that still have iterations after ``k`` (``K_j > k``) upload their weights,
the server averages them (the trainer's aggregation rule: masked FedAvg, sample-weighted) and each
downloads the result (under its own mask). A device whose iterations are over has left the round:
its final weights reach the server with the round's ordinary upload, where the trainer aggregates
every device's final state as usual. So device ``j`` takes part in ``(K_j - 1) // r_W`` intra-round
averagings (:func:`intra_round_syncs`), each one upload and one download of its (sub-)model:
:meth:`PeriodicAveraging.extra_bits` adds them to the device's round traffic through the strategy's
``model_cost`` hook, so the timing plane charges them (the waiting at each averaging for the slowest
device is not modelled: a device's round time is its compute plus all its transfers).

Each device keeps its own SGD momentum across the averagings (only W is averaged). The optional
:class:`~fedsimenv.learning.recipe.TrainingRecipe` adds augmentation, weight decay and a per-round
learning-rate schedule over the phases of the run.

:class:`PeriodicAveraging` is a :class:`~fedsimenv.learning.strategy.TrainingStrategy` on its own
(FedAvg with intra-round averaging: the base model of DWNP's tables); strategies with more to do
(DWNP's hypernetwork steps) call :func:`train_periodic` with an ``on_iteration`` callback.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from fedsimenv.learning.cohort import draw_orders, steps_per_epoch
from fedsimenv.learning.plan import DeviceJob, ModelCost, model_cost
from fedsimenv.learning.pruning import Masks
from fedsimenv.learning.recipe import TrainingRecipe
from fedsimenv.learning.strategy import TrainingStrategy

if TYPE_CHECKING:
    from fedsimenv.learning.trainer import TorchTrainer

State = dict[str, torch.Tensor]
Aggregate = Callable[
    [Mapping[str, torch.Tensor], Sequence[Mapping[str, torch.Tensor]], Sequence[Masks], Sequence[float]],
    State,
]
#: ``on_iteration(k, models)`` after iteration ``k``'s step and averaging: the devices' local models.
OnIteration = Callable[[int, Sequence[nn.Module]], None]


def local_iterations(num_samples: int, local_epochs: int, batch_size: int) -> int:
    """``K_j``: a device's local SGD iterations in one round."""
    return local_epochs * steps_per_epoch(num_samples, batch_size)


def sync_iterations(iterations: int, r_w: int) -> list[int]:
    """The iterations ``k < iterations`` after which a device with ``iterations`` local iterations
    takes part in an intra-round averaging of W (``k % r_W == 0``)."""
    return list(range(r_w, iterations, r_w))


def intra_round_syncs(iterations: int, r_w: int) -> int:
    """How many intra-round averagings a device with ``iterations`` local iterations takes part in."""
    return max(0, (iterations - 1) // r_w)


@dataclass(frozen=True)
class PeriodicSGD:
    """Settings of :func:`train_periodic`.

    Attributes:
        learning_rate: This round's SGD step size.
        momentum: SGD momentum.
        batch_size: Minibatch size.
        r_w: Average W every this many local iterations (the paper's ``r_W``).
        recipe: Augmentation and weight decay (its schedule is applied by the caller's rate).
    """

    learning_rate: float
    momentum: float
    batch_size: int
    r_w: int
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)

    def __post_init__(self) -> None:
        if self.r_w < 1:
            raise ValueError(f"r_w must be >= 1 local iterations, got {self.r_w}")


def train_periodic(
    model: nn.Module,
    data: Sequence[tuple[torch.Tensor, torch.Tensor]],
    masks: Sequence[Masks],
    weights: Sequence[float],
    sgd: PeriodicSGD,
    local_epochs: int,
    generator: torch.Generator,
    aggregate: Aggregate,
    on_iteration: OnIteration | None = None,
) -> list[State]:
    """Local SGD of the devices with ``data`` from ``model``, W averaged every ``r_W`` iterations.

    Args:
        model: The downloaded global model (not modified).
        data: Per device, its inputs and labels.
        masks: Per device, its keep-masks (pruned entries held at zero).
        weights: Per device, its aggregation weight (samples).
        sgd: Rate, momentum, batch, ``r_W`` and recipe.
        local_epochs: Passes over each device's data.
        generator: Batch orders and augmentation draws.
        aggregate: The averaging rule ``aggregate(reference, states, masks, weights)``.
        on_iteration: Called after each iteration's step and averaging (DWNP's HN steps).

    Returns:
        Each device's final state (the trainer aggregates them at the end of the round).
    """
    device = next(model.parameters()).device
    locals_: list[nn.Module] = []
    optimizers: list[torch.optim.Optimizer] = []
    batches: list[list[torch.Tensor]] = []
    kept: list[dict[str, torch.Tensor]] = []
    for (x, _), mask in zip(data, masks, strict=True):
        local = copy.deepcopy(model)
        local.train()
        job_masks = {k: m.to(device) for k, m in mask.items()}
        _apply(local, job_masks)
        locals_.append(local)
        kept.append(job_masks)
        optimizers.append(
            torch.optim.SGD(
                local.parameters(),
                lr=sgd.learning_rate,
                momentum=sgd.momentum,
                weight_decay=sgd.recipe.weight_decay,
            )
        )
        orders = draw_orders(len(x), local_epochs, generator)
        batches.append([o[s : s + sgd.batch_size] for o in orders for s in range(0, len(o), sgd.batch_size)])
    iterations = [len(b) for b in batches]
    for k in range(1, max(iterations, default=0) + 1):
        for j, (local, optimizer) in enumerate(zip(locals_, optimizers, strict=True)):
            if k > iterations[j]:
                continue
            x, y = data[j]
            index = batches[j][k - 1].to(x.device)
            inputs = sgd.recipe.augment(x[index], generator)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(local(inputs), y[index]).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            _apply(local, kept[j])
        if k % sgd.r_w == 0:
            staying = [j for j in range(len(locals_)) if iterations[j] > k]
            if staying:
                reference = {n: v.detach() for n, v in model.state_dict().items()}
                averaged = aggregate(
                    reference,
                    [locals_[j].state_dict() for j in staying],
                    [kept[j] for j in staying],
                    [weights[j] for j in staying],
                )
                for j in staying:
                    locals_[j].load_state_dict(averaged)
                    _apply(locals_[j], kept[j])
        if on_iteration is not None:
            on_iteration(k, locals_)
    return [{n: v.detach().clone() for n, v in local.state_dict().items()} for local in locals_]


@torch.no_grad()
def _apply(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


@dataclass(frozen=True)
class PeriodicAveraging:
    """Intra-round W averaging every ``r_w`` local iterations with a training recipe, for a run whose
    learning-rate schedule restarts at each of ``phases`` (lengths in rounds; e.g. DWNP's training
    and fine-tuning phases; a round past their sum keeps the last phase's final rate)."""

    r_w: int = 5
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)
    phases: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.r_w < 1:
            raise ValueError(f"r_w must be >= 1 local iterations, got {self.r_w}")
        if any(p < 1 for p in self.phases):
            raise ValueError(f"phases must be positive round counts, got {self.phases}")

    def with_phases(self, *phases: int) -> PeriodicAveraging:
        return replace(self, phases=tuple(p for p in phases if p > 0))

    def learning_rate(self, base: float, round_index: int) -> float:
        """The rate of 0-based round ``round_index`` of the run."""
        start = 0
        for length in self.phases:
            if round_index < start + length:
                return self.recipe.learning_rate(base, round_index - start, length)
            start += length
        if not self.phases:
            return base
        return self.recipe.learning_rate(base, self.phases[-1] - 1, self.phases[-1])

    def train(
        self,
        trainer: TorchTrainer,
        model: nn.Module,
        jobs: Sequence[DeviceJob],
        round_index: int,
        on_iteration: OnIteration | None = None,
    ) -> list[State]:
        """The round's local training of ``jobs`` from ``model`` (see :func:`train_periodic`)."""
        cfg = trainer.config
        sgd = PeriodicSGD(
            self.learning_rate(cfg.learning_rate, round_index),
            cfg.momentum,
            cfg.batch_size,
            self.r_w,
            self.recipe,
        )
        return train_periodic(
            model,
            [trainer.client_data(job.device) for job in jobs],
            [job.masks for job in jobs],
            [float(trainer.num_samples[job.device]) for job in jobs],
            sgd,
            cfg.local_epochs,
            trainer.generator,
            trainer.aggregate,
            on_iteration,
        )

    def iterations(self, trainer: TorchTrainer, device: int) -> int:
        """``K_j`` of device ``device`` this round."""
        cfg = trainer.config
        return local_iterations(int(trainer.num_samples[device]), cfg.local_epochs, cfg.batch_size)

    def extra_bits(self, trainer: TorchTrainer, device: int, cost: ModelCost) -> tuple[float, float]:
        """(upload, download) bits of device ``device``'s intra-round averagings: each one upload of
        its (sub-)model and one download of the averaged one under its mask."""
        syncs = intra_round_syncs(self.iterations(trainer, device), self.r_w)
        down = cost.download_bits if cost.download_bits is not None else trainer.download_bits()
        return syncs * cost.upload_bits, syncs * down


def base_cost(trainer: TorchTrainer, masks: Masks, sparse_index_overhead: bool = False) -> ModelCost:
    """The trainer's own count for a server-side mask (what ``plan_round`` computes without a
    strategy cost): kept weights (and, for unstructured masks, one index bit per masked entry) up,
    and the same pruned model down when masked."""
    bits = trainer.config.bits_per_param
    cost = model_cost(trainer.model, trainer.input_shape, masks, bits, sparse_index_overhead)
    return replace(cost, download_bits=cost.upload_bits) if masks else cost


def with_extra_bits(
    cost: ModelCost, upload_bits: float, download_bits: float, full_download: float
) -> ModelCost:
    """``cost`` with ``upload_bits`` more up and ``download_bits`` more down."""
    down = cost.download_bits if cost.download_bits is not None else full_download
    return replace(cost, upload_bits=cost.upload_bits + upload_bits, download_bits=down + download_bits)


class PeriodicFedAvg(TrainingStrategy):
    """FedAvg with W averaged every ``r_W`` local iterations inside the round and a training recipe
    (DWNP's base model: its tables' "Base Acc"). Unpruned jobs only (the strategy sets no masks)."""

    def __init__(self, periodic: PeriodicAveraging) -> None:
        self.periodic = periodic
        self.rounds_done = 0

    def reset(self, trainer: TorchTrainer) -> None:
        self.rounds_done = 0

    def model_cost(self, trainer: TorchTrainer, device: int, masks: Masks) -> ModelCost | None:
        cost = base_cost(trainer, masks)
        up, down = self.periodic.extra_bits(trainer, device, cost)
        return with_extra_bits(cost, up, down, trainer.download_bits())

    def local_training(
        self, trainer: TorchTrainer, model: nn.Module, jobs: Sequence[DeviceJob]
    ) -> Sequence[State] | None:
        return self.periodic.train(trainer, model, jobs, self.rounds_done)

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        self.rounds_done += 1
