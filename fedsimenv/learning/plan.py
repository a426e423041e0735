"""The values that cross the trainer seam: a round's plan goes in, the learning result comes out.

Per round the env asks the trainer to *plan* the selected devices' jobs (:class:`RoundPlan`: for each
device its pruned model's cost, for the timing plane, and what it will train: masks and, for jobs
that span rounds, the global weights it downloaded). The timing plane decides who arrives; the env
hands the plan back with the arrived devices and gets a :class:`LearningResult`. The trainer keeps no
per-round state between the two calls: whoever holds the plan holds the round (the env holds the
jobs still in flight under the async protocol), so any number of cost queries, replays or
re-plans can happen in between without disturbing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from fedsimenv.learning.flops import forward_flops_per_sample
from fedsimenv.learning.pruning import Masks, count_parameters, kept_parameters

#: A model's weights by parameter/buffer name.
State = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ModelCost:
    """What the timing plane needs to know about one device's pruned model.

    Attributes:
        download_bits: What the device downloads when it gets a model of its own (a server-pruned
            sub-model or sparse model, a compressed broadcast); ``None``: the full global model
            (``Trainer.download_bits``).
    """

    forward_flops_per_sample: float
    upload_bits: float
    kept_params: int
    total_params: int
    download_bits: float | None = None

    @property
    def achieved_rho(self) -> float:
        """Fraction of parameters actually removed."""
        return 1.0 - self.kept_params / self.total_params


@dataclass(frozen=True)
class LearningResult:
    """Global-model metrics after a round's aggregation."""

    accuracy: float
    loss: float
    num_trained: int
    #: Per-device accuracy on test data following each device's label mix (when configured).
    device_accuracy: tuple[float, ...] = field(default=())
    #: Seconds of server-side computation this round (a strategy's server training, e.g. FedDUAP);
    #: the env adds it to the round's latency.
    server_time_s: float = 0.0
    #: Algorithm-specific per-round metrics (e.g. Sub-FedAvg's personalised accuracy), logged as
    #: extra ``metrics.jsonl`` columns.
    extra: Mapping[str, float] = field(default_factory=dict)
    #: ``(min, mean)`` covering index of the round when the trainer knows it without the masks (a
    #: replayed round); None: the env computes it from the plan's masks.
    covering: tuple[float, float] | None = None


@dataclass(frozen=True)
class DeviceJob:
    """One device's local-training job: what it costs and what it trains.

    Attributes:
        device: Device index.
        pruning_rate: The requested pruning rate rho (``cost.achieved_rho`` is what the masks remove).
        cost: Exact FLOPs and upload bits of the device's pruned model.
        masks: Keep-masks of the pruned model (empty: unpruned, or a trainer without masks).
        start_state: The global weights the job downloaded when it spans rounds (async protocol);
            ``None``: the job trains from the global model of the round it is trained in.
        upload_value_bits: Bits per uploaded value when the round decided this device's upload
            width (``cost.upload_bits`` is then priced at it); ``None``: the trainer's encoding.
    """

    device: int
    pruning_rate: float
    cost: ModelCost
    masks: Masks = field(default_factory=dict)
    start_state: State | None = None
    upload_value_bits: int | None = None


