"""Seed plumbing: one scenario seed -> independent, named random streams.

Library code never touches numpy's or torch's global RNG. An episode owns a
:class:`numpy.random.SeedSequence`; each consumer gets its own child stream by *name*, so adding a
new consumer later does not shift the streams of the existing ones. The streams in use: ``world``
(positions, hardware), ``channel`` (its evolution), ``availability``, ``partition`` (data split),
``training`` (init, pruning, batch order) and ``agent``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


def _name_key(name: str) -> int:
    # A stable 32-bit key from the name; Python's hash() is salted per process, so it is not usable.
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def child_sequence(parent: np.random.SeedSequence, name: str) -> np.random.SeedSequence:
    """The child of ``parent`` for stream ``name``; the same (parent, name) always gives the same child."""
    return np.random.SeedSequence(entropy=parent.entropy, spawn_key=(*parent.spawn_key, _name_key(name)))


@dataclass(frozen=True)
class EpisodeStreams:
    """The independent random streams of one episode, derived from one seed sequence."""

    root: np.random.SeedSequence

    def numpy(self, name: str) -> np.random.Generator:
        """A fresh numpy Generator for stream ``name`` (same name -> same stream)."""
        return np.random.default_rng(child_sequence(self.root, name))

    def torch_seed(self, name: str) -> int:
        """A 63-bit integer seed for a ``torch.Generator`` for stream ``name``."""
        state = child_sequence(self.root, name).generate_state(2, dtype=np.uint32)
        return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)

    def int_seed(self, name: str) -> int:
        """A 32-bit integer seed for stream ``name`` (for components that take an int seed)."""
        return int(child_sequence(self.root, name).generate_state(1, dtype=np.uint32)[0])
