"""``make_frozen`` / ``make_report``: the step's records built without their frozen dataclass
constructors must equal what the constructors build (fields, equality, pickle)."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from fedsimenv.learning.plan import LearningResult
from fedsimenv.numeric import make_frozen
from fedsimenv.rewards import RoundOutcome
from fedsimenv.sim import RoundDecision
from fedsimenv.sim.types import RoundReport, make_report


def test_make_report_equals_the_dataclass_constructor() -> None:
    rng = np.random.default_rng(2)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RoundReport):
        values[f.name] = rng.random(4)
    values.update(round_index=3, start_time_s=1.0, end_time_s=2.5, downlink_rate_bps=7.0, protocol="x")
    values["resource_blocks"] = None
    built, made = RoundReport(**values), make_report(**values)
    assert pickle.dumps(made) == pickle.dumps(built)
    assert made == built and made.round_latency_s == 1.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.round_index = 4  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"make_frozen\(RoundReport\) needs exactly the fields"):
        make_report(**{k: v for k, v in values.items() if k != "stop_s"})


def test_make_frozen_equals_each_constructor_it_stands_in_for() -> None:
    """Every record the step builds with ``make_frozen``: the same fields, equality and pickle as
    the dataclass constructor, whatever the order of the keywords; classes with a
    ``__post_init__`` are refused."""
    rng = np.random.default_rng(3)
    decision = {
        "selected": rng.random(4) > 0.5,
        "pruning_rate": rng.random(4),
        "bandwidth_hz": rng.random(4),
        "tx_power_w": None,
        "cpu_freq_hz": rng.random(4),
        "resource_block_owner": None,
        "upload_value_bits": None,
    }
    learning = {"accuracy": 0.5, "loss": 1.25, "num_trained": 3}
    defaults = {"device_accuracy": (), "server_time_s": 0.0, "extra": {}, "covering": None}
    outcome = {"accuracy": 0.6, "previous_accuracy": 0.5, "round_latency_s": 2.0, "round_energy_j": 1.0}
    cases: list[tuple[type, dict[str, Any], dict[str, Any]]] = [
        (RoundDecision, decision, decision),
        (LearningResult, learning, {**learning, **defaults}),
        (RoundOutcome, outcome, {**outcome, "target_accuracy": None, "reference_latency_s": None}),
    ]
    for cls, given, every in cases:
        built = cls(**given)
        for order in (list(every), list(reversed(every))):
            made: Any = make_frozen(cls, **{name: every[name] for name in order})
            assert pickle.dumps(made) == pickle.dumps(built) and made == built
            with pytest.raises(dataclasses.FrozenInstanceError):
                made.accuracy = 0.0
    with pytest.raises(TypeError, match=r"make_frozen\(LearningResult\) needs exactly the fields"):
        make_frozen(LearningResult, **learning)  # the defaults are not filled in

    @dataclasses.dataclass(frozen=True)
    class Checked:
        value: float

        def __post_init__(self) -> None:
            assert self.value >= 0

    with pytest.raises(TypeError, match=r"cannot skip Checked\.__post_init__"):
        make_frozen(Checked, value=-1.0)
