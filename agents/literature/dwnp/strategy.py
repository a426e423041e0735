"""DWNP's server-side training (Gao et al., "Device-Wise Federated Network Pruning", Alg. 1, Eqs. 5-7)
and its two hypernetwork baselines, FedILP and FedOSP, as one :class:`ScheduledStrategy`.

Schedule, in rounds of the co-simulation (one round = one download, local training, one upload):

* training phase (``train_fraction`` of the rounds; the paper trains 200 epochs then fine-tunes 200,
  i.e. one half): every round the devices train W under their current sub-network (Eq. 7: masks of
  ``a^0 * a^n``; FedILP: ``a^0``); after a quarter of the training rounds, the rounds also train
  the hypernetwork (HN) with W frozen (Eq. 6) on a 10% subset of each device's data (inside the
  round, see below);
* at the end of the training phase the global model is pruned permanently with ``a^0``; for FedOSP,
  whose W were trained dense, the HN is trained here, one shot, with W frozen;
* fine-tuning phase: devices train under ``a^0 * a^n`` (DWNP) or ``a^0`` (FedILP, FedOSP), frozen.

Alg. 1's intervals, in local SGD iterations as the paper (``r_W`` set, default 5): one round is
``local_epochs`` epochs of each device's data (Alg. 1 is one epoch); W is averaged every ``r_W``
iterations inside the round (:mod:`fedsimenv.learning.local_sgd`) and, in the rounds where the HN
trains, every device takes an HN step every ``r_HN`` iterations, the HN states (parameters and Adam
moments, following Mime) averaged every ``r_theta`` HN steps (:mod:`.interleave`). All devices of the
round train (S = N in the paper). The extra traffic (intra-round W averagings, HN states) is added
to each device's upload and download bits through the ``model_cost`` hook, so the simulator times
it. With ``r_w=None`` the older mapping onto rounds applies: W averaged once per round and
``max(1, round(iterations / r_HN))`` HN steps after the round, their traffic not timed.

Left open by the paper and chosen here: the HN architecture (see :mod:`.hypernet`); the Gumbel
temperature (0.5); the initial logits (+3: the noisy training-time gates keep ~95% of the channels, so the
stochastic and the deterministic sub-network start close together); FedOSP's number of
one-shot HN steps (default: as many as DWNP takes in its whole training phase); a sub-network keeps
at least one channel per group; the channel groups are Torch-Pruning's (residual-coupled channels
share one gate); how the deterministic sub-networks (those the weights train under and those
deployed) are read out of the HN: by default a FLOPs-budget projection of its logits, so they meet
p_s and p_d^n from both sides, the paper's one-sided regulariser unchanged in HN training
(``DWNPSettings.deploy``; :mod:`.deploy` says which part is the paper and which ours, and why).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from agents.literature.channel_layout import ChannelLayout, gated
from agents.literature.common import ScheduledStrategy
from agents.literature.dwnp.deploy import DEFAULT_TOLERANCE, project_to_flops_budget
from agents.literature.dwnp.gates import flops_regulariser, gumbel_sigmoid_st
from agents.literature.dwnp.hypernet import HyperNetwork
from agents.literature.dwnp.interleave import (
    InterleavedHN,
    hn_state_bits,
    hn_traffic_bits,
    mean_optimizer_states,
    mean_states,
)
from fedsimenv.learning.local_sgd import State, base_cost, with_extra_bits
from fedsimenv.learning.plan import DeviceJob, ModelCost
from fedsimenv.learning.pruning import Masks
from fedsimenv.learning.trainer import TorchTrainer


@dataclass(frozen=True)
class DWNPSettings:
    """Hyperparameters (paper values where it gives them, Sec. 4.1).

    Attributes:
        device_budget: p_d, kept fraction of the FLOPs of each device-side sub-network.
        server_budget: p_s, kept fraction of the server-side sub-network's FLOPs (DWNP's 50% device
            reduction goes with a 20% server reduction in Table 1).
        reg_weight: lambda (2.0).
        r_w: W averaging interval, in local iterations (5); ``None``: once per round.
        r_theta: HN state-averaging interval, in HN steps (2).
        r_hn: One HN step per this many weight iterations (10).
        hn_subset_fraction: Share of local data in D_n^a (10%).
        hn_learning_rate: Adam learning rate of the HN (1e-3).
        temperature: Gumbel-sigmoid temperature.
        init_logit: Initial bias of the HN's heads.
        train_fraction: Share of the rounds before the final pruning (1/2: 200 + 200 epochs).
        hn_start_fraction: HN training starts after this share of the training rounds (1/4).
        device_wise: DWNP's device-side sub-networks; False for FedILP and FedOSP (one sub-network
            ``a^0`` for everyone, at the device budget).
        one_shot: FedOSP: W trained dense, HN trained once at the end with W frozen.
        one_shot_steps: FedOSP's HN steps (0: as many as DWNP's training phase gives).
        deploy: How the deterministic sub-networks are read out of the HN's logits (not in the
            paper; see :mod:`.deploy`): ``"projection"`` (ours, default) keeps the highest-logit
            channels up to the FLOPs budget, within ``deploy_tolerance`` of it from both sides;
            ``"threshold"`` keeps the channels with logit > 0 (the paper read literally; with the
            one-sided Eq. 6 they can end far below their budgets).
        deploy_tolerance: Relative FLOPs distance to the budget the projection aims within.
    """

    device_budget: float = 0.5
    server_budget: float = 0.8
    reg_weight: float = 2.0
    r_w: int | None = 5
    r_theta: int = 2
    r_hn: int = 10
    hn_subset_fraction: float = 0.1
    hn_learning_rate: float = 1e-3
    temperature: float = 0.5
    init_logit: float = 3.0
    embedding_dim: int = 32
    hidden: int = 64
    train_fraction: float = 0.5
    hn_start_fraction: float = 0.25
    device_wise: bool = True
    one_shot: bool = False
    one_shot_steps: int = 0
    deploy: Literal["projection", "threshold"] = "projection"
    deploy_tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        if self.deploy not in ("projection", "threshold"):
            raise ValueError(f"unknown deploy rule {self.deploy!r}; allowed values: projection, threshold")
        for name in ("r_theta", "r_hn"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.r_w is not None and self.r_w < 1:
            raise ValueError(f"r_w must be >= 1 local iterations or None, got {self.r_w}")


class DWNPStrategy(ScheduledStrategy):
    """Hypernetwork-generated channel sub-networks (DWNP, FedILP, FedOSP).

    Args:
        train_rounds: Rounds of the training phase.
        settings: Hyperparameters.
    """

    def __init__(self, train_rounds: int, settings: DWNPSettings) -> None:
        super().__init__(train_rounds)
        self.settings = settings
        self.device_budgets: NDArray[np.float64] | None = None
        self.hn_steps_done = 0

    # -- episode and schedule ----------------------------------------------------------------

    def reset(self, trainer: TorchTrainer) -> None:
        super().reset(trainer)
        s = self.settings
        n = trainer.num_devices
        self.layout = ChannelLayout(trainer.model, trainer.client_data(0)[0][:1])
        self.hn = HyperNetwork(
            n + 1, self.layout.sizes, trainer.generator, s.embedding_dim, s.hidden, s.init_logit
        ).to(trainer.device)
        self.adam_state: dict[str, Any] | None = None
        self.hn_steps_done = 0
        #: The last interleaved round's HN steps: ``(k, k_HN, devices, averaged)``.
        self.last_interleaving: list[tuple[int, int, list[int], bool]] = []
        self._cache: dict[int, Masks | None] = {}
        self.final_gates: dict[int, list[torch.Tensor]] = {}
        self.subsets: list[torch.Tensor] = []
        for k in range(n):
            size = len(trainer.client_data(k)[1])
            keep = max(1, math.ceil(s.hn_subset_fraction * size))
            self.subsets.append(torch.randperm(size, generator=trainer.generator)[:keep])
        samples = float(np.mean(trainer.num_samples))
        iterations = trainer.config.local_epochs * math.ceil(samples / trainer.config.batch_size)
        self.hn_steps_per_round = max(1, round(iterations / s.r_hn))

    @property
    def hn_start_round(self) -> int:
        return int(self.settings.hn_start_fraction * self.train_rounds)

    def budget(self, device: int) -> float:
        """p_d^n of device ``device`` (the agent may set them per device: wireless-aware option)."""
        if self.device_budgets is None:
            return self.settings.device_budget
        return float(self.device_budgets[device])

    @property
    def server_side_budget(self) -> float:
        """The FLOPs budget of ``a^0``: p_s (DWNP); without device-wise sub-networks (FedILP,
        FedOSP) ``a^0`` is every device's sub-network, at the device budget (their mean where the
        agent set them per device)."""
        if self.settings.device_wise:
            return self.settings.server_budget
        if self.device_budgets is None:
            return self.settings.device_budget
        return float(np.mean(self.device_budgets))

    @property
    def hn_trains_this_round(self) -> bool:
        """Whether the coming round (index ``rounds_done``) trains the HN: after a quarter of the
        training rounds, before the final pruning, never for FedOSP."""
        s = self.settings
        return not s.one_shot and not self.pruned and self.rounds_done >= self.hn_start_round

    def train_phase_round(self, trainer: TorchTrainer, arrived: Sequence[int]) -> None:
        if self.periodic is not None:
            return  # the HN trained inside the round (local_training)
        if self.settings.one_shot or self.rounds_done <= self.hn_start_round or not arrived:
            return
        self.train_hypernetwork(trainer, arrived, self.hn_steps_per_round)

    # -- Alg. 1 inside the round ---------------------------------------------------------------

    def local_training(
        self, trainer: TorchTrainer, model: torch.nn.Module, jobs: Sequence[DeviceJob]
    ) -> Sequence[State] | None:
        periodic = self.periodic
        if periodic is None:
            return None
        if not self.hn_trains_this_round:
            return periodic.train(trainer, model, jobs, self.rounds_done)
        s = self.settings
        interleaved = InterleavedHN(
            self.hn,
            self.adam_state,
            [job.device for job in jobs],
            [periodic.iterations(trainer, job.device) for job in jobs],
            lambda hn, device, weights: self.hn_loss(trainer, hn, device, weights),
            s.r_hn,
            s.r_theta,
            s.hn_learning_rate,
        )
        states = periodic.train(trainer, model, jobs, self.rounds_done, interleaved)
        adam_state = interleaved.finish()
        if adam_state is not None:
            self.adam_state = adam_state
            self.hn_steps_done += interleaved.steps_taken
            self._cache = {}
        self.last_interleaving = interleaved.log
        return states

    def model_cost(self, trainer: TorchTrainer, device: int, masks: Masks) -> ModelCost | None:
        """With ``r_w`` set: the sub-network's cost plus the intra-round W averagings and, in rounds
        where the HN trains, the HN states' traffic (:mod:`.interleave`)."""
        periodic = self.periodic
        if periodic is None:
            return None
        cost = base_cost(trainer, masks)
        up, down = periodic.extra_bits(trainer, device, cost)
        if self.hn_trains_this_round:
            s = self.settings
            state_bits = hn_state_bits(self.hn, trainer.config.bits_per_param)
            hn_up, hn_down = hn_traffic_bits(
                periodic.iterations(trainer, device), s.r_hn, s.r_theta, state_bits
            )
            up, down = up + hn_up, down + hn_down
        return with_extra_bits(cost, up, down, trainer.download_bits())

    def server_prune(self, trainer: TorchTrainer) -> Masks:
        s = self.settings
        if s.one_shot:
            hn_rounds = max(1, self.train_rounds - self.hn_start_round)
            steps = s.one_shot_steps or hn_rounds * self.hn_steps_per_round
            self.train_hypernetwork(trainer, list(range(trainer.num_devices)), steps)
        server = self.gates(0)
        self.final_gates = {0: server}
        for k in range(trainer.num_devices):
            self.final_gates[k + 1] = self.gates(k + 1) if s.device_wise else server
        self._cache = {}
        return self.layout.masks(server)

    # -- sub-networks --------------------------------------------------------------------------

    @torch.no_grad()
    def gates(self, index: int) -> list[torch.Tensor]:
        """Deterministic 0/1 gates of sub-network ``index`` (0 = server ``a^0``; n + 1 = device n's
        ``a^0 * a^n``, or ``a^0`` without device-wise sub-networks), by the ``deploy`` rule."""
        if index in self.final_gates:
            return self.final_gates[index]
        s = self.settings
        logits0 = self.hn(0)
        if s.deploy == "projection":
            a0 = project_to_flops_budget(
                self.layout, logits0, self.server_side_budget, tolerance=s.deploy_tolerance
            )
            if index == 0 or not s.device_wise:
                return a0
            # Device n ranks the channels a^0 kept by its own logits: a^0 * a^n, at p_d^n.
            return project_to_flops_budget(
                self.layout, self.hn(index), self.budget(index - 1), allowed=a0, tolerance=s.deploy_tolerance
            )
        a0 = self.layout.binarize([gumbel_sigmoid_st(z, self.settings.temperature) for z in logits0], logits0)
        if index == 0 or not self.settings.device_wise:
            return a0
        logits = self.hn(index)
        an = [gumbel_sigmoid_st(z, self.settings.temperature) for z in logits]
        return self.layout.binarize([x * y for x, y in zip(a0, an, strict=True)], logits)

    def flops_fraction(self, index: int) -> float:
        """Kept share of the FLOPs of sub-network ``index`` (exact)."""
        return float(self.layout.flops(self.gates(index))) / self.layout.total_flops

    def device_masks(self, trainer: TorchTrainer, device: int) -> Masks | None:
        if not self.pruned and (self.settings.one_shot or self.hn_steps_done == 0):
            return None  # dense training before the HN has said anything
        if device not in self._cache:
            masks = self.layout.masks(self.gates(device + 1))
            self._cache[device] = masks or None
        return self._cache[device]

    # -- hypernetwork training (Eq. 6) ---------------------------------------------------------

    def hn_loss(
        self, trainer: TorchTrainer, hn: HyperNetwork, device: int, model: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Device ``device``'s share of Eq. 6: cross-entropy of the gated model on a batch of its HN
        subset plus lambda times the FLOPs regularisers of ``a^0`` and ``a^0 * a^n``, with the weights
        of ``model`` (the global model when None).

        The cross-entropy sees Gumbel-noised gates (exploration, as the paper's ST Gumbel-sigmoid);
        the regularisers see the noise-free straight-through gates, i.e. the sub-network that is
        deterministic one (``logits > 0``). With noise in the regulariser too, the sampled
        sub-networks meet the budget while the noise-free ones (every logit still > 0) do not: the
        paper does not say how it handles that gap. R (Eq. 6, kept as the paper's) is one-sided:
        below its budget only the cross-entropy holds a sub-network up, so with briefly trained
        weights the ``logits > 0`` sub-networks end below their budgets; the default ``deploy``
        rule (:mod:`.deploy`) reads the deployed sub-networks out of the logits at their budgets.
        """
        s = self.settings
        generator = trainer.generator
        logits0 = hn(0)
        a0 = [gumbel_sigmoid_st(z, s.temperature, generator) for z in logits0]
        a0_det = [gumbel_sigmoid_st(z, s.temperature) for z in logits0]
        total = self.layout.total_flops
        if s.device_wise:
            logits_n = hn(device + 1)
            an = [gumbel_sigmoid_st(z, s.temperature, generator) for z in logits_n]
            an_det = [gumbel_sigmoid_st(z, s.temperature) for z in logits_n]
            gates = [x * y for x, y in zip(a0, an, strict=True)]
            device_det = [x * y for x, y in zip(a0_det, an_det, strict=True)]
            reg = flops_regulariser(self.layout.flops(a0_det) / total, s.server_budget)
            reg = reg + flops_regulariser(self.layout.flops(device_det) / total, self.budget(device))
        else:
            gates = a0
            reg = flops_regulariser(self.layout.flops(a0_det) / total, self.budget(device))
        x_all, y_all = trainer.client_data(device)
        subset = self.subsets[device]
        pick = subset[torch.randperm(len(subset), generator=generator)[: trainer.config.batch_size]]
        pick = pick.to(x_all.device)
        weights = trainer.model if model is None else model
        with gated(weights, self.layout, gates):
            loss = F.cross_entropy(weights(x_all[pick]), y_all[pick])
        return loss + s.reg_weight * reg

    def train_hypernetwork(self, trainer: TorchTrainer, devices: Sequence[int], steps: int) -> None:
        """``steps`` HN steps on every device in ``devices`` with W frozen; HN parameters and Adam
        moments averaged over the devices every ``r_theta`` steps."""
        model = trainer.model
        requires = [p.requires_grad for p in model.parameters()]
        was_training = model.training
        model.requires_grad_(False)
        model.eval()  # W frozen: no BatchNorm statistics updates either
        try:
            done = 0
            while done < steps:
                block = min(self.settings.r_theta, steps - done)
                states, moments = [], []
                for device in devices:
                    local = copy.deepcopy(self.hn)
                    optimizer = torch.optim.Adam(local.parameters(), lr=self.settings.hn_learning_rate)
                    if self.adam_state is not None:
                        optimizer.load_state_dict(self.adam_state)
                    for _ in range(block):
                        optimizer.zero_grad(set_to_none=True)
                        self.hn_loss(trainer, local, device).backward()  # type: ignore[no-untyped-call]
                        optimizer.step()
                    states.append(local.state_dict())
                    moments.append(optimizer.state_dict())
                self.hn.load_state_dict(mean_states(states))
                self.adam_state = mean_optimizer_states(moments)
                done += block
        finally:
            for p, flag in zip(model.parameters(), requires, strict=True):
                p.requires_grad_(flag)
            model.train(was_training)
        self.hn_steps_done += steps
        self._cache = {}
