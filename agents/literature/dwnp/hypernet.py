"""DWNP's hypernetwork: learned sub-network embeddings -> per-group channel logits (Eqs. 2, 4, 5).

``e_n = Emb(n)`` for n = 0 (the server-side sub-network) and n = 1..N (device n - 1 of the env), then
``a^n = HN(e_n)``. The paper's hypernetwork architecture is in its supplement (not available); it
cites a GRU (Cho et al., 2014). Here: a shared trunk (linear - LayerNorm - ReLU) and one linear head
per channel group, which generates every layer's logits from the one embedding. The heads' biases
start at ``init_logit`` > 0 so every channel is kept until the hypernetwork learns otherwise (not
stated in the paper). Initialised from an injected generator only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class HyperNetwork(nn.Module):
    """Embedding layer + hypernetwork generating channel logits for each channel group.

    Args:
        num_embeddings: N + 1 (server and N devices).
        group_sizes: Channels of each group.
        generator: Source of the initial weights.
        embedding_dim: Size of e_n.
        hidden: Trunk width.
        init_logit: Initial bias of every head (positive: start from the full network).
    """

    def __init__(
        self,
        num_embeddings: int,
        group_sizes: Sequence[int],
        generator: torch.Generator,
        embedding_dim: int = 32,
        hidden: int = 64,
        init_logit: float = 1.0,
    ) -> None:
        super().__init__()
        with torch.device("meta"):
            self.embedding = nn.Embedding(num_embeddings, embedding_dim)
            self.trunk = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.LayerNorm(hidden), nn.ReLU())
            self.heads = nn.ModuleList(nn.Linear(hidden, size) for size in group_sizes)
        self.to_empty(device="cpu")
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, generator=generator)
            for layer in [self.trunk[0], *self.heads]:
                assert isinstance(layer, nn.Linear)
                bound = 1.0 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            for head in self.heads:
                assert isinstance(head, nn.Linear)
                head.bias.fill_(init_logit)
            norm = self.trunk[1]
            assert isinstance(norm, nn.LayerNorm)
            norm.reset_parameters()

    def forward(self, index: int) -> list[torch.Tensor]:
        """Channel logits of sub-network ``index`` (0 = server), one tensor per group."""
        device = self.embedding.weight.device
        e = self.embedding(torch.tensor([index], device=device))
        h = self.trunk(e)
        return [head(h)[0] for head in self.heads]
