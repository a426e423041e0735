"""How the deployed (deterministic, 0/1) sub-networks are read out of DWNP's hypernetwork.

What the paper specifies (Gao et al., Secs. 3.3 and 3.5): the HN generates logits, the architecture
vector is their straight-through Gumbel-sigmoid, and Eq. 6's regulariser
``R(x, y) = log(max(x, y) / y)`` ties the sub-networks' FLOPs to the budgets p_s and p_d^n while the
HN trains. What it leaves open: how the architecture that is pruned and deployed (Alg. 1's "pruning
the model with resulting a^0", and each device's ``a^0 * a^n``) is obtained from the trained HN, and
what happens when it is not at its budget.

Two rules here (``DWNPSettings.deploy``):

* ``"threshold"`` (the paper read literally): the noise-free gate ``[sigmoid(z / t) > 0.5]``, i.e.
  ``z > 0``, with at least one channel per group. R is one-sided: it is zero anywhere below the
  budget, so nothing but the cross-entropy holds a sub-network up, and after short training the
  deployed sub-networks end well below their budgets (65-76% FLOPs reduction asked 50% in the
  reproduction before this rule existed).
* ``"projection"`` (ours, the default): a FLOPs-budget projection of the same logits. Each group
  keeps its highest-logit channels (the HN's ranking, as the threshold rule), and how many is chosen
  so the sub-network's exact FLOPs fraction is at the budget from both sides: (1) one global
  threshold over every group's logits (the threshold rule with the threshold moved from 0 to where
  the FLOPs cross the budget; of the two sub-networks either side of the crossing, the nearer);
  (2) since a single channel of a narrow layer can be several percent of the FLOPs, the per-group
  counts are then adjusted by the fewest steps of +-1 channel in one or two groups (each step the
  one that brings the FLOPs nearest the budget) until within ``tolerance`` of it or no step
  improves. Why: p_s and p_d^n are what the method is compared at (the paper's tables report the
  FLOPs reductions equal to the budgets), and the training regulariser stays the paper's.

Both rules keep at least one channel per group (a group with none would disconnect the network) and
work on Torch-Pruning's coupled channel groups (residual-joined channels share one gate), so a
budget below the network with one channel per group gives that network, and a device budget above
its server-side sub-network's FLOPs gives the server-side sub-network (a device's sub-network lies
inside ``a^0``: Eq. 7's ``a^0 * a^n``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from agents.literature.channel_layout import ChannelLayout

#: Relative distance to the budget at which the count adjustment stops (well inside the 5% the
#: reproduction and the tests hold the deployed sub-networks to).
DEFAULT_TOLERANCE = 0.01
#: Largest change of one group's count in one adjustment move.
ADJUST_WINDOW = 2


def project_to_flops_budget(
    layout: ChannelLayout,
    scores: Sequence[torch.Tensor],
    budget: float,
    allowed: Sequence[torch.Tensor] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[torch.Tensor]:
    """0/1 gates keeping, in every group, the highest-``scores`` channels, as many as bring the
    forward FLOPs to ``budget`` x the unpruned model's (the ``"projection"`` rule above).

    Args:
        layout: The model's channel groups and FLOPs.
        scores: Per group, one score per channel (the HN's logits): higher = kept first.
        budget: Kept fraction of the unpruned model's FLOPs, in (0, 1].
        allowed: Per group, 0/1 gates of the channels that may be kept (a device's sub-network lies
            inside the server-side one); every channel when None.
        tolerance: Relative distance ``|F / (budget F_total) - 1|`` at which the adjustment stops.

    Returns:
        Per group, a float 0/1 gate vector with at least one channel kept.
    """
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    sizes = layout.sizes
    orders: list[torch.Tensor] = []  # per group: allowed channels, best score first
    values: list[torch.Tensor] = []
    device = scores[0].device if scores else torch.device("cpu")
    for g, (z, size) in enumerate(zip(scores, sizes, strict=True)):
        z = z.detach().cpu().double()
        if allowed is None:
            ids = torch.arange(size)
        else:
            ids = torch.nonzero(allowed[g].detach().cpu() > 0.5).flatten()
        if len(ids) == 0:
            raise ValueError(f"group {g} allows no channel")
        order = ids[torch.argsort(z[ids], descending=True, stable=True)]
        orders.append(order)
        values.append(z[order])
    caps = [len(order) for order in orders]

    def flops(counts: Sequence[int]) -> float:
        return layout.flops_of_fractions([k / c for k, c in zip(counts, sizes, strict=True)])

    target = budget * layout.total_flops
    if flops(caps) <= target:
        counts = caps  # everything allowed fits (e.g. a device budget above its server's FLOPs)
    else:
        counts = _global_threshold_counts(values, flops, target)
        counts = _adjust_counts(counts, caps, flops, target, tolerance)
    gates: list[torch.Tensor] = []
    for order, size, k in zip(orders, sizes, counts, strict=True):
        gate = torch.zeros(size)
        gate[order[:k]] = 1.0
        gates.append(gate.to(device))
    return gates


def _global_threshold_counts(
    values: Sequence[torch.Tensor], flops: Callable[[Sequence[int]], float], target: float
) -> list[int]:
    """Per-group counts of one threshold over all groups' sorted scores (each group's best channel
    always kept), the threshold placed where the FLOPs cross ``target`` (the nearer side)."""
    # Every channel but each group's first, in one ranking (ties: group order, then channel order).
    rest = [(float(v), g) for g, vals in enumerate(values) for v in vals[1:]]
    ranking = [g for _, g in sorted(rest, key=lambda item: -item[0])]

    def counts_at(prefix: int) -> list[int]:
        counts = [1] * len(values)
        for g in ranking[:prefix]:
            counts[g] += 1
        return counts

    # FLOPs grow with every added channel: bisect for the longest prefix at or below the target.
    low, high = 0, len(ranking)
    if flops(counts_at(0)) > target:
        return counts_at(0)  # the budget is below one channel per group
    while low < high:
        mid = (low + high + 1) // 2
        if flops(counts_at(mid)) <= target:
            low = mid
        else:
            high = mid - 1
    below = counts_at(low)
    if low == len(ranking):
        return below
    above = counts_at(low + 1)
    return above if flops(above) - target < target - flops(below) else below


def _adjust_counts(
    counts: Sequence[int],
    caps: Sequence[int],
    flops: Callable[[Sequence[int]], float],
    target: float,
    tolerance: float,
    window: int = ADJUST_WINDOW,
) -> list[int]:
    """Move the per-group counts (each within [1, cap]) until the FLOPs are within ``tolerance``
    (relative) of ``target`` or no move gets nearer.

    A move changes one group's count by at most ``window`` and sets one other group's count to the
    value nearest the target (exact: the FLOPs are linear in each group's kept fraction with the
    others fixed). Of the moves landing within the tolerance the smallest (fewest channels changed)
    is taken, else the one nearest the target.
    """
    current = list(counts)
    error = abs(flops(current) - target)
    while error > tolerance * target:
        best: tuple[int, float, list[int]] | None = None  # (channels changed, error, counts)
        for candidate in _moves(current, caps, flops, target, window):
            e = abs(flops(candidate) - target)
            if e >= error:
                continue
            changed = sum(abs(k - c) for k, c in zip(candidate, current, strict=True))
            key = (changed if e <= tolerance * target else len(current) * max(caps) + 1, e)
            if best is None or key < (best[0], best[1]):
                best = (*key, candidate)
        if best is None:
            break  # no move gets nearer: the nearest these moves reach
        current, error = best[2], best[1]
    return current


def _moves(
    current: Sequence[int],
    caps: Sequence[int],
    flops: Callable[[Sequence[int]], float],
    target: float,
    window: int,
) -> list[list[int]]:
    groups = range(len(current))
    result: list[list[int]] = []
    for a in groups:
        for delta in range(-window, window + 1):
            base = list(current)
            base[a] += delta
            if not 1 <= base[a] <= caps[a]:
                continue
            if delta:
                result.append(base)
            for b in groups:
                if b != a:
                    result.extend(_nearest_counts(base, b, caps[b], flops, target))
    return result


def _nearest_counts(
    base: Sequence[int], group: int, cap: int, flops: Callable[[Sequence[int]], float], target: float
) -> list[list[int]]:
    """``base`` with ``group``'s count at the two integers around the FLOPs-exact value."""
    low, high = list(base), list(base)
    low[group], high[group] = 1, cap
    f_low, f_high = flops(low), flops(high)
    if f_high <= f_low:
        return []
    exact = 1 + (target - f_low) / (f_high - f_low) * (cap - 1)
    result: list[list[int]] = []
    for k in {math.floor(exact), math.ceil(exact)}:
        if 1 <= k <= cap and k != base[group]:
            candidate = list(base)
            candidate[group] = k
            result.append(candidate)
    return result
