"""The covering index of a round (Zhou et al., "On the Convergence of Heterogeneous Federated Learning
with Arbitrary Adaptive Online Model Pruning", CoRR 2022).

The paper's convergence bound depends on the pruning only through two quantities: the masks' errors
and the *minimum covering index* ``Gamma_min``, the smallest number of participating devices whose
local model keeps a given parameter (region), taken over all parameters. A parameter covered by no
device is not updated in that round; one covered by a single device is updated from that device's
data alone. Here the regions are single parameters (the finest partition) and the count is over the
devices whose updates *arrived* (those aggregated):

* ``min_covering``: ``min_i |{n arrived : mask_n keeps parameter i}|``;
* ``mean_covering``: the same count averaged over all parameters.

A parameter no mask mentions counts as kept by every arrived device, so an unpruned round has
``min_covering = mean_covering = num_arrived``, and a round where nobody arrived has both 0. A
parameter that no device *starting* the round keeps (removed from the model for good, e.g. by a
mask every device shares) is not part of that round's model and is left out; one kept by a device
that did not arrive in time counts with the devices that did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def covering_counts(masks: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per masked entry, how many of the devices' ``masks`` keep it (int64, entry's shape).

    Only entries masked by at least one device appear; a device without a mask for an entry keeps
    it whole.
    """
    keys = sorted({key for mask in masks for key in mask})
    counts: dict[str, torch.Tensor] = {}
    for key in keys:
        shape = next(mask[key].shape for mask in masks if key in mask)
        total = torch.zeros(shape, dtype=torch.int64)
        for mask in masks:
            if key in mask:
                if mask[key].shape != shape:
                    found = tuple(mask[key].shape)
                    raise ValueError(f"mask {key!r}: shapes {found} and {tuple(shape)} differ")
                total += mask[key].detach().to("cpu", torch.bool).to(torch.int64)
            else:
                total += 1
        counts[key] = total
    return counts


def covering_index(
    masks: Sequence[Mapping[str, torch.Tensor]],
    total_params: int,
    planned: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> tuple[int, float]:
    """``(min_covering, mean_covering)`` of the arrived devices' ``masks`` over a model of
    ``total_params`` parameters (see the module docstring).

    ``planned``: the masks of every device that started the round (arrived or not). Parameters none
    of them keeps (removed from the model for good, e.g. by a shared server-side mask) are not part
    of the round's model and are left out of both figures; a parameter some planned device keeps but
    no arrived one does counts 0. ``None``: every parameter counts.

    Raises:
        ValueError: the masks cover more entries than ``total_params``, or shapes disagree.
    """
    num = len(masks)
    if num == 0 or total_params == 0:
        return 0, 0.0
    counts = covering_counts(masks)
    live = {key: torch.ones_like(c, dtype=torch.bool) for key, c in counts.items()}
    if planned is not None:
        for key, planned_count in covering_counts(planned).items():
            live[key] = planned_count > 0
            counts.setdefault(key, torch.full_like(planned_count, num))
    masked = sum(c.numel() for c in counts.values())
    if masked > total_params:
        raise ValueError(f"masks cover {masked} entries but the model has only {total_params} parameters")
    unmasked = total_params - masked
    considered = unmasked + sum(int(m.sum()) for m in live.values())
    if considered == 0:
        return 0, 0.0
    minimum = min((int(c[live[k]].min()) for k, c in counts.items() if bool(live[k].any())), default=num)
    if unmasked > 0:
        minimum = min(minimum, num)
    covered = sum(int(c[live[k]].sum()) for k, c in counts.items()) + num * unmasked
    return minimum, covered / considered
