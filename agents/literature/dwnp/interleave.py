"""DWNP's hypernetwork steps interleaved with the weight iterations inside a round (Alg. 1).

Alg. 1 (one epoch of ``K`` iterations): after iteration ``k``'s weight step (and the W averaging when
``k % r_W == 0``), if ``k % r_HN == 0`` every device takes one HN step (Eq. 6, W frozen) on its own
HN copy, and if ``k_HN % r_theta == 0`` the server averages the HN states (parameters and, following
Mime, the Adam moments) and broadcasts them; then ``k_HN += 1``. ``k_HN`` starts at 0 each epoch, so
with ``r_theta = 2`` the states are averaged after the 1st, 3rd, 5th, ... HN step of the round.

Device ``j`` with ``K_j`` local iterations takes the HN steps at ``k = r_HN, 2 r_HN, ... <= K_j``
(``K_j // r_HN`` of them) and the averagings among them; a device whose iterations are over takes no
more. At the end of the round the server's HN is the mean of the devices' final HN copies (not in
Alg. 1, which does not say what the server keeps between epochs); a device whose last HN step was
not averaged uploads its HN then.

HN traffic per device and round (:func:`hn_traffic_bits`), each transfer one HN state = its
parameters (embedding table included) and the two Adam moments, ``3 P_HN`` values at the scenario's
``bits_per_param``: one download at the start of the round, one upload and one download per
averaging, and the final upload when the last step was not averaged.

The sub-network a device trains W under is fixed for the round (the timing plane plans each round's
FLOPs and bits up front): the HN updates of a round take effect from the next round.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from agents.literature.dwnp.hypernet import HyperNetwork

#: ``loss(hn, device, model)``: one device's Eq. 6 loss with weights ``model``.
HNLoss = Callable[[HyperNetwork, int, nn.Module], torch.Tensor]


def hn_step_iterations(iterations: int, r_hn: int) -> list[int]:
    """The iterations ``k <= iterations`` after which a device takes an HN step (``k % r_HN == 0``)."""
    return list(range(r_hn, iterations + 1, r_hn))


def hn_averaged_steps(num_steps: int, r_theta: int) -> list[int]:
    """The 0-based HN steps ``k_HN < num_steps`` after which the HN states are averaged."""
    return list(range(0, num_steps, r_theta))


def hn_state_bits(hn: nn.Module, bits_per_param: float) -> float:
    """Bits of one HN state transfer: parameters and Adam's two moments."""
    return 3.0 * sum(p.numel() for p in hn.parameters()) * bits_per_param


def hn_traffic_bits(iterations: int, r_hn: int, r_theta: int, state_bits: float) -> tuple[float, float]:
    """(upload, download) HN bits of a device with ``iterations`` local iterations in a round where
    the HN trains (see the module docstring)."""
    steps = iterations // r_hn
    if steps == 0:
        return 0.0, 0.0
    averagings = math.ceil(steps / r_theta)
    final = 0 if (steps - 1) % r_theta == 0 else 1
    return (averagings + final) * state_bits, (1 + averagings) * state_bits


class InterleavedHN:
    """One round's HN training for ``devices`` (local iterations ``iterations``), as the
    ``on_iteration`` callback of :func:`fedsimenv.learning.local_sgd.train_periodic`.

    Args:
        hn: The server's HN (read at the start, written by :meth:`finish`).
        adam_state: The server's Adam state (``None`` before the first step).
        devices: The round's devices (env indices).
        iterations: Their ``K_j``.
        loss: Eq. 6 loss of one device.
        r_hn, r_theta, learning_rate: Alg. 1's intervals and Adam's rate.
    """

    def __init__(
        self,
        hn: HyperNetwork,
        adam_state: dict[str, Any] | None,
        devices: Sequence[int],
        iterations: Sequence[int],
        loss: HNLoss,
        r_hn: int,
        r_theta: int,
        learning_rate: float,
    ) -> None:
        self.hn = hn
        self.devices = list(devices)
        self.iterations = list(iterations)
        self.loss = loss
        self.r_hn, self.r_theta = r_hn, r_theta
        self.locals = [copy.deepcopy(hn) for _ in self.devices]
        self.optimizers = []
        for local in self.locals:
            optimizer = torch.optim.Adam(local.parameters(), lr=learning_rate)
            if adam_state is not None:
                optimizer.load_state_dict(adam_state)
            self.optimizers.append(optimizer)
        self.steps = [0] * len(self.devices)
        #: ``(k, k_HN, participants, averaged)`` of every HN step taken (for tests and logs).
        self.log: list[tuple[int, int, list[int], bool]] = []

    def __call__(self, k: int, models: Sequence[nn.Module]) -> None:
        if k % self.r_hn:
            return
        k_hn = k // self.r_hn - 1
        taking = [i for i, total in enumerate(self.iterations) if total >= k]
        for i in taking:
            model = models[i]
            requires = [p.requires_grad for p in model.parameters()]
            was_training = model.training
            model.requires_grad_(False)
            model.eval()  # W frozen: no normalisation statistics updates either
            try:
                self.optimizers[i].zero_grad(set_to_none=True)
                self.loss(self.locals[i], self.devices[i], model).backward()  # type: ignore[no-untyped-call]
                self.optimizers[i].step()
            finally:
                for p, flag in zip(model.parameters(), requires, strict=True):
                    p.requires_grad_(flag)
                model.train(was_training)
            self.steps[i] += 1
        averaged = bool(taking) and k_hn % self.r_theta == 0
        if averaged:
            state = mean_states([self.locals[i].state_dict() for i in taking])
            moments = mean_optimizer_states([self.optimizers[i].state_dict() for i in taking])
            for i in taking:
                self.locals[i].load_state_dict(state)
                self.optimizers[i].load_state_dict(moments)
        if taking:
            self.log.append((k, k_hn, [self.devices[i] for i in taking], averaged))

    @property
    def steps_taken(self) -> int:
        """HN steps of the round (``k_HN`` at its end)."""
        return len(self.log)

    def finish(self) -> dict[str, Any] | None:
        """Write the mean of the devices' final HN copies into the server's HN; returns the mean Adam
        state (``None`` when no device took a step: the server's state is then unchanged)."""
        took = [i for i, n in enumerate(self.steps) if n > 0]
        if not took:
            return None
        self.hn.load_state_dict(mean_states([self.locals[i].state_dict() for i in took]))
        return mean_optimizer_states([self.optimizers[i].state_dict() for i in took])


def mean_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Plain mean of HN state dicts."""
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype) for k in states[0]}


def mean_optimizer_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Adam states with their moments averaged (Mime); the step counts are the first state's."""
    result = copy.deepcopy(states[0])
    for index, entry in result["state"].items():
        for key, value in entry.items():
            if key != "step" and isinstance(value, torch.Tensor):
                entry[key] = torch.stack([s["state"][index][key] for s in states]).mean(0)
    return result
