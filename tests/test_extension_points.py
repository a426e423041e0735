"""Extension points are one class (or function) plus one registry name: each is shown here by a toy
plug-in registered for one test, selected from scenario fields, and run; plus the one partition both
trainers share (the surrogate's label counts are the torch trainer's) and its calibration fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from numpy.typing import NDArray
from sim_helpers import make_simulator, select, workload

from fedsimenv.config import LearningConfig, PartitionConfig, ProtocolConfig
from fedsimenv.env import WirelessFLEnv
from fedsimenv.learning.data import ArrayDataset, IntArray
from fedsimenv.learning.datasets import DATASETS, DatasetSpec, Split
from fedsimenv.learning.partition import PARTITIONS, partition_dataset
from fedsimenv.learning.plan import DeviceJob, LearningResult, ModelCost, RoundPlan
from fedsimenv.learning.surrogate import (
    Calibration,
    CalibrationError,
    SurrogateTrainer,
    learning_fingerprint,
    load_calibration,
    partition_label_counts,
)
from fedsimenv.learning.trainer import TRAINERS, TorchTrainer, Trainer
from fedsimenv.registry import Registry
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams
from fedsimenv.sim.protocols import PROTOCOLS, RoundProtocol
from fedsimenv.sim.simulator import RoundSimulator

SMALL = {"cell.num_devices": 4, "episode.max_rounds": 2, "learning.local_epochs": 1}


def _one_step(env: WirelessFLEnv) -> dict[str, object]:
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.ones(3 * env.num_devices, dtype=np.float32))
    return info


def test_registry_registered_is_temporary_and_unregister_returns_the_entry() -> None:
    registry: Registry[int] = Registry("number")
    with registry.registered("one", 1):
        assert registry.get("one") == 1
    assert "one" not in registry
    registry.register("two")(2)
    assert registry.unregister("two") == 2 and len(registry) == 0
    with pytest.raises(ValueError, match="unknown number 'two'"):
        registry.unregister("two")


def _toy_dataset(spec: DatasetSpec) -> Split:
    # 4 classes of 60 samples, each class a constant image equal to its label: trivially separable.
    y = np.repeat(np.arange(4, dtype=np.int64), 60)
    x = np.broadcast_to(y[:, None, None, None].astype(np.float32), (len(y), 1, 8, 8)).copy()
    return ArrayDataset(x, y, 4), None


def test_toy_dataset_is_selectable_by_name_and_trains() -> None:
    with DATASETS.registered("toy-constant", _toy_dataset):
        config = load_scenario("tiny", {**SMALL, "learning.dataset": "toy-constant"})
        env = WirelessFLEnv(config, trainer="torch")
        info = _one_step(env)
        assert isinstance(env.trainer, TorchTrainer)
        # 240 samples, 20% stratified test split -> 192 training samples over the 4 devices.
        assert int(env.trainer.num_samples.sum()) == 192 and len(env.trainer.test) == 48
        assert env.trainer.test.num_classes == 4
        assert 0.0 <= float(info["accuracy"]) <= 1.0  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"learning\.dataset|dataset[\s\S]*unknown dataset 'toy-constant'"):
        load_scenario("tiny", {"learning.dataset": "toy-constant"})


def _lopsided(
    data: ArrayDataset, num_devices: int, config: PartitionConfig, rng: np.random.Generator
) -> list[IntArray]:
    # Device 0 gets every sample; the others one sample each (a deliberately lopsided split).
    n = len(data)
    return [np.arange(num_devices - 1, n, dtype=np.int64)] + [
        np.array([k], dtype=np.int64) for k in range(num_devices - 1)
    ]


def test_toy_partition_is_selectable_by_name_and_runs() -> None:
    with PARTITIONS.registered("lopsided", _lopsided):
        config = load_scenario("tiny", {**SMALL, "learning.partition.method": "lopsided"})
        env = WirelessFLEnv(config, trainer="torch")
        _one_step(env)
        # digits: 1797 samples, 20% stratified test -> 1438 training samples.
        assert env.trainer.num_samples.tolist() == [1435, 1, 1, 1]
    with pytest.raises(ValueError, match="unknown partition method 'lopsided'; allowed values: dirichlet"):
        load_scenario("tiny", {"learning.partition.method": "lopsided"})


class _ConstantTrainer(Trainer):
    """Every update costs 1 MFLOP and 1 Mbit; accuracy is the fraction of devices that ever arrived."""

    def reset(self, streams: EpisodeStreams) -> LearningResult:
        self.seen: set[int] = set()
        return LearningResult(accuracy=0.0, loss=1.0, num_trained=0)

    @property
    def num_samples(self) -> NDArray[np.int64]:
        return np.full(self.num_devices, 10, dtype=np.int64)

    def download_bits(self) -> float:
        return 1e6

    def cost_at(self, rho: float) -> ModelCost:
        return ModelCost(1e6, 1e6, 100, 100)

    def plan_round(
        self,
        pruning_rate: Mapping[int, float],
        *,
        spans_rounds: bool = False,
        upload_value_bits: Mapping[int, int] | None = None,
    ) -> RoundPlan:
        return RoundPlan({k: DeviceJob(k, rho, self.cost_at(rho)) for k, rho in pruning_rate.items()})

    def train_round(self, plan: RoundPlan, arrived: Sequence[int]) -> LearningResult:
        plan.jobs_of(arrived)  # every arrival was planned
        self.seen.update(arrived)
        return LearningResult(len(self.seen) / self.num_devices, 1.0, len(arrived))


def test_toy_trainer_is_selectable_by_name_in_a_scenario() -> None:
    with TRAINERS.registered("constant", _ConstantTrainer):
        config = load_scenario("tiny", {**SMALL, "trainer": "constant"})
        env = WirelessFLEnv(config)
        info = _one_step(env)
        assert isinstance(env.trainer, _ConstantTrainer)
        assert info["accuracy"] == pytest.approx(1.0)  # all 4 devices selected, synchronous: all arrive
    with pytest.raises(ValueError, match="unknown trainer 'constant'; allowed values: surrogate, torch"):
        load_scenario("tiny", {"trainer": "constant"})


class _FirstArrivalOnly(RoundProtocol):
    """Keep the first update that arrives and drop the jobs still running."""

    def on_job_end(self, sim: RoundSimulator) -> bool:
        if len(sim.arrivals) == 1:
            sim.drop_active("first-only")
        return False


def test_toy_protocol_is_selectable_by_name_and_runs_a_round() -> None:
    with PROTOCOLS.registered("first-only", _FirstArrivalOnly):
        sim = make_simulator([1e6, 1e6, 1e6], protocol=ProtocolConfig(name="first-only"))
        # Compute times 3 s, 1 s, 2 s (1 FLOP/cycle at 1 MHz), no upload: device 1 arrives at 1 s.
        report = sim.run_round(select([True, True, True]), workload([3e6, 1e6, 2e6], [0, 0, 0]))
        assert report.round_latency_s == pytest.approx(1.0)
        assert list(report.status) == ["dropped", "arrived", "dropped"]
        assert list(report.reason) == ["first-only", "", "first-only"]
        assert report.protocol == "first-only"
    with pytest.raises(ValueError, match="unknown protocol 'first-only'; allowed values: async, deadline"):
        load_scenario("tiny", {"protocol.name": "first-only"})


def test_only_the_async_protocol_keeps_jobs_across_rounds() -> None:
    assert {name for name in PROTOCOLS if PROTOCOLS.get(name).jobs_span_rounds} == {"async"}


# -- one partition for both trainers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "partition",
    [
        {"method": "iid"},
        {"method": "dirichlet", "alpha": 0.3, "min_samples_per_device": 5},
        {"method": "shards", "classes_per_device": 2},
    ],
)
def test_surrogate_label_counts_equal_the_torch_trainers_clients(partition: dict[str, object]) -> None:
    config = LearningConfig.model_validate({"partition": partition})
    streams = EpisodeStreams(np.random.SeedSequence(7))
    counts = partition_label_counts(config, 10, streams)
    torch_trainer = TorchTrainer(config, 10)
    torch_trainer.reset(EpisodeStreams(np.random.SeedSequence(7)))
    expected = np.stack([np.bincount(c.y, minlength=10) for c in torch_trainer.clients])
    np.testing.assert_array_equal(counts, expected)
    if partition["method"] == "shards":
        # Independent check of the method: 1438 training samples in 20 shards of 71-72, 2 per device.
        assert set(counts.sum(axis=1).tolist()) <= {142.0, 143.0, 144.0}


def test_partition_dataset_dispatches_to_the_named_method() -> None:
    labels = np.repeat(np.arange(5, dtype=np.int64), 20)
    data = ArrayDataset(np.zeros((100, 1, 2, 2), dtype=np.float32), labels, 5)
    parts = partition_dataset(
        data, 5, PartitionConfig(method="shards", classes_per_device=1), np.random.default_rng(0)
    )
    # One shard of 20 samples per device, each shard exactly one class.
    assert sorted(len(np.unique(labels[p])) for p in parts) == [1] * 5
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))


def test_shipped_calibration_fingerprint_matches_tiny_after_a_json_round_trip() -> None:
    config = load_scenario("tiny", {"trainer": "surrogate"})
    fingerprint = learning_fingerprint(config.learning)
    assert json.loads(json.dumps(fingerprint)) == fingerprint
    assert load_calibration(None).fingerprint == fingerprint
    SurrogateTrainer(config.learning, config.cell.num_devices)  # accepted


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"learning.partition.method": "shards"}, "learning.partition"),
        ({"learning.partition.alpha": 0.1}, "learning.partition"),
        ({"learning.test_fraction": 0.3}, "learning.test_fraction"),
    ],
)
def test_calibration_fitted_under_another_partition_is_refused(
    overrides: dict[str, object], field: str
) -> None:
    config = load_scenario("tiny", {"trainer": "surrogate", **overrides})
    with pytest.raises(CalibrationError, match=field):
        SurrogateTrainer(config.learning, config.cell.num_devices)


def test_per_device_test_does_not_invalidate_a_calibration() -> None:
    # Per-device test sets are drawn after the partition and the surrogate reports no per-device metric.
    config = load_scenario("tiny", {"learning.partition.per_device_test": True})
    calibration = load_calibration(None)
    assert Calibration.from_json(calibration.to_json(), "copy").fingerprint == learning_fingerprint(
        config.learning
    )
