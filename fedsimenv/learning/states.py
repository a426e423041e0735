"""Client model states as the batched cohort produces them: one stacked tensor per entry.

The batched cohort trains K devices' parameters as ``(K, ...)`` tensors. Splitting them into K state
dicts costs one Python tensor object per device and entry (300 for 50 devices and a 6-tensor model,
~4 ms a round on the development machine), and aggregation would stack them again. :class:`StackedStates`
keeps the stacked tensors and still behaves as the sequence of per-device state dicts that every
consumer expects; aggregation rules read the stacked tensors directly through :func:`stacked_entry`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import overload

import torch

State = dict[str, torch.Tensor]


class StackedStates(Sequence[State]):
    """K devices' states: ``stacked[name]`` has shape (K, *shape of the entry).

    Indexing gives device k's state dict of views into the stacked tensors (built on access).

    Raises:
        ValueError: no entries, or entries with different leading sizes.
    """

    def __init__(self, stacked: Mapping[str, torch.Tensor]) -> None:
        sizes = {value.shape[0] for value in stacked.values() if value.dim() > 0}
        if not stacked or len(sizes) != 1 or any(value.dim() == 0 for value in stacked.values()):
            raise ValueError("StackedStates needs entries that all share one leading (device) dimension")
        self.stacked: dict[str, torch.Tensor] = dict(stacked)
        self._num = sizes.pop()

    def __len__(self) -> int:
        return self._num

    @overload
    def __getitem__(self, index: int) -> State: ...

    @overload
    def __getitem__(self, index: slice) -> list[State]: ...

    def __getitem__(self, index: int | slice) -> State | list[State]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._num))]
        if not -self._num <= index < self._num:
            raise IndexError(f"device index {index} out of range for {self._num} states")
        return {name: value[index] for name, value in self.stacked.items()}

    def __iter__(self) -> Iterator[State]:
        return (self[i] for i in range(self._num))


def stacked_entry(states: Sequence[Mapping[str, torch.Tensor]], key: str) -> torch.Tensor:
    """Entry ``key`` of every state, stacked to (K, ...): free for :class:`StackedStates`."""
    if isinstance(states, StackedStates):
        return states.stacked[key]
    return torch.stack([state[key] for state in states])
