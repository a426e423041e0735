"""Local training of a round's cohort: batched (torch.func) or sequential, same result.

Every device starts from the global model with its soft mask applied, runs ``local_epochs`` of
minibatch SGD (optionally with momentum) on its own data in a pre-drawn order, and re-applies its
mask after each step so pruned entries stay exactly zero.

The batched path stacks the K devices' parameters (``torch.func.stack_module_state``-style) and
takes one ``vmap(grad(loss))`` step for all of them at once. Devices with fewer samples are padded:
padded samples have weight 0 in the loss, and a device with no batch left at a step is frozen. The
loss of a batch is the mean over its real samples, as in the sequential path, so both give the same
weights up to float rounding (tested to 1e-5). It needs models without buffers (no BatchNorm running
statistics, which the padding would also distort): :func:`can_batch` says whether a model qualifies;
the trainer falls back to the sequential path otherwise.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LocalJob:
    """One device's local training: its data (on the model's device), mask and sample orders.

    Attributes:
        x: Inputs, (n, C, H, W).
        y: Labels, (n,).
        masks: Soft keep-masks by parameter name (absent = all kept).
        orders: One permutation of ``range(n)`` per local epoch.
    """

    x: torch.Tensor
    y: torch.Tensor
    masks: Mapping[str, torch.Tensor]
    orders: Sequence[torch.Tensor]


@dataclass(frozen=True)
class SGDConfig:
    learning_rate: float
    momentum: float
    batch_size: int


def draw_orders(num_samples: int, epochs: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The sample order of each local epoch, drawn from ``generator`` (on the CPU)."""
    return [torch.randperm(num_samples, generator=generator) for _ in range(epochs)]


def can_batch(model: nn.Module) -> bool:
    """Whether the batched path applies: the model has no buffers (e.g. no BatchNorm)."""
    return next(iter(model.buffers()), None) is None


def _batches(job: LocalJob, batch_size: int) -> list[torch.Tensor]:
    return [order[s : s + batch_size] for order in job.orders for s in range(0, len(order), batch_size)]


def train_sequential(model: nn.Module, jobs: Sequence[LocalJob], sgd: SGDConfig) -> list[State]:
    """Train each job in turn with ``torch.optim.SGD``; returns each device's final state dict."""
    results: list[State] = []
    device = next(model.parameters()).device
    for job in jobs:
        local = copy.deepcopy(model)
        params = dict(local.named_parameters())
        masks = {k: m.to(device) for k, m in job.masks.items()}
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
        optimizer = torch.optim.SGD(local.parameters(), lr=sgd.learning_rate, momentum=sgd.momentum)
        local.train()
        for batch in _batches(job, sgd.batch_size):
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(local(job.x[batch]), job.y[batch]).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            with torch.no_grad():
                for name, mask in masks.items():
                    params[name].mul_(mask)
        results.append({k: v.detach().clone() for k, v in local.state_dict().items()})
    return results


def train_batched(model: nn.Module, jobs: Sequence[LocalJob], sgd: SGDConfig) -> list[State]:
    """Train all jobs at once with ``vmap(grad(loss))``; same result as :func:`train_sequential`.

    Raises:
        ValueError: the model has buffers (see :func:`can_batch`).
    """
    if not can_batch(model):
        raise ValueError("batched cohort training needs a model without buffers (e.g. no BatchNorm)")
    if not jobs:
        return []
    device = next(model.parameters()).device
    base = {k: v.detach() for k, v in model.named_parameters()}
    num = len(jobs)
    mask_stack = {
        k: torch.stack(
            [job.masks[k].to(device, v.dtype) if k in job.masks else torch.ones_like(v) for job in jobs]
        )
        for k, v in base.items()
        if any(k in job.masks for job in jobs)
    }
    params = {k: v.unsqueeze(0).repeat(num, *([1] * v.dim())) for k, v in base.items()}
    for k, mask in mask_stack.items():
        params[k] = params[k] * mask
    momentum_buffers = {k: torch.zeros_like(v) for k, v in params.items()}

    # All devices' data in one tensor, so each step gathers its (K, B) batch in one indexing op.
    offsets = [0, *torch.cumsum(torch.tensor([len(job.y) for job in jobs]), 0).tolist()]
    x_all = torch.cat([job.x for job in jobs])
    y_all = torch.cat([job.y for job in jobs])
    index_all, weight_all, active_all = _step_plan(jobs, offsets, sgd.batch_size, device)

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (x,))
        per_sample = F.cross_entropy(logits, y, reduction="none")
        return (per_sample * w).sum() / w.sum().clamp_min(1.0)

    batched_grad = vmap(grad(loss))
    everyone = active_all.all(dim=1).tolist()  # steps where no client is frozen (the common case)
    for step, (index, weight, active) in enumerate(zip(index_all, weight_all, active_all, strict=True)):
        grads = batched_grad(params, x_all[index], y_all[index], weight)
        for k, g in grads.items():
            keep = active.view(-1, *([1] * (g.dim() - 1)))
            if sgd.momentum > 0:
                # torch.optim.SGD: buf = momentum * buf + g (buf starts as g), p -= lr * buf.
                new_buffer = sgd.momentum * momentum_buffers[k] + g
                momentum_buffers[k] = (
                    new_buffer if everyone[step] else torch.where(keep, new_buffer, momentum_buffers[k])
                )
                update = new_buffer
            else:
                update = g
            new = params[k] - sgd.learning_rate * update
            if k in mask_stack:
                new = new * mask_stack[k]
            params[k] = new if everyone[step] else torch.where(keep, new, params[k])
    return [{k: params[k][i].clone() for k in base} for i in range(num)]


def _step_plan(
    jobs: Sequence[LocalJob], offsets: Sequence[int], batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every step's (K, B) sample indices into the concatenated data, loss weights and active flags.

    Built once per cohort with tensor ops (a Python loop over clients and epochs, not over steps). A
    batch never crosses an epoch boundary: each epoch's order is padded to whole batches with -1, which
    becomes weight 0 (and index = the client's first sample, any real one will do).
    """
    plans = []
    for job in jobs:
        per_epoch = [
            F.pad(order, (0, steps_per_epoch(len(order), batch_size) * batch_size - len(order)), value=-1)
            for order in job.orders
        ]
        plans.append(torch.cat(per_epoch).view(-1, batch_size))
    steps = max(len(p) for p in plans)
    padded = torch.stack([F.pad(p, (0, 0, 0, steps - len(p)), value=-1) for p in plans])  # (K, S, B)
    offset = torch.tensor(offsets[: len(jobs)], dtype=torch.long).view(-1, 1, 1)
    real = padded >= 0
    index = torch.where(real, padded + offset, offset).transpose(0, 1).contiguous()  # (S, K, B)
    weight = real.to(torch.float32).transpose(0, 1).contiguous()
    active = weight.sum(dim=2) > 0
    return index.to(device), weight.to(device), active.to(device)


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    return math.ceil(num_samples / batch_size)
