"""Local training of a round's cohort: batched or sequential, same result.

Every device starts from the global model with its soft mask applied, runs ``local_epochs`` of
minibatch SGD (optionally with momentum) on its own data in a pre-drawn order, and re-applies its
mask after each step so pruned entries stay exactly zero.

The batched path stacks the K devices' parameters (``torch.func.stack_module_state``-style) and
takes one step for all of them at once: the forward runs the K copies together (the grouped layout of
:mod:`fedsimenv.learning.grouped` for convolutional models, ``torch.func.vmap`` otherwise), the
backward is ordinary autograd of the summed per-device losses. A device's last batch of an epoch
may be short: its padded samples have weight 0 in the loss, which is the mean over the batch's real
samples, as in the sequential path, so both give the same weights up to float rounding (tested to
1e-5). Devices with fewer batches finish early, and a step runs only the devices still training: the
stack is ordered by step count, longest first, so those are a prefix of it and each step works on
views of that prefix. The work is then the sum of the devices' own steps, not (longest device's
steps) x K: under a Dirichlet(0.5) split one device can hold a quarter of the data, and running the
finished devices as frozen padding cost 48% more device-steps in the ``tiny`` scenario's first ten
rounds (1,560 instead of 1,056). It needs models without buffers (no BatchNorm running
statistics, which the padding would also distort): :func:`can_batch` says whether a model qualifies;
the trainer falls back to the sequential path otherwise, and where one device's step is large
enough to keep the CPU busy alone (:func:`prefer_batched`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from fedsimenv.learning.allocator import keep_freed_memory
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.grouped import UnsupportedModel, grouped_for
from fedsimenv.learning.states import StackedStates, State

Engine = Literal["auto", "grouped", "vmap"]
ENGINES: tuple[Engine, ...] = ("auto", "grouped", "vmap")


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


#: Forward FLOPs of one device's minibatch above which the batched path stops paying on a CPU.
#: Measured speed-up of batched over sequential, 8 devices, 2-core x86 (``python -m bench.cohort
#: --crossover``): small CNN batch 16 (10 MFLOP) 2.3x, batch 64 (40 MFLOP) 1.9x, batch 256 (159 MFLOP)
#: 1.2x; ResNet-20 on 32x32 batch 8 (655 MFLOP) 1.6x, batch 32 (2.6 GFLOP) 0.95x. Small steps leave
#: the cores idle one device at a time; large ones are compute-bound on their own, and the grouped
#: convolutions are then no faster than the dense ones. The threshold sits between the last two.
CPU_BATCHED_MAX_STEP_FLOPS = 1e9


def prefer_batched(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, device: torch.device | str = "cpu"
) -> bool:
    """The ``cohort: auto`` policy: batch the cohort when the model allows it and, on a CPU, when one
    device's minibatch is small enough (:data:`CPU_BATCHED_MAX_STEP_FLOPS`) for batching to pay.

    Deterministic (no timing), so a seed still fixes which path runs. On CUDA the batched path is
    always preferred: many small kernels are what a GPU handles worst.
    """
    if not can_batch(model):
        return False
    if torch.device(device).type == "cuda":
        return True
    return forward_flops_per_sample(model, input_shape) * batch_size <= CPU_BATCHED_MAX_STEP_FLOPS


def _batches(job: LocalJob, batch_size: int) -> list[torch.Tensor]:
    return [order[s : s + batch_size] for order in job.orders for s in range(0, len(order), batch_size)]


def _num_steps(job: LocalJob, batch_size: int) -> int:
    """How many SGD steps ``job`` takes: whole batches per epoch, the last one possibly short."""
    return sum(steps_per_epoch(len(order), batch_size) for order in job.orders)


def train_sequential(model: nn.Module, jobs: Sequence[LocalJob], sgd: SGDConfig) -> list[State]:
    """Train each job in turn with ``torch.optim.SGD``; returns each device's final state dict."""
    keep_freed_memory()
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


