"""The per-round bookkeeping of :class:`fedsimenv.env.WirelessFLEnv` between the planes: the
workload handed to the timing plane, the covering index of the aggregated masks, ``info``, whether
the episode ends, and the :class:`~fedsimenv.view.SystemView` of the coming round (both planes'
figures, for planners).

Kept apart from the env class so that the step stays readable; everything here runs once per
``step``, so each helper avoids per-device Python objects where an array does (the values are the
same as the straightforward loops they replace: ``tests/test_fast_round.py`` compares whole
rollouts bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedsimenv.config import EpisodeConfig, ScenarioConfig
from fedsimenv.learning.covering import covering_index
from fedsimenv.learning.plan import DeviceJob, LearningResult, PlanColumns, RoundPlan
from fedsimenv.learning.trainer import Trainer
from fedsimenv.numeric import make_frozen
from fedsimenv.sim import DeviceWorkload, RoundSimulator
from fedsimenv.view import CostCurve, SystemView, build_system_view, cost_curve_grid

#: ``info["episode_end"]`` values, in order of precedence (empty string while the episode goes on).
END_REASONS = ("target_accuracy", "time_budget", "energy_budget", "max_rounds")


def round_workload(plan: RoundPlan, trainer: Trainer, num_devices: int, local_epochs: int) -> DeviceWorkload:
    """The timing plane's cost figures of ``plan``'s jobs (zero FLOPs and bits where no job).

    Devices given a model of their own (a sub-model, a sparse or compressed one) download it; the
    others download the global model (``trainer.download_bits()``).
    """
    flops = np.zeros(num_devices)
    bits = np.zeros(num_devices)
    download = np.empty(num_devices)
    download.fill(trainer.download_bits())  # ``np.full`` without its Python-level wrapper
    columns = plan.columns
    if columns is not None:  # no per-device download in a plan of columns
        if columns.devices:
            index = np.array(columns.devices)  # once: a list index converts at every use
            flops[index] = columns.forward_flops_per_sample
            bits[index] = columns.upload_bits
        return make_frozen(  # ``DeviceWorkload(...)``, without the frozen constructor's cost
            DeviceWorkload,
            forward_flops_per_sample=flops,
            upload_bits=bits,
            download_bits=download,
            num_samples=trainer.num_samples,
            local_epochs=local_epochs,
        )
    costs = [job.cost for job in plan.jobs.values()]
    if costs:
        devices = list(plan.jobs)
        flops[devices] = [cost.forward_flops_per_sample for cost in costs]
        bits[devices] = [cost.upload_bits for cost in costs]
        for k, cost in zip(devices, costs, strict=True):
            if cost.download_bits is not None:
                download[k] = cost.download_bits
    return DeviceWorkload(
        forward_flops_per_sample=flops,
        upload_bits=bits,
        download_bits=download,
        num_samples=trainer.num_samples,
        local_epochs=local_epochs,
    )


def round_covering(
    jobs: Sequence[DeviceJob], plan: RoundPlan, is_async: bool, num_arrived: int | None = None
) -> tuple[int, float]:
    """:func:`~fedsimenv.learning.covering.covering_index` of the arrived ``jobs`` (the planned jobs
    bound the round's model unless ``is_async``). Jobs without masks (unpruned models, the
    surrogate) keep every parameter: the index is then the number of jobs, without building
    per-parameter counts (the same values ``covering_index`` returns). A synchronous plan of
    columns (:class:`~fedsimenv.learning.plan.PlanColumns`, no masks) needs only ``num_arrived``
    (``jobs`` is then not read)."""
    columns = None if is_async else plan.columns
    if columns is not None:
        return columns_covering(columns, len(jobs) if num_arrived is None else num_arrived)
    total = jobs[0].cost.total_params if jobs else 0
    planned = None if is_async else [job.masks for job in plan.jobs.values()]
    if not any(job.masks for job in jobs) and not (planned and any(planned)):
        num = len(jobs)
        return (num, num * total / total) if num and total else (0, 0.0)
    return covering_index([job.masks for job in jobs], total, planned)


def columns_covering(columns: PlanColumns, num_arrived: int) -> tuple[int, float]:
    """:func:`round_covering` of ``num_arrived`` jobs of a synchronous plan of columns (no masks:
    every parameter is kept by every job), without building the jobs."""
    total = columns.total_params
    return (num_arrived, num_arrived * total / total) if num_arrived and total else (0, 0.0)


def round_info(
    round_index: int,
    now_s: float,
    energy_j: float,
    summary: dict[str, Any],
    learning: LearningResult,
    terms: dict[str, float],
) -> dict[str, Any]:
    """``info`` of a round, without the covering and end fields (the env adds those); ``summary``
    is the round report's :meth:`~fedsimenv.sim.RoundReport.summary`."""
    info = {
        "round": round_index,
        "sim_time_s": now_s,
        "energy_j": energy_j,
        "accuracy": learning.accuracy,
        "loss": learning.loss,
        **summary,
        "reward_terms": terms,
        "server_time_s": learning.server_time_s,
        "extra_metrics": dict(learning.extra),
    }
    if learning.server_time_s > 0:
        info["round_latency_s"] += learning.server_time_s
    return info


def episode_end(
    episode: EpisodeConfig,
    target_accuracy: float | None,
    accuracy: float,
    now_s: float,
    energy_j: float,
    rounds: int,
) -> tuple[bool, bool, str]:
    """``(terminated, truncated, info["episode_end"])`` after ``rounds`` rounds: the conditions of
    :data:`END_REASONS`, in its order of precedence."""
    terminated = target_accuracy is not None and accuracy >= target_accuracy
    out_of_time = episode.time_budget_s is not None and now_s >= episode.time_budget_s
    out_of_energy = episode.energy_budget_j is not None and energy_j >= episode.energy_budget_j
    last_round = rounds >= episode.max_rounds
    flags = (terminated, out_of_time, out_of_energy, last_round)
    end_reason = END_REASONS[flags.index(True)] if True in flags else ""
    return terminated, out_of_time or out_of_energy or last_round, end_reason


def coming_round_view(config: ScenarioConfig, simulator: RoundSimulator, trainer: Trainer) -> SystemView:
    """The read-only :class:`~fedsimenv.view.SystemView` of the coming round
    (:meth:`fedsimenv.env.WirelessFLEnv.system_view`, which caches it per round)."""
    # The cost is the same for every device (one global architecture): the exact curve of the
    # coming round's model, so planners plan with what the simulator will charge.
    unpruned = trainer.cost_at(0.0)

    def curve() -> CostCurve:  # asked for by planners only (a few model evaluations)
        grid = cost_curve_grid(config.action.rho_max)
        costs = [unpruned, *(trainer.cost_at(float(rho)) for rho in grid[1:])]
        full = trainer.download_bits()
        own = [c.download_bits for c in costs]
        return CostCurve(
            grid,
            np.array([c.forward_flops_per_sample for c in costs]),
            np.array([c.upload_bits for c in costs]),
            None if all(b is None for b in own) else np.array([full if b is None else b for b in own]),
        )

    return build_system_view(
        config,
        simulator,
        trainer.num_samples,
        unpruned.forward_flops_per_sample,
        unpruned.upload_bits,
        trainer.download_bits(),
        cost_curve=curve,
    )


__all__ = [
    "END_REASONS",
    "columns_covering",
    "coming_round_view",
    "episode_end",
    "round_covering",
    "round_info",
    "round_workload",
]
