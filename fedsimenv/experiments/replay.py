"""Exact resume by deterministic replay: what a checkpoint records and the trainer that plays it back.

Why replay: the SimPy environment (live generator-based processes), the channel and availability
processes and the agents (their RNGs, counters, solver caches) cannot be serialised safely or
generically. Only the learning state is both expensive to recompute and easy to save. So a checkpoint
after round r holds:

* the trainer's state (model weights and the ``torch.Generator`` state; any trainer with
  ``state_dict()`` / ``load_state_dict()`` is supported), as plain tensors;
* a replay log of rounds 1..r (:class:`RoundRecord`): the agent's action, the plan the env asked the
  trainer for (pruning rates and the costs it answered), the devices that arrived, and the learning
  result.

``--resume DIR`` rebuilds the env and the agent from the seed and re-runs rounds 1..r with the real
agent, simulator and reward but a :class:`ReplayTrainer` that plays back the recorded plans and
results instead of training. Every replayed action is compared bit for bit with the recorded one,
every request, arrival set and metric row with the recorded ones (:class:`ReplayDivergedError` on any
difference), so the simulator's clock, batteries, availability, channel and RNG streams and the
agent's state end up exactly where they were. Then the trainer state is loaded and the run continues;
replay costs the timing plane and the agent only (milliseconds per round), no training. A trainer
without a state is replayed with real training: still exact, only slower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.errors import ReplayDivergedError, ResumeError
from fedsimenv.learning.plan import DeviceJob, LearningResult, ModelCost, RoundPlan
from fedsimenv.learning.trainer import Trainer
from fedsimenv.seeding import EpisodeStreams


@dataclass(frozen=True)
class RoundRecord:
    """What one round needs to be replayed without training (plain lists and numbers only)."""

    action: list[float]
    request: list[tuple[int, float]]  # (device, rho) as the env asked the trainer
    costs: list[tuple[int, float, float, int, int]]  # (device, flops/sample, bits, kept, total)
    arrived: list[int]
    accuracy: float
    loss: float
    num_trained: int
    #: (device, bits) of the jobs that downloaded a model of their own (not the full broadcast).
    download_bits: list[tuple[int, float]] = field(default_factory=list)
    #: ``[min, mean]`` covering index of the round (the masks it came from are not recorded).
    covering: list[float] = field(default_factory=list)
    #: The round's extra ``metrics.jsonl`` columns (the trainer's ``top5_accuracy``); absent from
    #: checkpoints written before it was recorded.
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundRecord:
        """A record as a checkpoint stores it, its fields and types checked.

        Raises:
            ResumeError: a field is missing, unknown or of the wrong type (the checkpoint is malformed).
        """
        try:
            if set(data) | {"extra"} != set(cls.__dataclass_fields__):
                raise TypeError("fields")
            record = cls(
                action=[_real(a) for a in data["action"]],
                request=[(_integer(k), _real(v)) for k, v in data["request"]],
                costs=[
                    (_integer(k), _real(f), _real(b), _integer(kept), _integer(total))
                    for k, f, b, kept, total in data["costs"]
                ],
                arrived=[_integer(k) for k in data["arrived"]],
                accuracy=_real(data["accuracy"]),
                loss=_real(data["loss"]),
                num_trained=_integer(data["num_trained"]),
                download_bits=[(_integer(k), _real(b)) for k, b in data["download_bits"]],
                covering=[_real(c) for c in data["covering"]],
                extra={str(k): _real(v) for k, v in dict(data.get("extra", {})).items()},
            )
        except (TypeError, ValueError, KeyError):
            raise ResumeError("malformed checkpoint: a round record has missing or mistyped fields") from None
        return record

    def model_costs(self) -> dict[int, ModelCost]:
        download = {int(k): float(b) for k, b in self.download_bits}
        return {
            device: ModelCost(
                forward_flops_per_sample=flops,
                upload_bits=bits,
                kept_params=kept,
                total_params=total,
                download_bits=download.get(int(device)),
            )
            for device, flops, bits, kept, total in self.costs
        }


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def record_round(env: WirelessFLEnv, action: NDArray[Any]) -> RoundRecord:
    """The replay record of the round ``env`` just stepped with ``action``."""
    plan, learning, report = env.last_plan, env.last_learning, env.last_report
    if plan is None or learning is None or report is None:
        raise RuntimeError("no round stepped yet")
    return RoundRecord(
        action=[float(a) for a in np.asarray(action, dtype=np.float32)],
        request=[(int(k), float(v)) for k, v in plan.pruning_rates.items()],
        costs=[
            (
                int(k),
                float(c.forward_flops_per_sample),
                float(c.upload_bits),
                int(c.kept_params),
                int(c.total_params),
            )
            for k, c in plan.costs.items()
        ],
        arrived=[int(k) for k in np.flatnonzero(report.arrived)],
        accuracy=float(learning.accuracy),
        loss=float(learning.loss),
        num_trained=int(learning.num_trained),
        download_bits=[
            (int(k), float(c.download_bits)) for k, c in plan.costs.items() if c.download_bits is not None
        ],
        covering=[float(c) for c in env.last_covering],
        extra={str(k): float(v) for k, v in learning.extra.items()},
    )


class ReplayTrainer(Trainer):
    """Plays back recorded rounds instead of training.

    The episode set-up (``reset``: data split, sample counts) and the cost queries of the system view
    are the real trainer's: they depend on neither the weights nor any random stream, so answering
    them from the not-yet-restored trainer is exact. Each :meth:`plan_round` must ask for exactly the
    recorded request and each :meth:`train_round` see the recorded arrivals, else
    :class:`ReplayDivergedError`.
    """

    def __init__(self, inner: Trainer, records: Sequence[RoundRecord]) -> None:
        super().__init__(inner.config, inner.num_devices)
        self.inner = inner
        self.records = list(records)
        self.index = 0

    def reset(self, streams: EpisodeStreams) -> LearningResult:
        return self.inner.reset(streams)

    @property
    def num_samples(self) -> NDArray[np.int64]:
        return self.inner.num_samples

    def download_bits(self) -> float:
        return self.inner.download_bits()

    def cost_at(self, rho: float) -> ModelCost:
        return self.inner.cost_at(rho)

    def plan_round(
        self,
        pruning_rate: Mapping[int, float],
        *,
        spans_rounds: bool = False,
        upload_value_bits: Mapping[int, int] | None = None,
    ) -> RoundPlan:
        if self.index >= len(self.records):
            raise ReplayDivergedError(
                f"replay asked for round {self.index + 1}; {len(self.records)} were recorded"
            )
        record = self.records[self.index]
        request = [(int(k), float(v)) for k, v in pruning_rate.items()]
        if request != [tuple(r) for r in record.request]:
            raise ReplayDivergedError(
                f"replay diverged in round {self.index + 1}: the env asked for pruning rates {request}, "
                f"the interrupted run recorded {record.request}"
            )
        costs = record.model_costs()  # recorded as charged, decided upload widths included
        return RoundPlan({k: DeviceJob(k, rho, costs[k]) for k, rho in request})

    def train_round(self, plan: RoundPlan, arrived: Sequence[int]) -> LearningResult:
        record = self.records[self.index]
        if [int(k) for k in arrived] != list(record.arrived):
            raise ReplayDivergedError(
                f"replay diverged in round {self.index + 1}: devices {list(arrived)} arrived, "
                f"the interrupted run recorded {record.arrived}"
            )
        self.index += 1
        covering = (record.covering[0], record.covering[1]) if len(record.covering) == 2 else None
        return LearningResult(
            accuracy=record.accuracy,
            loss=record.loss,
            num_trained=record.num_trained,
            extra=dict(record.extra),
            covering=covering,
        )


def trainer_state(trainer: Trainer) -> dict[str, Any] | None:
    """The trainer's learning state as plain tensors, or None if it cannot be captured."""
    try:
        return trainer.state_dict()
    except NotImplementedError:
        return None


def load_trainer_state(trainer: Trainer, state: Mapping[str, Any]) -> None:
    """Inverse of :func:`trainer_state`."""
    try:
        trainer.load_state_dict(state)
    except NotImplementedError:
        raise ResumeError(f"trainer {type(trainer).__name__} has no state to load") from None
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        raise ResumeError(
            f"malformed checkpoint: the trainer state does not fit trainer {type(trainer).__name__} "
            f"({type(err).__name__})"
        ) from None