class PhaseClock:
    """Wall time per phase of :func:`train_batched`, for profiling (``bench/round_breakdown.py``).

    ``mark(phase)`` charges the time since the previous mark to ``phase``; :attr:`seconds` sums them.
    Phases: ``setup`` (stacking, masks, data, step plan, model trace), then per step ``data`` (gather
    of the batch), ``forward`` (the cohort's summed loss), ``backward`` (autograd), ``optimizer``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def train_batched(
    model: nn.Module,
    jobs: Sequence[LocalJob],
    sgd: SGDConfig,
    engine: Engine = "auto",
    clock: PhaseClock | None = None,
) -> Sequence[State]:
    """Train all jobs at once; same result as :func:`train_sequential` up to float rounding.

    Returns the devices' final states as :class:`~fedsimenv.learning.states.StackedStates` (a sequence
    of state dicts, kept as one stacked tensor per entry for the aggregation rules).

    Args:
        model: The global model (not modified).
        jobs: One per device.
        sgd: Optimiser settings shared by all devices.
        engine: How the K copies run: "grouped" (:mod:`fedsimenv.learning.grouped`, one grouped
            convolution per layer), "vmap" (``torch.func.vmap`` of the forward, any buffer-free
            model), or "auto" (grouped for convolutional models whose operations allow it, else
            vmap).
        clock: When given, the wall time of each phase is added to it (see :class:`PhaseClock`);
            the result is the same.

    Raises:
        ValueError: the model has buffers (see :func:`can_batch`), or ``engine="grouped"`` for a
            model the grouped layout cannot run.
    """
    if clock is not None:
        clock.mark("outside")
    keep_freed_memory()
    if not can_batch(model):
        raise ValueError("batched cohort training needs a model without buffers (e.g. no BatchNorm)")
    if not jobs:
        return []
    device = next(model.parameters()).device
    base = {k: v.detach() for k, v in model.named_parameters()}
    num = len(jobs)
    # Devices sorted by their step count, longest first (stable, so equal counts keep job order):
    # the devices still training at any step are then a prefix of the stack, and a step runs only
    # them (see the module docstring). ``order[i]`` is the job at stack position i.
    counts = [_num_steps(job, sgd.batch_size) for job in jobs]
    order = sorted(range(num), key=lambda k: -counts[k])
    jobs = [jobs[k] for k in order]
    mask_stack = {
        k: torch.stack(
            [job.masks[k].to(device, v.dtype) if k in job.masks else torch.ones_like(v) for job in jobs]
        )
        for k, v in base.items()
        if any(k in job.masks for job in jobs)
    }
    names = list(base)
    params = {k: v.unsqueeze(0).repeat(num, *([1] * v.dim())) for k, v in base.items()}
    for k, mask in mask_stack.items():
        params[k] = params[k] * mask
    momentum_buffers = [torch.zeros_like(v) for v in params.values()]

    # All devices' data in one tensor, so each step gathers its (K, B) batch in one indexing op.
    offsets = [0, *torch.cumsum(torch.tensor([len(job.y) for job in jobs]), 0).tolist()]
    x_all = torch.cat([job.x for job in jobs])
    y_all = torch.cat([job.y for job in jobs])
    index_all, weight_all = _step_plan(jobs, offsets, sgd.batch_size, device)
    # active[s]: how many devices (a prefix of the stack) still have a batch at step s.
    active = [sum(1 for c in counts if c > step) for step in range(len(index_all))]

    total_loss = _summed_loss(model, engine)
    full = [params[k] for k in names]
    full_masks = [mask_stack.get(k) for k in names]
    mark = clock.mark if clock is not None else _no_mark
    mark("setup")
    step = 0
    while step < len(active):
        # One segment of steps with the same active prefix: leaf views of its first ``live`` rows,
        # so the in-place updates land in the full stacks and the finished devices cost nothing.
        live = active[step]
        end = step
        while end < len(active) and active[end] == live:
            end += 1
        stacked = [v[:live].detach().requires_grad_(True) for v in full]
        segment = dict(zip(names, stacked, strict=True))
        buffers = [b[:live] for b in momentum_buffers]
        masks = [None if m is None else m[:live] for m in full_masks]
        for index, weight in zip(index_all[step:end], weight_all[step:end], strict=True):
            index, weight = index[:live], weight[:live]
            x, y = x_all[index], y_all[index]
            mark("data")
            total = total_loss(segment, x, y, weight)
            mark("forward")
            grads = list(torch.autograd.grad(total, stacked))
            mark("backward")
            with torch.no_grad():
                _sgd_step(stacked, grads, buffers, masks, sgd)
            mark("optimizer")
        step = end
    # The stacked tensors themselves, which nothing else holds: no per-device split or copy, unless
    # the devices were reordered (then one gather puts them back in job order).
    if order != list(range(num)):
        inverse = torch.empty(num, dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(num)
        full = [v.index_select(0, inverse.to(v.device)) for v in full]
    return StackedStates(dict(zip(names, full, strict=True)))


def _no_mark(phase: str) -> None:
    pass


#: ``f(params, x, y, w)``: the cohort's summed loss for stacked ``params`` (K, ...) and a (K, B) batch.
SummedLoss = Callable[[Mapping[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _summed_loss(model: nn.Module, engine: Engine) -> SummedLoss:
    """``f(params, x, y, w)``: the sum over devices of each device's weighted mean cross-entropy.

    Only the forward is batched; ordinary autograd runs the backward of the sum. Device k's parameters
    reach only device k's loss, so d(sum)/d(params[k]) is device k's own gradient. (That is faster on
    CPU than ``vmap(grad(loss))``, whose per-op transform layers cost more than the kernels.)
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown cohort engine {engine!r}; allowed values: {', '.join(ENGINES)}")
    grouped = None
    # auto: grouped for convolutional models (4.4x vs 3.7x over sequential for the small CNN at N = 50,
    # ResNet-20/MobileNetV2 with GroupNorm 5-10% faster); vmap for the rest (an MLP's linear layers
    # gain nothing from the grouped layout and pay its transposes). Measured by bench/cohort.
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if engine == "grouped" or (engine == "auto" and has_conv):
        try:
            grouped = grouped_for(model)
        except UnsupportedModel:
            if engine == "grouped":
                raise
    if grouped is not None:
        forward = grouped

        def grouped_loss(
            params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
        ) -> torch.Tensor:
            logits = forward(params, x)  # (K, B, classes)
            per_sample = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(w)
            return ((per_sample * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)).sum()

        return grouped_loss

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (x,))
        per_sample = F.cross_entropy(logits, y, reduction="none")
        return (per_sample * w).sum() / w.sum().clamp_min(1.0)

    per_device = vmap(loss)

    def vmap_loss(
        params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        return per_device(dict(params), x, y, w).sum()

    return vmap_loss


def _sgd_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
    sgd: SGDConfig,
) -> None:
    """torch.optim.SGD's update in place for every device at once: buf = momentum * buf + g (buf starts
    as g), p -= lr * buf; then the masks zero the pruned entries again."""
    if sgd.momentum > 0:
        torch._foreach_mul_(buffers, sgd.momentum)
        torch._foreach_add_(buffers, grads)
        torch._foreach_add_(params, buffers, alpha=-sgd.learning_rate)
    else:
        torch._foreach_add_(params, grads, alpha=-sgd.learning_rate)
    for p, mask in zip(params, masks, strict=True):
        if mask is not None:
            p.mul_(mask)


def _step_plan(
    jobs: Sequence[LocalJob], offsets: Sequence[int], batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's (K, B) sample indices into the concatenated data and loss weights.

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
    return index.to(device), weight.to(device)


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    return math.ceil(num_samples / batch_size)
