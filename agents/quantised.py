"""Agents that decide each device's upload bit width (action control ``quant_bits``).

The trainer prices a ``b``-bit upload exactly (``kept x b`` values, one 32-bit scale per tensor, the
unstructured mask's index bits) and quantises it with the unbiased stochastic quantiser
(:func:`fedsimenv.learning.quantisation.quantised_upload`). Both agents plan with those sizes:

* ``quant-deadline`` (heuristic): FedAvg's decision (every device, no pruning, equal shares) with
  each device at the largest width of ``quant_bits_levels`` whose round (broadcast, training, upload
  at its equal share) fits the optimisers' default deadline; a device that misses it even at the
  smallest width gets the smallest. Only the stragglers are quantised, only as much as they need.
* ``optimal-quant``: the joint pruning / bandwidth / selection problem of ``optimal``
  (:mod:`agents.optimal.problem`) with the upload sizes at a bit width ``b`` common to the round,
  solved exactly for each ``b`` of ``quant_bits_levels``; the round takes the ``b`` minimising
  ``J(b) + quant_penalty x eps(b) x sum_{k in S} w_k``, with ``eps(b) = (2^b - 1)^-2`` (0 at 32 bits):
  the stochastic quantiser's error variance relative to ``s^2 = max|x|^2`` is below ``delta^2 / 4 =
  (2^b - 1)^-2`` (:mod:`fedsimenv.learning.quantisation`). That convergence term, like the pruning
  term of ``J``, is linear in the error and weighted by the data share; its weight ``quant_penalty``
  is an input (no bound of the literature gives it). A width common to the round keeps the problem
  the one the closed-form solver is exact for (for a fixed width, ``L_k`` just shrinks); per-device
  widths would make it mixed-integer and are not optimised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import AGENTS, Agent
from agents.optimal.closed_form import solve_closed_form
from agents.optimal.problem import rate_bps
from agents.optimisers import OptimalAgent, default_deadline_s
from agents.planning import Plan
from fedsimenv.actions import encode_decision, quant_bits_raw
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.quantisation import SCALE_BITS
from fedsimenv.learning.trainer import Trainer
from fedsimenv.view import CostCurve, SystemView


def quantisation_error(bits: int) -> float:
    """``eps(b) = (2^b - 1)^-2``: the stochastic quantiser's variance bound over ``s^2`` (0 at 32)."""
    return 0.0 if bits >= 32 else float((2**bits - 1) ** -2.0)


class _Quantiser(Agent):
    """Shared: bound to the env's trainer, whose exact kept-parameter counts price a width."""

    wanted_controls: ClassVar[tuple[str, ...]] = ("quant_bits",)
    trainer: Trainer | None = None
    _kept: tuple[int, tuple[float, ...], NDArray[np.float64]] | None = None

    def bind(self, env: WirelessFLEnv) -> None:
        self.trainer = env.trainer

    def _check_controls(self) -> None:
        if "quant_bits" not in self.context.action.controls:
            raise ValueError(f"{type(self).__name__} needs 'quant_bits' in action.controls")

    def _kept_params(self, round_index: int, rates: NDArray[np.float64]) -> NDArray[np.float64]:
        """The trainer's exact kept-parameter counts at ``rates`` (asked once per round)."""
        assert self.trainer is not None
        key = (round_index, tuple(float(r) for r in rates))
        if self._kept is None or self._kept[:2] != key:
            kept = [self.trainer.cost_at(float(rho)).kept_params for rho in rates]
            self._kept = (*key, np.array(kept, dtype=np.float64))
        return self._kept[2]

    def value_bits_saved(
        self, view: SystemView, rates: NDArray[np.float64], bits: int
    ) -> NDArray[np.float64]:
        """Bits a ``bits``-wide upload saves at each pruning rate against the trainer's encoding:
        ``kept x (bits_per_param - bits)`` minus the scales (one per tensor, surrogate: none)."""
        if self.trainer is None:
            raise RuntimeError(f"{type(self).__name__} needs bind(env) before act (it prices widths)")
        if bits >= 32:
            return np.zeros(len(rates))
        per_param = self.trainer.config.bits_per_param
        kept = self._kept_params(view.round_index, rates)
        model = getattr(self.trainer, "model", None)
        scales = SCALE_BITS * len(list(model.parameters())) if model is not None else 0
        return np.asarray(kept * (per_param - bits) - scales, dtype=np.float64)

    def quantised_view(self, view: SystemView, bits: int) -> SystemView:
        """``view`` with every upload size at ``bits`` bits per value (unpruned and on the cost curve)."""
        if bits >= 32:
            return view
        curve = view.cost_curve
        if curve is None:  # no exact curve: the linear cost model of the unpruned upload
            unpruned = self.value_bits_saved(view, np.zeros(1), bits)[0]
            return dataclasses.replace(view, upload_bits=np.maximum(view.upload_bits - unpruned, 1.0))
        saved = self.value_bits_saved(view, curve.pruning_rate, bits)
        quantised = CostCurve(
            curve.pruning_rate,
            curve.forward_flops_per_sample,
            np.maximum(curve.upload_bits - saved, 1.0),
            curve.download_bits,  # the download is not quantised
        )
        return dataclasses.replace(
            view,
            upload_bits=np.maximum(view.upload_bits - saved[0], 1.0),
            cost_curve_source=lambda: quantised,
        )


