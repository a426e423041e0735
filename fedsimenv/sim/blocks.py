"""The channel as the simulator sees it: gains per coherence block, drawn lazily and in order.

With a coherence time Tc, block j spans ``[j Tc, (j + 1) Tc)`` and its gains come from advancing the
channel by Tc once per block, in block order, so the channel stream is consumed deterministically
whatever the devices do. Without one, one block spans one round: the channel is advanced by the
round's length when the round ends. In OFDMA mode with ``resource_blocks.fading: independent``
each block also has (N, R) per-RB gains: the block's large-scale gain times an independent draw of
the channel's fading model per RB (:meth:`channels.DynamicChannel.resource_block_gains`), taken
from a child stream of its own.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from channels.checks import WorkLimitError
from fedsimenv.sim.types import FloatArray


class EvolvingChannel(Protocol):
    """What the simulator needs of a channel: :class:`channels.DynamicChannel` implements it."""

    @property
    def distance_m(self) -> FloatArray: ...

    def reset(
        self, position_m: FloatArray, rng: np.random.Generator, shadowing_db: FloatArray | None = None
    ) -> FloatArray: ...

    def advance(self, dt_s: float) -> FloatArray: ...


class ChannelBlocks:
    """Gains of the coherence blocks of the current round (and per-RB gains where modelled).

    Args:
        channel: The evolving channel (already reset by the caller: ``initial_gain`` is its answer).
        initial_gain: (N,) gains at time 0.
        coherence_time_s: Tc, or None for one block per round.
        num_resource_blocks: R when per-RB gains are drawn, else None.
        rb_rng: Stream of the per-RB fading draws.
        max_blocks_per_round: Most coherence blocks one round may span (else :class:`WorkLimitError`),
            which bounds the simulated work of a round.
    """

    def __init__(
        self,
        channel: EvolvingChannel,
        initial_gain: FloatArray,
        coherence_time_s: float | None,
        num_resource_blocks: int | None,
        rb_rng: np.random.Generator,
        max_blocks_per_round: int = 100_000,
    ) -> None:
        self.channel = channel
        self.coherence_time_s = coherence_time_s
        self.num_resource_blocks = num_resource_blocks
        self._rb_rng = rb_rng
        self._gains: dict[int, FloatArray] = {0: initial_gain}
        self._rb_gains: dict[int, FloatArray | None] = {0: self._draw_rb_gains()}
        self._last = 0
        self.max_blocks_per_round = max_blocks_per_round
        self._first = 0  # the block the current round started in

    def start_round(self, start_s: float) -> None:
        """Mark the block a round starts in (the work limit counts blocks from it)."""
        self._first = self.index_at(start_s)

    @property
    def length_s(self) -> float:
        """Block length; inf without a coherence time."""
        return self.coherence_time_s if self.coherence_time_s is not None else np.inf

    def index_at(self, time_s: float) -> int:
        return 0 if self.coherence_time_s is None else int(np.floor(time_s / self.coherence_time_s))

    def _draw_rb_gains(self) -> FloatArray | None:
        if self.num_resource_blocks is None:
            return None
        draw = getattr(self.channel, "resource_block_gains", None)
        if draw is None:  # a channel without per-RB fading: every RB sees the wideband gain
            return None
        gains: FloatArray = draw(self.num_resource_blocks, self._rb_rng)
        return gains

    def gain(self, block: int) -> FloatArray:
        """(N,) gains of block ``block`` (blocks are drawn in order, so the stream is deterministic)."""
        if self.coherence_time_s is None:
            return self._gains[0]
        if block - self._first > self.max_blocks_per_round:
            raise WorkLimitError(
                f"a round spans more than channel.max_blocks_per_round={self.max_blocks_per_round} "
                f"coherence blocks of channel.coherence_time_s={self.coherence_time_s:g} s; raise either "
                "(the run was stopped)"
            )
        while self._last < block:
            self._last += 1
            self._gains[self._last] = self.channel.advance(self.coherence_time_s)
            self._rb_gains[self._last] = self._draw_rb_gains()
        return self._gains[block]

    def rb_gain(self, block: int) -> FloatArray | None:
        """(N, R) per-RB gains of block ``block``; None where every RB sees the wideband gain."""
        if self.coherence_time_s is None:
            return self._rb_gains[0]
        self.gain(block)
        return self._rb_gains[block]

    def gain_at(self, time_s: float) -> FloatArray:
        return self.gain(self.index_at(time_s))

    def end_round(self, start_s: float, end_s: float) -> None:
        """Advance past a round: a new block for the next round, or forget the blocks before ``end_s``."""
        if self.coherence_time_s is None:
            self._gains = {0: self.channel.advance(end_s - start_s)}
            self._rb_gains = {0: self._draw_rb_gains()}
            return
        current = self.index_at(end_s)
        self._gains = {b: g for b, g in self._gains.items() if b >= current}
        self._rb_gains = {b: g for b, g in self._rb_gains.items() if b >= current}