@dataclass(frozen=True, eq=False)  # array fields: no elementwise ``==`` / hash traps
class PlanColumns:
    """A round's jobs as columns, for trainers whose jobs carry no masks, start states or upload
    widths (the surrogate): one array entry per job instead of a :class:`DeviceJob` and a
    :class:`ModelCost` each (what a step at N = 20 would otherwise spend most of its plan on).

    Attributes:
        devices: Device of each job, in planning order (unique).
        pruning_rate: (J,) requested rho of each job.
        forward_flops_per_sample, upload_bits: (J,) the :class:`ModelCost` figures of each job.
        kept_params: Returns the (J,) kept parameters (rounded to an integer in the
            :class:`ModelCost`); called only when the jobs are built (no step needs them).
        total_params: Parameters of the unpruned model.
    """

    devices: list[int]
    pruning_rate: NDArray[np.float64]
    forward_flops_per_sample: NDArray[np.float64]
    upload_bits: NDArray[np.float64]
    kept_params: Callable[[], NDArray[np.float64]]
    total_params: int

    def jobs(self) -> dict[int, DeviceJob]:
        """The :class:`DeviceJob` of each device (the values an eager plan holds)."""
        total = self.total_params
        return {
            k: DeviceJob(k, rho, ModelCost(f, b, round(kept), total))
            for k, rho, f, b, kept in zip(
                self.devices,
                self.pruning_rate.tolist(),
                self.forward_flops_per_sample.tolist(),
                self.upload_bits.tolist(),
                self.kept_params().tolist(),
                strict=True,
            )
        }

    def select(self, devices: Iterable[int]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """``(devices, their pruning rates)`` as arrays, in the order given (as ``jobs_of``).

        Raises:
            ValueError: a device has no job in this plan.
        """
        chosen = [int(k) for k in devices]
        if chosen == self.devices:  # every job (a synchronous round where all arrived)
            return np.array(chosen, dtype=np.int64), self.pruning_rate
        where = {k: i for i, k in enumerate(self.devices)}
        missing = [k for k in chosen if k not in where]
        if missing:
            raise ValueError(f"devices {missing} arrived but no job was planned for them")
        positions = np.array([where[k] for k in chosen], dtype=np.int64)
        return np.array(chosen, dtype=np.int64), self.pruning_rate[positions]


class ColumnJobs(Mapping[int, DeviceJob]):
    """``RoundPlan.jobs`` of a plan held as :class:`PlanColumns`: the :class:`DeviceJob` objects are
    built on first access to one of them (iterating the devices or counting them builds nothing)."""

    __slots__ = ("_built", "columns")

    def __init__(self, columns: PlanColumns) -> None:
        self.columns = columns
        self._built: dict[int, DeviceJob] | None = None

    def _jobs(self) -> dict[int, DeviceJob]:
        if self._built is None:
            self._built = self.columns.jobs()
        return self._built

    def __getitem__(self, device: int) -> DeviceJob:
        return self._jobs()[device]

    def __iter__(self) -> Iterator[int]:
        return iter(self.columns.devices)

    def __len__(self) -> int:
        return len(self.columns.devices)

    def __contains__(self, device: object) -> bool:
        return device in self.columns.devices

    def __repr__(self) -> str:
        return f"ColumnJobs({self._jobs()!r})"


@dataclass(frozen=True)
class RoundPlan:
    """The jobs planned for one round, by device."""

    jobs: Mapping[int, DeviceJob]

    @classmethod
    def from_columns(cls, columns: PlanColumns) -> RoundPlan:
        """A plan whose jobs are ``columns`` (see :class:`PlanColumns`)."""
        return cls(ColumnJobs(columns))

    @property
    def columns(self) -> PlanColumns | None:
        """The plan as columns when it was built from them (no masks, start states or widths)."""
        jobs = self.jobs
        return jobs.columns if type(jobs) is ColumnJobs else None

    @property
    def costs(self) -> dict[int, ModelCost]:
        return {k: job.cost for k, job in self.jobs.items()}

    @property
    def pruning_rates(self) -> dict[int, float]:
        """The request this plan answers (``{device: rho}``)."""
        return {k: job.pruning_rate for k, job in self.jobs.items()}

    def jobs_of(self, devices: Iterable[int]) -> list[DeviceJob]:
        """The jobs of ``devices``, in that order.

        Raises:
            ValueError: a device has no job in this plan.
        """
        devices = [int(k) for k in devices]
        missing = [k for k in devices if k not in self.jobs]
        if missing:
            raise ValueError(f"devices {missing} arrived but no job was planned for them")
        return [self.jobs[k] for k in devices]


def model_cost(
    model: nn.Module,
    input_shape: tuple[int, ...],
    masks: Masks,
    bits_per_param: float,
    sparse_index_overhead: bool,
) -> ModelCost:
    """The exact cost of ``model`` pruned by ``masks`` (pure: the model is left unchanged).

    Upload bits are the kept parameters times ``bits_per_param``; an unstructured mask travels with
    the weights (``sparse_index_overhead``): one more bit per masked entry.
    """
    kept = kept_parameters(model, masks)
    overhead = sum(m.numel() for m in masks.values()) if sparse_index_overhead else 0
    return ModelCost(
        forward_flops_per_sample=forward_flops_per_sample(model, input_shape, masks),
        upload_bits=float(kept * bits_per_param + overhead),
        kept_params=kept,
        total_params=count_parameters(model),
    )