@AGENTS.register("quant-deadline")
class QuantDeadlineAgent(_Quantiser):
    """Every device, no pruning, equal shares; each device at the largest width that meets the
    optimisers' default deadline (the smallest width if none does)."""

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        self._check_controls()
        view = self.context.view()
        n = view.num_devices
        levels = self.context.action.quant_bits_levels
        deadline = default_deadline_s(view, 1.0)
        rate = rate_bps(view.bandwidth_hz / n, view.planning_snr_bandwidth_hz)
        widths = np.full(n, levels[0], dtype=np.int64)
        for bits in levels:  # increasing: the last width that fits wins
            upload = view.upload_bits - self.value_bits_saved(view, np.zeros(1), bits)[0]
            fits = view.planning_downlink + view.compute_latency_s + upload / rate <= deadline
            widths[fits] = bits
        return encode_decision(
            np.ones(n, bool), np.zeros(n), np.ones(n), self.context.action, upload_value_bits=widths
        )


@AGENTS.register("optimal-quant")
class OptimalQuantAgent(_Quantiser, OptimalAgent):
    """``optimal`` with a round-wide upload width chosen from ``quant_bits_levels`` (module docstring)."""

    quant_penalty: ClassVar[float] = 1.0
    #: The width of the last plan and ``J(b) + penalty`` per width tried.
    last_bits: int = 32
    last_values: dict[int, float]
    _view: SystemView | None = None

    def planning_view(self) -> SystemView:
        return self._view if self._view is not None else self.context.view()

    def deadline_s(self, view: SystemView) -> float:
        # The env's deadline (unquantised uploads), whatever width the plan is for.
        return default_deadline_s(self.context.view(), self.deadline_factor)

    def act(
        self, observation: Mapping[str, NDArray[np.float32]], info: Mapping[str, Any]
    ) -> NDArray[np.float32]:
        self._check_controls()
        base = self.context.view()
        weight = base.num_samples / base.num_samples.sum()
        best: tuple[float, int, SystemView, Plan] | None = None
        self.last_values = {}
        for bits in self.context.action.quant_bits_levels:
            view = self.quantised_view(base, bits)
            plan = self.plan(view, solve_closed_form)
            selected = np.zeros(base.num_devices, dtype=bool)
            selected[plan.candidates] = plan.allocation.selected
            penalty = self.quant_penalty * quantisation_error(bits) * float(weight[selected].sum())
            value = plan.objective + penalty
            self.last_values[int(bits)] = value
            if best is None or value < best[0] - 1e-12:
                best = (value, int(bits), view, plan)
        assert best is not None
        _, self.last_bits, self._view, plan = best
        self.last_plan, self.last_deadline_s = plan, plan.deadline_s
        try:
            action = self.apply(plan)
        finally:
            self._view = None
        n = base.num_devices
        action[-n:] = quant_bits_raw(np.full(n, self.last_bits), n, self.context.action)
        return action
