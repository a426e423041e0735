"""Buffered asynchronous aggregation: hand-computed updates and the env running the async protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsimenv.cli import main
from fedsimenv.env import WirelessFLEnv
from fedsimenv.experiments.session import run_episode
from fedsimenv.learning.aggregation import buffered_async_update, staleness_weight
from fedsimenv.learning.trainer import TorchTrainer
from fedsimenv.scenario import load_scenario
from fedsimenv.seeding import EpisodeStreams


def test_staleness_weight_is_fedbuffs_polynomial() -> None:
    assert staleness_weight(0) == 1.0
    assert staleness_weight(3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="staleness"):
        staleness_weight(-1)


def test_buffered_async_update_by_hand() -> None:
    current = {"w": torch.tensor([10.0, 10.0, 10.0])}
    starts = [{"w": torch.tensor([1.0, 1.0, 1.0])}, {"w": torch.tensor([2.0, 2.0, 2.0])}]
    states = [{"w": torch.tensor([3.0, 5.0, 1.0])}, {"w": torch.tensor([2.0, 8.0, 2.0])}]
    masks = [{"w": torch.tensor([True, True, False])}, {"w": torch.tensor([True, True, False])}]
    # Device 1 is fresh (weight 1 x 1 sample), device 2 has staleness 3 (weight 0.5 x 2 samples = 1).
    out = buffered_async_update(current, starts, states, masks, [1.0, 2.0], [0, 3])
    # Updates: [2, 4, -] and [0, 6, -]; equal weights -> mean [1, 5]; entry 2 kept by nobody.
    torch.testing.assert_close(out["w"], torch.tensor([11.0, 15.0, 10.0]))


def test_one_fresh_async_update_equals_a_synchronous_round() -> None:
    config = load_scenario("tiny").learning
    sync, asyn = TorchTrainer(config, 10), TorchTrainer(config, 10)
    for trainer in (sync, asyn):
        trainer.reset(EpisodeStreams(np.random.SeedSequence(1)))
    sync_plan = sync.plan_round({2: 0.3})
    async_plan = asyn.plan_round({2: 0.3}, spans_rounds=True)
    sync.train_round(sync_plan, [2])
    asyn.train_async(async_plan.jobs_of([2]), [0])
    for a, b in zip(sync.model.state_dict().values(), asyn.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_env_runs_the_async_protocol_with_staleness() -> None:
    env = WirelessFLEnv("tiny", overrides={"protocol.name": "async", "protocol.target_updates": 3})
    env.reset(seed=0)
    n = env.num_devices
    action = np.concatenate([np.ones(n), -np.ones(n), np.zeros(n)]).astype(np.float32)
    stale = 0
    for _ in range(6):
        _, _, _, _, info = env.step(action)
        report = env.last_report
        assert report is not None
        assert info["num_arrived"] == 3
        stale = max(stale, info["max_staleness"])
        in_flight = report.status == "in-flight"
        assert (in_flight | report.arrived).sum() == n  # everyone is working or has just arrived
    assert stale >= 1
    assert info["accuracy"] > 0.2


def test_cli_runs_the_async_protocol_without_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        "tiny",
        "--rounds",
        "2",
        "--set",
        "protocol.name=async",
        "--set",
        "protocol.target_updates=3",
    ]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    # the CLI shows warnings as one line on stderr
    assert (
        "fedsimenv: warning: checkpoints are not supported with protocol 'async'" in capsys.readouterr().err
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["num_arrived"] for r in rows] == [3, 3]
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize(
    "agent", ["optimal", "optimal-cvx", "min-max-latency", "energy-yang", "chen-selection"]
)
def test_optimisers_run_the_async_protocol(agent: str) -> None:
    # Optimisers read the system view between rounds; before plans were values, its cost query
    # wiped the trainer's jobs in flight ("devices [3, 5, 7] arrived but no job was started").
    config = load_scenario(
        "tiny", {"protocol.name": "async", "protocol.target_updates": 3, "episode.max_rounds": 4}
    )
    rows = run_episode(config, agent, seed=0)
    assert len(rows) == 4
    # Every round ends at the third arrival, and each arrival was trained (the accuracy moved).
    assert [row["num_arrived"] for row in rows] == [3, 3, 3, 3]
    assert rows[-1]["accuracy"] != rows[0]["accuracy"]


def test_an_arrival_without_a_planned_job_is_refused() -> None:
    config = load_scenario("tiny").learning
    trainer = TorchTrainer(config, 10)
    trainer.reset(EpisodeStreams(np.random.SeedSequence(0)))
    plan = trainer.plan_round({1: 0.0, 2: 0.5})
    with pytest.raises(ValueError, match=r"devices \[3\] arrived but no job was planned"):
        trainer.train_round(plan, [1, 3])
    with pytest.raises(ValueError, match="spans_rounds"):
        trainer.train_async(plan.jobs_of([1]), [0])


def test_cost_queries_leave_the_round_and_the_random_stream_alone() -> None:
    # The same round with and without cost queries in between gives bit-identical weights (random
    # pruning draws from the episode's stream: a query that drew from it would shift the batches).
    config = load_scenario("tiny", {"learning.pruning": "random"}).learning
    states = []
    for query in (False, True):
        trainer = TorchTrainer(config, 10)
        trainer.reset(EpisodeStreams(np.random.SeedSequence(3)))
        plan = trainer.plan_round({0: 0.4, 5: 0.2})
        if query:
            assert trainer.cost_at(0.0).kept_params == trainer.cost_at(0.0).total_params
            trainer.cost_at(0.6)
        trainer.train_round(plan, [0, 5])
        states.append(trainer.model.state_dict())
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name
