"""Aggregation rules as pure functions of the clients' results (Flower-style ``aggregate(results)``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

State = dict[str, torch.Tensor]


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], num_samples: Sequence[float]) -> State:
    """FedAvg (McMahan et al., 2017): the sample-weighted mean of the client states."""
    if not states:
        raise ValueError("fedavg needs at least one client state")
    weights = torch.as_tensor(num_samples, dtype=torch.float64)
    weights = weights / weights.sum()
    out: State = {}
    for key, ref in states[0].items():
        acc = sum(float(w) * s[key].to(torch.float64) for w, s in zip(weights, states, strict=True))
        out[key] = torch.as_tensor(acc).to(ref.dtype)
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
        num = torch.zeros_like(global_value, dtype=torch.float64)
        den = torch.zeros_like(global_value, dtype=torch.float64)
        for state, mask, n in zip(states, masks, num_samples, strict=True):
            keep = mask[key].to(torch.float64) if key in mask else torch.ones_like(num)
            num += float(n) * keep * state[key].to(torch.float64)
            den += float(n) * keep
        averaged = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), global_value.to(torch.float64))
        out[key] = averaged.to(global_value.dtype)
    return out
