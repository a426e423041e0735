"""One agent-name check for run, compare and sweep: registered names and saved policies ``ALGO:PATH``."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents import check_agent_name
from fedsimenv.experiments.compare import compare_agents, run_dir
from fedsimenv.experiments.sweep import sweep_jobs
from fedsimenv.scenario import load_scenario


def test_saved_policy_names_pass_the_check_and_unknown_names_list_the_allowed_ones() -> None:
    check_agent_name("optimal")
    check_agent_name("ppo:runs/ppo/policy.zip")  # the file is opened when the agent is built
    check_agent_name("sac:policy.zip")
    with pytest.raises(ValueError, match=r"allowed values: .*optimal"):
        check_agent_name("optimall")
    with pytest.raises(ValueError, match="allowed values: ppo, sac"):
        check_agent_name("dqn:policy.zip")
    with pytest.raises(ValueError, match="give the saved policy as ppo:PATH"):
        check_agent_name("ppo:")


def test_sweep_accepts_a_saved_policy_in_the_grid(tmp_path: Path) -> None:
    grid = {"agent": ["equal", "ppo:runs/ppo/policy.zip"]}
    jobs = sweep_jobs("tiny", grid, [0], tmp_path)
    assert [job.agent for job in jobs] == ["equal", "ppo:runs/ppo/policy.zip"]
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        sweep_jobs("tiny", {"agent": ["nope"]}, [0], tmp_path)


def test_compare_refuses_an_unknown_policy_algorithm_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown policy algorithm 'dqn'"):
        compare_agents(load_scenario("tiny"), ["equal", "dqn:x.zip"], [0], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()


def test_a_saved_policy_gets_a_run_folder_inside_the_comparison(tmp_path: Path) -> None:
    folder = run_dir(tmp_path, "ppo:/somewhere/else/policy.zip", 3)
    assert folder.parent.parent == tmp_path / "runs"
    assert folder.name == "seed-3" and "/" not in folder.parent.name and ":" not in folder.parent.name
