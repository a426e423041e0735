"""Aggregation rules as pure functions of the clients' results (Flower-style ``aggregate(results)``).

Same-shape (soft-masked) rules are registered in :data:`AGGREGATORS` by name: ``masked-fedavg``,
``r2sp`` (FedMP). HeteroFL's width slices are aggregated by :func:`heterofl_aggregate`; inside the
trainer the same rule is masked FedAvg over leading-channel masks (pruning method ``width``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from fedsimenv.learning.states import stacked_entry
from fedsimenv.registry import Registry

State = dict[str, torch.Tensor]


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], num_samples: Sequence[float]) -> State:
    """FedAvg (McMahan et al., 2017): the sample-weighted mean of the client states."""
    if not states:
        raise ValueError("fedavg needs at least one client state")
    weights = torch.as_tensor(num_samples, dtype=torch.float64)
    weights = weights / weights.sum()
    out: State = {}
    for key, ref in states[0].items():
        # One (clients, ...) stack per entry and one weighted reduction: no Python loop over clients.
        stacked = stacked_entry(states, key).to(torch.float64)
        out[key] = torch.tensordot(weights.to(stacked.device), stacked, dims=1).to(ref.dtype)
    return out


def masked_fedavg(
    global_state: Mapping[str, torch.Tensor],
    states: Sequence[Mapping[str, torch.Tensor]],
    masks: Sequence[Mapping[str, torch.Tensor]],
    num_samples: Sequence[float],
) -> State:
    """Each entry averaged over the clients that *kept* it, weighted by their samples.

    An entry no client kept keeps its global value. Entries without a mask count as kept by all, so
    with no masks this is exactly :func:`fedavg`. This avoids shrinking weights towards zero, which a
    plain average of zero-filled pruned models would do.
    """
    if not states:
        raise ValueError("masked_fedavg needs at least one client state")
    out: State = {}
    for key, global_value in global_state.items():
        shape = (-1, *([1] * global_value.dim()))
        weight = torch.as_tensor(num_samples, dtype=torch.float64, device=global_value.device).view(shape)
        values = stacked_entry(states, key).to(torch.float64)
        if any(key in mask for mask in masks):
            ones = torch.ones_like(global_value, dtype=torch.bool)
            keep = torch.stack([mask.get(key, ones).to(global_value.device, torch.bool) for mask in masks])
            kept_weight = weight * keep
        else:
            kept_weight = weight.expand_as(values)
        num = (kept_weight * values).sum(dim=0)
        den = kept_weight.sum(dim=0)
        averaged = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), global_value.to(torch.float64))
        out[key] = averaged.to(global_value.dtype)
    return out


def residual_recovery(
    global_state: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
) -> State:
    """FedMP's R2SP step for one device: its trained sub-model scattered back into the full shape,
    with the pruned entries taken from the current global model (the "residual")."""
    out: State = {}
    for key, global_value in global_state.items():
        if key in mask:
            out[key] = torch.where(mask[key].to(global_value.device), state[key], global_value)
        else:
            out[key] = state[key].clone()
    return out


def r2sp_fedavg(
    global_state: Mapping[str, torch.Tensor],
    states: Sequence[Mapping[str, torch.Tensor]],
    masks: Sequence[Mapping[str, torch.Tensor]],
    num_samples: Sequence[float],
) -> State:
    """FedMP (Jiang et al., 2022) residual recovery, then FedAvg over all arrived devices.

    Every device contributes to every entry: its trained value where it kept the entry, the global
    value where it pruned it. So a pruned entry moves towards the devices that trained it but by less
    than under :func:`masked_fedavg` (it is pulled back by the devices that pruned it).
    """
    recovered = [residual_recovery(global_state, s, m) for s, m in zip(states, masks, strict=True)]
    return fedavg(recovered, num_samples)


def width_slice(global_state: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size]) -> State:
    """HeteroFL's sub-model: the leading slice ``[:d0, :d1, ...]`` of each global tensor."""
    return {key: global_state[key][tuple(slice(0, d) for d in shapes[key])].clone() for key in shapes}


def heterofl_aggregate(
    global_state: Mapping[str, torch.Tensor],
    states: Sequence[Mapping[str, torch.Tensor]],
    num_samples: Sequence[float] | None = None,
) -> State:
    """HeteroFL (Diao et al., ICLR 2021): clients hold leading width slices of different sizes; each
    global entry becomes the (sample-weighted) mean over the clients whose slice covers it, and keeps
    its global value if none does.

    HeteroFL averages covered entries with equal weights; pass ``num_samples=None`` for that.
    """
    if not states:
        raise ValueError("heterofl_aggregate needs at least one client state")
    weights = [1.0] * len(states) if num_samples is None else [float(n) for n in num_samples]
    out: State = {}
    for key, global_value in global_state.items():
        num = torch.zeros_like(global_value, dtype=torch.float64)
        den = torch.zeros_like(global_value, dtype=torch.float64)
        for state, w in zip(states, weights, strict=True):
            value = state[key]
            region = tuple(slice(0, d) for d in value.shape)
            num[region] += w * value.to(torch.float64)
            den[region] += w
        averaged = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), global_value.to(torch.float64))
        out[key] = averaged.to(global_value.dtype)
    return out


#: ``aggregate(global_state, states, masks, num_samples)`` for soft-masked (same-shape) client states.
Aggregator = Callable[
    [
        Mapping[str, torch.Tensor],
        Sequence[Mapping[str, torch.Tensor]],
        Sequence[Mapping[str, torch.Tensor]],
        Sequence[float],
    ],
    State,
]

AGGREGATORS: Registry[Aggregator] = Registry("aggregation rule")
AGGREGATORS.register("masked-fedavg")(masked_fedavg)
AGGREGATORS.register("r2sp")(r2sp_fedavg)


def staleness_weight(staleness: int) -> float:
    """FedBuff's polynomial staleness discount ``1 / sqrt(1 + staleness)`` (Nguyen et al., 2022)."""
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    return float(1.0 / np.sqrt(1.0 + staleness))


def buffered_async_update(
    global_state: Mapping[str, torch.Tensor],
    start_states: Sequence[Mapping[str, torch.Tensor]],
    states: Sequence[Mapping[str, torch.Tensor]],
    masks: Sequence[Mapping[str, torch.Tensor]],
    num_samples: Sequence[float],
    staleness: Sequence[int],
) -> State:
    """Buffered asynchronous aggregation: the current global model plus the weighted mean of updates.

    Update i is ``states[i] - start_states[i]`` (the device trained from the model it downloaded, which
    may be older than ``global_state``). Each entry's mean is taken over the updates that kept it,
    weighted by ``num_samples[i] * staleness_weight(staleness[i])``; an entry nobody kept is unchanged.
    """
    if not states:
        raise ValueError("buffered_async_update needs at least one update")
    weights = [float(n) * staleness_weight(int(s)) for n, s in zip(num_samples, staleness, strict=True)]
    deltas = [
        {key: state[key].to(torch.float64) - start[key].to(torch.float64) for key in global_state}
        for start, state in zip(start_states, states, strict=True)
    ]
    # The masked mean of the deltas; an entry nobody kept gets the "global" value 0: no change.
    zero = {key: torch.zeros_like(value, dtype=torch.float64) for key, value in global_state.items()}
    mean_delta = masked_fedavg(zero, deltas, masks, weights)
    return {
        key: (value.to(torch.float64) + mean_delta[key]).to(value.dtype)
        for key, value in global_state.items()
    }
