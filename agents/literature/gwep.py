"""GWEP: IoT-friendly federated learning through joint model pruning and quantisation (IEEE IoT-J 2022;
survey ``000_``: "unstructured + magnitude + gradual pruning + quantisation + error feedback").

What it does, as the survey describes it, and how it runs here:

* **Double quantisation.** The server quantises the global model it broadcasts (stochastic uniform
  quantisation with per-tensor scaling, :func:`fedsimenv.learning.quantisation.stochastic_quantise`:
  ``2^b`` levels between ``-max|x|`` and ``max|x|``, unbiased); each device quantises its update
  (trained weights minus the downloaded ones) before upload. The server keeps its model in full
  precision and adds the average of the quantised updates to it (the download's quantisation error
  does not accumulate in the global model).
* **Error feedback** (EF-SGD, Karimireddy et al. ICML 2019): each device keeps the residual of its
  last quantised update and adds it to its next update
  (:class:`fedsimenv.learning.quantisation.ErrorFeedback`). EF needs a *contractive* compressor, so
  the uploads use the deterministic ``nearest`` quantiser (scaled sign ``mean|x| sign(x)`` at one bit,
  nearest rounding onto a zero-centred grid above). The unbiased stochastic quantiser is not a
  contraction: under EF at one bit its residual grew without bound and training diverged (accuracy
  0.10, residual NaN on tiny), which is why it is refused there; without EF it is the right choice
  (``quantiser="stochastic"``, ``error_feedback=False``).
* **Gradual pruning** to a preset final rate along Zhu & Gupta's cubic schedule, by layer-wise weight
  magnitude (:func:`fedsimenv.learning.pruning.gradual.zhu_gupta_sparsity`); the pruned weights are
  zeroed in the global model after each round, so masks only grow.
* **Exact bits.** Upload ``sum over tensors of kept x b_up + 32 (scale) + mask bits`` and download the
  same with ``b_down`` (:func:`fedsimenv.learning.quantisation.compressed_bits`); the simulator times
  both (the download is per device through ``ModelCost.download_bits``).

Chosen here where the survey gives no detail: every device takes part with an equal bandwidth share;
the mask is computed on the server from the global weights (GWEP prunes on the devices, but every
device would compute the same magnitude mask of the same broadcast model, so it is one computation);
the unstructured mask travels both ways (one bit per prunable weight), as for every unstructured method
of the project; biases and norm parameters are quantised but never pruned; buffers (BatchNorm running
statistics) travel in full precision and are not counted, as for every method; the final rate is reached
after half the episode (``ramp_fraction``) and then held (fine-tuning). The bit widths, final rate and
ramp are class attributes (GWEP presets them; the survey notes this as its weakness). The convergence
analysis of the paper is not reproduced. Measured on tiny (20 rounds, uploads quantised only; the
figures are in docs/quantisation.md): 8-bit with EF within 1 point of full precision; 2 bits without
EF clearly worse than with it; at 1 bit the scaled sign without EF ends close to it with EF on
digits but learns more slowly.
A decided per-device width (``RoundDecision.upload_value_bits``, action control ``quant_bits``)
replaces ``upload_bits`` for that device's upload, error feedback included.
Synchronous protocols only (the async protocol trains jobs
from stored downloads without the strategy's hooks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch

from agents.base import AGENTS
from agents.literature.common import ScheduledStrategy, StrategyAgent, schedule_rounds
from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.plan import ModelCost
from fedsimenv.learning.pruning import MagnitudePruning, Masks, apply_masks, kept_parameters
from fedsimenv.learning.pruning.gradual import zhu_gupta_sparsity
from fedsimenv.learning.quantisation import ErrorFeedback, compressed_bits, quantise_state
from fedsimenv.learning.trainer import TorchTrainer

State = dict[str, torch.Tensor]


class GWEPStrategy(ScheduledStrategy):
    """Server side of GWEP: scheduled masks, quantised broadcast, quantised updates with error feedback.

    Args:
        upload_bits: Bits per uploaded update value (1..32; 32 = no quantisation).
        download_bits: Bits per broadcast model value.
        final_rho: Final pruning rate (fraction of all parameters).
        ramp_rounds: Rounds over which the cubic schedule reaches ``final_rho``.
        error_feedback: Whether devices keep and resend their quantisation residuals.
    """

    sparse_index_overhead = True
    quantises_uploads = True

    def __init__(
        self,
        upload_bits: int,
        download_bits: int,
        final_rho: float,
        ramp_rounds: int,
        error_feedback: bool = True,
        quantiser: str = "nearest",
    ) -> None:
        super().__init__(train_rounds=0)
        if not 0.0 <= final_rho < 1.0:
            raise ValueError(f"final_rho must be in [0, 1), got {final_rho}")
        self.upload_bits = upload_bits
        self.download_bits = download_bits
        self.final_rho = final_rho
        self.ramp_rounds = ramp_rounds
        self.quantiser = quantiser
        self.feedback: ErrorFeedback | None = (
            ErrorFeedback(upload_bits, quantiser) if error_feedback else None
        )
        # Validates the bit widths (ErrorFeedback only checks the upload's).
        ErrorFeedback(download_bits)

    def reset(self, trainer: TorchTrainer) -> None:
        super().reset(trainer)
        if self.feedback is not None:
            self.feedback.reset()
        self.server_masks = self._scheduled_masks(trainer)

    def rate(self) -> float:
        """This round's scheduled pruning rate."""
        return zhu_gupta_sparsity(self.rounds_done, self.final_rho, self.ramp_rounds)

    def _scheduled_masks(self, trainer: TorchTrainer) -> Masks | None:
        rho = self.rate()
        if rho <= 0:
            return None
        return MagnitudePruning().masks(trainer.model, rho, trainer.generator)

    def after_round(
        self, trainer: TorchTrainer, arrived: Sequence[int], previous: Mapping[str, torch.Tensor]
    ) -> None:
        self.rounds_done += 1
        if self.server_masks:
            apply_masks(trainer.model, self.server_masks)  # permanent: masks only grow
        self.server_masks = self._scheduled_masks(trainer)

    def model_cost(self, trainer: TorchTrainer, device: int, masks: Masks) -> ModelCost:
        model = trainer.model
        shapes = {name: p.shape for name, p in model.named_parameters()}
        sparse = bool(masks)
        return ModelCost(
            forward_flops_per_sample=forward_flops_per_sample(model, trainer.input_shape, masks),
            upload_bits=compressed_bits(shapes, masks, self.upload_bits, sparse),
            kept_params=kept_parameters(model, masks),
            total_params=trainer.total_params,
            download_bits=compressed_bits(shapes, masks, self.download_bits, sparse),
        )

    def broadcast_state(self, trainer: TorchTrainer) -> State:
        state = trainer.model.state_dict()
        params = {name for name, _ in trainer.model.named_parameters()}
        sent = quantise_state(
            {k: v for k, v in state.items() if k in params},
            self.download_bits,
            trainer.generator,
            self.server_masks,
        )
        return {k: sent.get(k, v.detach().clone()) for k, v in state.items()}

    def uploaded_states(
        self,
        trainer: TorchTrainer,
        devices: Sequence[int],
        start: Mapping[str, torch.Tensor],
        states: Sequence[State],
        masks: Sequence[Masks],
        value_bits: Sequence[int | None] | None = None,
    ) -> list[State]:
        global_state = trainer.model.state_dict()
        params = [name for name, _ in trainer.model.named_parameters()]
        received: list[State] = []
        widths = [None] * len(devices) if value_bits is None else list(value_bits)
        for device, state, mask, width in zip(devices, states, masks, widths, strict=True):
            bits = self.upload_bits if width is None else int(width)  # a decided width wins
            update = {name: state[name] - start[name] for name in params}
            if self.feedback is not None:
                sent = self.feedback.send(device, update, trainer.generator, mask, bits)
            else:
                sent = quantise_state(update, bits, trainer.generator, mask, self.quantiser)
            out = {k: v.detach().clone() for k, v in state.items()}  # buffers as trained
            for name in params:
                out[name] = global_state[name] + sent[name]
            received.append(out)
        return received


@AGENTS.register("gwep")
class GWEPAgent(StrategyAgent):
    """GWEP: gradual magnitude pruning to ``final_rho`` and stochastic quantisation of the broadcast
    (``download_bits``) and of the updates (``upload_bits``, with error feedback). All devices, equal
    bandwidth shares; the encoded pruning rate is the achieved rate of the round's mask."""

    upload_bits: ClassVar[int] = 4
    download_bits: ClassVar[int] = 8
    final_rho: ClassVar[float] = 0.7
    ramp_fraction: ClassVar[float] = 0.5
    error_feedback: ClassVar[bool] = True

    def make_strategy(self) -> ScheduledStrategy:
        ramp = schedule_rounds(self.context.max_rounds, self.ramp_fraction)
        final = min(self.final_rho, 0.95 * self.context.action.rho_max)
        return GWEPStrategy(self.upload_bits, self.download_bits, final, ramp, self.error_feedback)
